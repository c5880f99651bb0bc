"""Trial parameters for optuna-dashboard when a spec's factors change under an existing study."""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from dcgan import dashboard, store


@dataclass
class _Config:
    values: dict

    def to_dict(self) -> dict:
        return dict(self.values)

    def hash(self) -> str:
        return "-".join(f"{k}={v}" for k, v in sorted(self.values.items()))


@dataclass
class _Planned:
    arm: str
    seed: int
    config: _Config
    execution: bool = False


def _plan(*equal_steps: int, kimg=96.0, seeds=(0, 1)) -> list[_Planned]:
    """batch_size's shape: an equal-steps arm's `steps` follows the profile's budget."""
    arms = {
        "b128": {"batch_size": 128, "steps": None},
        "b512_equal_images": {"batch_size": 512, "steps": None},
    }
    arms |= {f"b512_equal_steps_{n}": {"batch_size": 512, "steps": n} for n in equal_steps}
    return [_Planned(arm, seed, _Config(dict(v, kimg=kimg))) for arm, v in arms.items() for seed in seeds]  # fmt: skip


def _finish_waiting(study, storage) -> None:
    for trial in study.get_trials(states=(TrialState.WAITING,)):
        storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING)
        storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [1.0])


def _enqueue(study, storage, planned) -> None:
    runs = [((r.arm, r.seed, r.config.hash()), r.config.to_dict()) for r in planned]
    store.enqueue_missing(study, storage, runs)


def _params_of_waiting(study) -> list[dict]:
    return [t.params for t in study.get_trials(states=(TrialState.WAITING,))]


def test_a_changed_budget_still_gives_new_trials_their_factors_and_says_which_it_cannot(tmp_path):
    storage = store.open_storage(f"sqlite:///{tmp_path}/store.db")
    study = optuna.create_study(storage=storage)
    _enqueue(study, storage, old := _plan(750))
    assert dashboard.set_trial_params(study, storage, old) == 6
    _finish_waiting(study, storage)

    _enqueue(study, storage, new := _plan(1375, kimg=176.0))
    lines: list[str] = []
    assert dashboard.set_trial_params(study, storage, new, log=lines.append) == 6
    params = _params_of_waiting(study)
    assert len(params) == 6 and all({"batch_size", "seed"} <= set(p) for p in params)
    assert not any("steps" in p for p in params)  # Optuna allows one choice set per study
    assert any("'steps'" in line and "1375" in line for line in lines), lines
    assert not any("not set (" in line for line in lines)  # no longer all-or-nothing


def test_new_values_inside_the_studys_choices_keep_the_factor(tmp_path):
    storage = store.open_storage(f"sqlite:///{tmp_path}/store.db")
    study = optuna.create_study(storage=storage)
    _enqueue(study, storage, old := _plan(750, 1375))
    dashboard.set_trial_params(study, storage, old)
    _finish_waiting(study, storage)

    new = _plan(750, seeds=(2, 3))  # steps in (None, 750): inside the study's choices
    _enqueue(study, storage, new)
    lines: list[str] = []
    assert dashboard.set_trial_params(study, storage, new, log=lines.append) == 6
    assert not lines
    steps = {(p["batch_size"], p["steps"]) for p in _params_of_waiting(study)}
    assert steps == {(128, None), (512, None), (512, 750)}
