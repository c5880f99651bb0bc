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
