"""Per-arm estimates and paired differences, checked against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dcgan.report import stats
from tests.report.conftest import results_from_runs, runs_frame


def student_t_p(diffs: np.ndarray) -> float:
    """Two-sided paired t-test p by integrating Student's t density with numpy."""
    n = diffs.size
    t = abs(diffs.mean() / (diffs.std(ddof=1) / math.sqrt(n)))
    nu = n - 1
    x = np.linspace(0.0, t, 400_001)
    log_c = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
    density = np.exp(log_c) * (1 + x**2 / nu) ** (-(nu + 1) / 2)
    return 1.0 - 2.0 * np.trapezoid(density, x)


SEED_OFFSETS = np.array([0.0, 9.0, -7.0, 4.0, -5.0])


def test_bootstrap_ci_contains_the_mean_and_is_seeded():
    values = [40.1, 43.4, 37.0, 41.2]
    estimate = stats.mean_ci(values)
    assert estimate.mean == pytest.approx(np.mean(values))
    assert estimate.lo < estimate.mean < estimate.hi
    assert min(values) <= estimate.lo and estimate.hi <= max(values)
    assert stats.mean_ci(values) == estimate
    assert estimate.n == 4


def test_one_seed_has_a_mean_but_no_ci():
    estimate = stats.mean_ci([12.0, float("nan")])
    assert (estimate.mean, estimate.n) == (12.0, 1)
    assert not estimate.has_ci and math.isnan(estimate.lo) and math.isnan(estimate.hi)
    assert stats.mean_ci([]).n == 0


def test_paired_p_and_effect_size_match_hand_formulas():
    base = 40 + SEED_OFFSETS
    arm = base + np.array([2.0, 3.5, 1.0, 4.0, 2.5])
    runs = runs_frame({"base": dict(enumerate(base)), "arm": dict(enumerate(arm))})
    d = stats.compare(runs, "arm", "base", "fid")
    diffs = arm - base
    assert d.paired.n == 5
    assert d.paired.mean == pytest.approx(diffs.mean())
    assert d.p == pytest.approx(student_t_p(diffs), rel=1e-6)
    assert d.d_z == pytest.approx(diffs.mean() / diffs.std(ddof=1))


def test_large_consistent_effect_is_resolved_and_pairing_narrows_the_ci():
    base = 40 + SEED_OFFSETS
    arm = base + 10 + np.array([0.3, -0.2, 0.1, -0.4, 0.2])
    runs = runs_frame({"base": dict(enumerate(base)), "arm": dict(enumerate(arm))})
    d = stats.compare(runs, "arm", "base", "fid")
    assert d.paired.lo > 0 and d.resolved and d.direction == "worse"
    assert d.paired.hi - d.paired.lo < (d.unpaired_hi - d.unpaired_lo) / 5
    assert d.unpaired_lo < d.paired.lo and d.paired.hi < d.unpaired_hi


def test_noise_is_not_resolved():
    base = 40 + SEED_OFFSETS
    arm = base + np.array([1.0, -1.0, 2.0, -2.0, 0.0])
    runs = runs_frame({"base": dict(enumerate(base)), "arm": dict(enumerate(arm))})
    d = stats.compare(runs, "arm", "base", "fid")
    assert d.paired.lo < 0 < d.paired.hi
    assert not d.resolved and d.direction is None


def test_three_same_sign_seeds_need_the_t_test_too():
    """With 3 seeds the bootstrap CI spans about the seeds' range, so it excludes 0 whenever
    all three differences share a sign; the t-test keeps that from counting as resolved."""
    base = np.array([40.0, 41.0, 39.0])
    runs = runs_frame(
        {"base": dict(enumerate(base)), "arm": dict(enumerate(base + [0.5, 5.0, 9.0]))}
    )
    d = stats.compare(runs, "arm", "base", "fid")
    assert d.paired.excludes_zero
    assert d.p > 0.05 and not d.resolved


def test_only_seeds_scored_in_both_arms_are_paired():
    runs = runs_frame(
        {"base": {0: 40.0, 1: 41.0, 2: 39.0, 3: 42.0}, "arm": {1: 45.0, 2: 44.5, 3: 47.5, 4: 90.0}}
    )
    d = stats.compare(runs, "arm", "base", "fid")
    assert d.paired.n == 3
    assert d.paired.mean == pytest.approx(np.mean([4.0, 5.5, 5.5]))


def test_unfinished_runs_are_excluded_and_diverged_ones_count():
    runs = pd.concat(
        [
            runs_frame({"arm": {0: 40.0, 1: 42.0}}),
            runs_frame({"arm": {2: 90.0}}, status="diverged", diverged_at_step=400),
            runs_frame({"arm": {3: 1000.0}}, status="failed"),
            runs_frame({"arm": {4: 1000.0}}, status="running"),
            runs_frame({"arm": {5: np.nan}}, status="missing"),
        ]
    )
    summary = stats.summarize_arm(results_from_runs(runs, baseline="arm"), "arm")
    assert summary.fid.mean == pytest.approx((40 + 42 + 90) / 3)
    assert summary.done_seeds == (0, 1, 2)
    assert summary.unfinished == ((3, "failed"), (4, "running"), (5, "missing"))
    assert (summary.diverged, summary.diverged_at_median) == (1, 400.0)


def test_fixture_summary(results):
    analysis = stats.analyse(results)
    by_arm = {a.arm: a for a in analysis.arms}
    assert [a.arm for a in analysis.arms] == list(results.arms)
    assert by_arm["G selu / D selu"].diverged == 2
    assert by_arm["G selu / D selu"].diverged_at_median == 425
    assert by_arm["lr 3e-4"].unfinished == ((2, "missing"),)
    assert set(analysis.differences) == {"lr 3e-4", "G selu / D selu"}
    assert analysis.differences["G selu / D selu"]["fid"].direction == "worse"
    assert not analysis.has_modes
