"""The cost model and the measured time split of `dcgan/plan.py`."""

from __future__ import annotations

import datetime as dt

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from dcgan import plan

START = dt.datetime(2026, 12, 7, 8, 0, 0)


def _trial(number: int, wall_s: float, result: dict) -> FrozenTrial:
    return FrozenTrial(
        number=number, trial_id=number, state=TrialState.COMPLETE, value=1.0,
        datetime_start=START, datetime_complete=START + dt.timedelta(seconds=wall_s),
        params={}, distributions={}, user_attrs={"result": result}, system_attrs={},
        intermediate_values={},
    )  # fmt: skip


def test_time_split_counts_only_runs_trained_start_to_finish_in_their_trial():
    study = optuna.create_study()
    study.add_trial(_trial(0, 100.0, {"wall_s": 80.0, "steps_done": 1500}))
    study.add_trial(_trial(1, 300.0, {"wall_s": 150.0, "steps_done": 1500}))
    study.add_trial(_trial(2, 2.0, {"wall_s": 80.0, "steps_done": 1500}))  # re-used: left out
    study.add_trial(_trial(3, 50.0, {"wall_s": 0.0, "steps_done": 0}))  # nothing trained
    study.add_trial(_trial(4, 60.0, {}))  # no result recorded
    split = plan.time_split(study)
    assert split.runs == 2
    assert split.median_run_s == pytest.approx(200.0)
    assert split.median_training_s == pytest.approx(115.0)
    assert split.not_training_share == pytest.approx(1 - 230 / 400)
    assert (
        "(2 runs" in split.describe()
        and "median 200 s, of which training 115 s" in split.describe()
    )


def test_time_split_of_a_study_without_trained_runs_is_none():
    study = optuna.create_study()
    study.add_trial(_trial(0, 2.0, {"wall_s": 80.0, "steps_done": 1500}))
    assert plan.time_split(study) is None


def test_scoring_estimate_generates_once_and_featurises_per_space():
    config = {"kimg": 96.0, "batch_size": 64, "snapshot_every": 75}  # 1,500 steps, 20 snapshots
    one = plan.score_seconds(config, "mnist", 1000)
    both = plan.score_seconds(config, ("mnist", "randcnn"), 1000)
    assert one == pytest.approx(20 * (plan.SAMPLE_S_PER_1K + plan.FEATURE_S_PER_1K["mnist"]))
    assert both - one == pytest.approx(20 * plan.FEATURE_S_PER_1K["randcnn"])
    assert plan.score_seconds(config, ("mnist",), 2000) == pytest.approx(2 * one)


def test_a_replicate_is_estimated_from_runs_on_its_own_thread_count_and_alone():
    """An execution replicate trains on 2 threads, alone on the host: its rate comes from other
    runs on 2 threads, never from the 1-thread ones (nor drags theirs), and its time adds to the
    wall clock whole instead of being shared between the workers."""
    base = {"image_size": 32, "channels": 1, "g_width": 32, "d_width": 32, "batch_size": 64}
    rates = plan.Rates()
    for img_s in (500.0, 520.0, 540.0):
        rates.add({**base, "threads": 0, "g_activation": "relu"}, img_s)
    rates.add({**base, "threads": 2, "g_activation": "relu"}, 950.0)
    other_arm = {**base, "g_activation": "selu"}
    assert rates.rate({**other_arm, "threads": 0})[0] == pytest.approx(520.0)
    assert rates.rate({**other_arm, "threads": 2})[0] == pytest.approx(950.0)
    unmeasured = plan.Rates()
    one, two = (unmeasured.rate({**other_arm, "threads": t})[0] for t in (0, 2))
    assert two == pytest.approx(one * plan.WIDER_ALONE_FACTOR)

    def row(replicate):
        return plan.PlanRow("a", 0, "h", 1500, 64, "new", est_s=100.0, replicate=replicate)

    rows = [row(False)] * 4 + [row(True)] * 2
    two_workers = plan.Plan("x", "cpu", "s", "", rows, 2, ("mnist",), 1000)
    assert two_workers.est_wall_s == pytest.approx(4 * 100 / 2 + 2 * 100)
    assert plan.Plan("x", "cpu", "s", "", rows, 1, ("mnist",), 1000).est_wall_s == 600


def test_default_rate_scales_with_pixels_and_less_than_flops_with_width():
    base = {"image_size": 32, "g_width": 32, "d_width": 32}
    assert plan.default_img_s(base) == plan.DEFAULT_IMG_S
    bigger = plan.default_img_s(base | {"image_size": 64})
    assert bigger == pytest.approx(plan.DEFAULT_IMG_S / 4)
    narrower = plan.default_img_s(base | {"image_size": 64, "g_width": 16, "d_width": 16})
    assert bigger < narrower < 4 * bigger  # half the width: faster, not 4x (FLOPs) faster
    replicate = plan.default_img_s(base | {"threads": 2})
    assert replicate == pytest.approx(plan.DEFAULT_IMG_S * plan.WIDER_ALONE_FACTOR)
