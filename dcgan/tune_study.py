"""A tuning study in the store: set up, topped up to its budget, read back.

`open_study` creates (or opens) the Optuna study with the space's pruner and this worker's
sampler; `top_up` enqueues trials until the study holds its budget; `best_so_far` is the line
a worker prints after each trial; `export_best` writes the best trial as a recipe file.
"""

from __future__ import annotations

import math
import socket
import zlib
from pathlib import Path

import optuna
from optuna.trial import TrialState

from . import store
from .atomic import atomic_write_json
from .config import ConfigError, RunConfig
from .recipes import build_config
from .tune_space import NOT_TUNABLE, SearchSpace, budget_images

# What a study's budget counts: a failed trial is not retried (worker.Retry.NEVER) and leaves
# the budget, so the next top-up enqueues new parameters in its place.
BUDGETED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def open_study(space: SearchSpace, profile: str, storage, worker: int = 0) -> optuna.Study:
    """The study (created on first use) with this worker's sampler and the space's pruner."""
    obj = space.profile(profile).objective
    if len(obj.directions) == 1:
        warmup = int(space.warmup * budget_images(space.config(profile, {})))
        pruner = optuna.pruners.MedianPruner(
            n_startup_trials=space.n_startup_trials, n_warmup_steps=warmup
        )
    else:  # Optuna does not prune multi-objective trials
        pruner = optuna.pruners.NopPruner()
    study = optuna.create_study(
        study_name=space.study_name(profile), storage=storage, pruner=pruner,
        directions=obj.directions, load_if_exists=True,
    )  # fmt: skip
    if [d.name.lower() for d in study.directions] != obj.directions:
        raise ConfigError(
            f"study {study.study_name!r} exists with {len(study.directions)} objective(s) but "
            f"{space.path} asks for {len(obj.directions)}: delete the study or rename the space"
        )
    study.sampler = optuna.samplers.TPESampler(
        seed=_sampler_seed(space.seed, worker, study), constant_liar=True,
        constraints_func=_wall_limit(obj.max_wall_s) if obj.max_wall_s is not None else None,
    )  # fmt: skip
    return study


def _sampler_seed(base: int, worker: int, study: optuna.Study) -> int:
    """`base + worker`, moved on by the machine and the trials already run, so that a worker on
    another machine, or one resuming the study, does not replay another's random draws."""
    host = zlib.crc32(socket.gethostname().encode())
    trials = len(study.get_trials(deepcopy=False))
    return (base + worker + host + 7919 * trials) % 2**32


def _wall_limit(max_wall_s: float):
    def constraints(trial: optuna.trial.FrozenTrial) -> list[float]:  # feasible when <= 0
        return [trial.user_attrs.get("wall_s", math.inf) - max_wall_s]

    return constraints


def top_up(study: optuna.Study, storage, n_trials: int, reference: dict | None = None) -> int:
    """Enqueue trials until the study holds n_trials done, running or waiting (never fewer:
    a lower budget than the study already has cancels nothing). A new study's first trial
    is the space's reference, when it has one."""
    store.reap_dead_workers(study, storage)
    missing = n_trials - len(study.get_trials(deepcopy=False, states=BUDGETED))
    for i in range(missing):
        if i == 0 and reference and not study.get_trials(deepcopy=False):
            study.enqueue_trial(reference, user_attrs={"reference": True}, skip_if_exists=False)
        else:
            study.enqueue_trial({}, skip_if_exists=False)
    return max(0, missing)


def format_params(params: dict) -> str:
    """`lr_g=0.000131, g_activation=selu`: 3 significant digits, not 17."""
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def best_so_far(study: optuna.Study) -> str:
    """'8/20 trials finished (6 complete, 2 pruned) · best so far: trial 3, fid 480.2 (...)'."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    failed = sum(t.state == TrialState.FAIL for t in trials)
    finished = len(complete) + pruned + failed
    budget = finished + sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    line = f"{finished}/{budget} trials finished ({len(complete)} complete, {pruned} pruned"
    line += f", {failed} failed)" if failed else ")"
    if not complete:
        return line + " · no complete trial yet"
    best = min(complete, key=lambda t: t.values[0])
    names = study.metric_names or ["value"]
    score = f"{names[0]} {best.values[0]:.1f}"
    if best.user_attrs.get("reference"):
        score += ", the reference trial"
    return f"{line} · best so far: trial {best.number}, {score} ({format_params(best.params)})"


def export_best(study: optuna.Study, out: Path) -> dict:
    """Write the best trial as a recipe file (what `train --recipe` and ablation specs take):
    the trial's exact config with its base recipe's budget and cadence instead of the tuning
    profile's, as overrides of RunConfig's defaults."""
    try:
        if len(study.directions) == 1:
            best = study.best_trial
        else:  # the Pareto front's best on the first objective (the score)
            best = min(study.best_trials, key=lambda t: t.values[0])
    except ValueError:  # no completed (feasible) trial; min() of an empty front
        raise ConfigError(
            f"study {study.study_name!r} has no completed trial to export yet"
        ) from None
    defaults = RunConfig().to_dict()
    base = build_config(study.user_attrs["base_recipe"]).to_dict()
    config = {**best.user_attrs["config"], **{k: base[k] for k in NOT_TUNABLE - {"data"}}}
    recipe = {
        "name": f"{study.study_name.replace('/', '-')}-trial{best.number}",
        "overrides": {k: v for k, v in config.items() if v != defaults[k]},
        "source": {
            "study": study.study_name,
            "trial": best.number,
            "score": dict(zip(study.metric_names or ["value"], best.values, strict=False)),
            "protocol": best.user_attrs.get("protocol"),
            "params": best.params,
        },
    }
    atomic_write_json(out, recipe)
    return recipe
