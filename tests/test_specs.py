"""The shipped specs under the profiles that give verdicts: what every planned run will do."""

from __future__ import annotations

import pytest

from dcgan.specs import list_specs, load_spec

MIN_SNAPSHOTS = 16  # issue 13: the verdict-against-budget needs dense curves


@pytest.mark.parametrize("profile", ["cpu", "pilot"])
@pytest.mark.parametrize("name", list_specs())
def test_every_run_of_a_verdict_profile_is_scored_densely(name, profile):
    spec = load_spec(name)
    if profile not in spec.profiles:
        pytest.skip(f"{name} has no {profile} profile")
    for run in spec.plan(profile):
        cfg = run.config
        snapshots = cfg.total_steps // cfg.snapshot_every
        assert snapshots >= MIN_SNAPSHOTS, (run.arm, run.seed, cfg.total_steps, cfg.snapshot_every)
