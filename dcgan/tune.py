"""`dcgan tune SPACE`: Optuna searches RunConfig overrides for the best FID; `dcgan dashboard` shows it.

The search space is a TOML file (ablations/tune_*.toml), validated like an ablation spec.
Trials live in the same store as ablations: SQLite under results/, or PostgreSQL to share
one study between machines. The trial budget belongs to the study, not to a process:
`--trials N` tops the study up to N trials (finished, running and waiting ones count) and
every worker, on any machine, claims waiting trials with the store's compare-and-set until
none is left, so N trials run, each once, however many workers take part. A worker that dies
leaves its trial RUNNING: the store's heartbeats (or, on the same host, its dead pid) fail it
and Optuna's RetryHeartbeatStaleTrialCallback enqueues it again with the same parameters.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import ipaddress
import math
import os
import shutil
import socket
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from . import store
from .atomic import atomic_write_json
from .config import ConfigError, RunConfig
from .data import ImageSet, load_images
from .recipes import RECIPES, build_config, recipe_overrides
from .runner import Paths, spawn_workers
from .specs import ABLATIONS_DIR, EXTRACTORS, _check_keys, _error, _load_toml
from .train import train

METRICS = ("fid", "kid")
SECOND_OBJECTIVES = ("wall_s",)
SPACE_KEYS = {
    "description",
    "base_recipe",
    "seed",
    "objective",
    "pruner",
    "profiles",
    "params",
    "reference",
}
OBJECTIVE_KEYS = {"metric", "extractor", "n_fake", "scores_per_trial", "second", "max_wall_s"}
PRUNER_KEYS = {"n_startup_trials", "warmup"}
PROFILE_KEYS = {"description", "overrides", "n_fake", "scores_per_trial"}
PARAM_KEYS = {"fields", "choices", "low", "high", "log"}
FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(RunConfig)}
# The data, budget, seed and cadences are the profile's: every trial of a study sees the
# same images, and the snapshot cadence follows `scores_per_trial`.
NOT_TUNABLE = {"data", "kimg", "steps", "seed", "device"} | {
    "log_every", "grid_every", "snapshot_every", "checkpoint_every",
}  # fmt: skip
BUDGETED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


# ---- the search space ----------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    name: str
    fields: tuple[str, ...]
    kind: str  # categorical | int | float
    choices: tuple = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def describe(self) -> str:
        if self.kind == "categorical":
            return ", ".join(map(str, self.choices))
        return f"{self.low:g} .. {self.high:g}" + (" (log)" if self.log else "")


@dataclass(frozen=True)
class Objective:
    metric: str
    extractor: str
    n_fake: int
    scores_per_trial: int
    second: str | None = None
    max_wall_s: float | None = None

    @property
    def directions(self) -> list[str]:
        return ["minimize"] * (2 if self.second else 1)

    def protocol(self, images: ImageSet):
        """The ablations' scoring protocol, so a tuned score compares with an ablation's."""
        from .metrics.fidelity import make_protocol

        return make_protocol(images, self.extractor, self.n_fake)

    def metric_names(self, protocol) -> list[str]:
        return [protocol.metric_name(self.metric)] + ([self.second] if self.second else [])


@dataclass(frozen=True)
class Profile:
    name: str
    overrides: dict[str, Any]
    objective: Objective
    description: str = ""


@dataclass(frozen=True)
class SearchSpace:
    name: str
    path: Path
    description: str
    base_recipe: str
    seed: int
    n_startup_trials: int
    warmup: float
    profiles: dict[str, Profile]
    params: dict[str, Param]
    # Parameters of a reference trial enqueued first (the tutorial's hyperparameters), so the
    # study itself holds the baseline's score under the same protocol and budget.
    reference: dict[str, Any] = dataclasses.field(default_factory=dict)

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            choices = ", ".join(self.profiles)
            raise ConfigError(f"{self.path}: no profile {name!r}; choose one of {choices}")
        return self.profiles[name]

    def study_name(self, profile: str) -> str:
        return f"tune/{self.name}/{profile}"

    def config(self, profile: str, params: dict[str, Any]) -> RunConfig:
        """Recipe -> profile overrides -> params, with a snapshot wherever the trial is scored."""
        values = {**recipe_overrides(self.base_recipe), **self.profile(profile).overrides}
        for name, value in params.items():
            values.update(dict.fromkeys(self.params[name].fields, value))
        where = f"{self.path} with profile {profile!r} and params {params}"
        cfg = RunConfig.from_dict(values, where=where)
        every = math.ceil(cfg.total_steps / self.profile(profile).objective.scores_per_trial)
        return cfg.replace(where, grid_every=every, snapshot_every=every, checkpoint_every=every)

    def note(self, profile: str) -> str:
        """Markdown for the dashboard's study note: what is searched, and how it is scored."""
        prof = self.profile(profile)
        obj = prof.objective
        scoring = (
            f"{obj.metric.upper()} under the `{obj.extractor}` extractor at {obj.n_fake} images"
        )
        pruning = (
            f"scored {obj.scores_per_trial} times per trial; the median pruner starts after "
            f"{self.n_startup_trials} trials and {self.warmup:.0%} of a trial's images"
        )
        if obj.second:
            scoring += f" and {obj.second}, a Pareto front"
            pruning = "no pruning (multi-objective)"
        if obj.max_wall_s:
            scoring += f"; trials training longer than {obj.max_wall_s:g} s are infeasible"
        lines = [
            f"## {self.name} ({profile})", "", self.description, "",
            f"Base recipe `{self.base_recipe}`, profile overrides `{prof.overrides}`; file `{self.path.name}`.",
            f"Minimised: {scoring}; {pruning}.",
            "", "| parameter | sets | values |", "|---|---|---|",
        ]  # fmt: skip
        lines += [
            f"| {p.name} | {', '.join(p.fields)} | {p.describe()} |" for p in self.params.values()
        ]
        return "\n".join(lines)


def load_space(name_or_path: str | Path) -> SearchSpace:
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = ABLATIONS_DIR / f"{name_or_path}.toml"
        if not path.exists():
            found = ", ".join(sorted(p.stem for p in ABLATIONS_DIR.glob("tune_*.toml"))) or "(none)"
            raise ConfigError(
                f"no search space {str(name_or_path)!r} in {ABLATIONS_DIR}; choose one of {found}"
            )
    raw = _load_toml(path)
    _check_keys(path, "", raw, SPACE_KEYS)
    recipe = raw.get("base_recipe", "cpu_default")
    if recipe not in RECIPES:
        raise _error(
            path, "base_recipe", f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}"
        )
    seed = _number(path, "seed", raw.get("seed", 0), int, 0)
    objective = _objective(path, raw.get("objective", {}))
    pruner = raw.get("pruner", {})
    _check_keys(path, "pruner.", pruner, PRUNER_KEYS)
    n_startup = _number(path, "pruner.n_startup_trials", pruner.get("n_startup_trials", 5), int, 0)
    warmup = _number(path, "pruner.warmup", pruner.get("warmup", 0.5), float, 0)
    if warmup > 1:
        raise _error(
            path, "pruner.warmup", f"{warmup!r} is a fraction of a trial's images, in [0, 1]"
        )
    for table in ("params", "profiles"):
        if not isinstance(raw.get(table), dict) or not raw[table]:
            raise _error(path, table, f"needs at least one [{table}.NAME] table")
    base = RunConfig.from_dict(recipe_overrides(recipe), where=f"{path}: base_recipe")
    params = {name: _param(path, name, body, base) for name, body in raw["params"].items()}
    profiles = {
        name: _profile(path, name, body, recipe, objective)
        for name, body in raw["profiles"].items()
    }
    reference = raw.get("reference", {})
    for name in reference:
        if name not in params:
            raise _error(
                path, f"reference.{name}", f"not a parameter; parameters: {', '.join(params)}"
            )
    if reference and set(reference) != set(params):
        missing = ", ".join(sorted(set(params) - set(reference)))
        raise _error(path, "reference", f"must give every parameter; missing: {missing}")
    space = SearchSpace(
        path.stem, path, str(raw.get("description", "")), recipe, seed, n_startup, warmup,
        profiles, params, dict(reference),
    )  # fmt: skip
    if reference:
        for name in profiles:
            space.config(name, reference)
    example = {n: p.choices[0] if p.kind == "categorical" else p.low for n, p in params.items()}
    for name in profiles:  # build a config per profile now: nothing invalid survives to a trial
        space.config(name, example)
    return space


def _number(path: Path, key: str, value: Any, kind: type, minimum: float) -> Any:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (kind is int and not float(value).is_integer()) or value < minimum:
        what = "an integer" if kind is int else "a number"
        raise _error(path, key, f"{value!r} must be {what} >= {minimum:g}")
    return kind(value)


def _objective(path: Path, raw: Any) -> Objective:
    if not isinstance(raw, dict):
        raise _error(path, "objective", "must be a table")
    _check_keys(path, "objective.", raw, OBJECTIVE_KEYS)
    for key, value, valid in [
        ("metric", raw.get("metric", "fid"), METRICS),
        ("extractor", raw.get("extractor", "mnist"), EXTRACTORS),
        ("second", raw.get("second"), (None, *SECOND_OBJECTIVES)),
    ]:
        if value not in valid:
            choices = ", ".join(v for v in valid if v)
            raise _error(
                path, f"objective.{key}", f"unknown {key} {value!r}; choose one of {choices}"
            )
    max_wall_s = raw.get("max_wall_s")
    return Objective(
        raw.get("metric", "fid"), raw.get("extractor", "mnist"),
        _number(path, "objective.n_fake", raw.get("n_fake", 1000), int, 2),
        _number(path, "objective.scores_per_trial", raw.get("scores_per_trial", 4), int, 1),
        raw.get("second"),
        None if max_wall_s is None else _number(path, "objective.max_wall_s", max_wall_s, float, 0),
    )  # fmt: skip


def _profile(path: Path, name: str, raw: Any, recipe: str, objective: Objective) -> Profile:
    where = f"profiles.{name}"
    if not isinstance(raw, dict):
        raise _error(path, where, "must be a table")
    _check_keys(path, f"{where}.", raw, PROFILE_KEYS)
    overrides = raw.get("overrides", {})
    if not isinstance(overrides, dict):
        raise _error(path, f"{where}.overrides", "must be a table of RunConfig overrides")
    RunConfig.from_dict(
        {**recipe_overrides(recipe), **overrides}, where=f"{path}: {where}.overrides"
    )
    n_fake = raw.get("n_fake", objective.n_fake)
    scores = raw.get("scores_per_trial", objective.scores_per_trial)
    objective = dataclasses.replace(
        objective,
        n_fake=_number(path, f"{where}.n_fake", n_fake, int, 2),
        scores_per_trial=_number(path, f"{where}.scores_per_trial", scores, int, 1),
    )
    return Profile(name, dict(overrides), objective, str(raw.get("description", "")))


def _param(path: Path, name: str, raw: Any, base: RunConfig) -> Param:
    where = f"params.{name}"
    if not isinstance(raw, dict):
        raise _error(path, where, "must be a table: choices = [...], or low = ... and high = ...")
    _check_keys(path, f"{where}.", raw, PARAM_KEYS)
    fields = raw.get("fields", [name])
    key = f"{where}.fields" if "fields" in raw else where
    if not (isinstance(fields, list) and fields and all(isinstance(f, str) for f in fields)):
        raise _error(path, key, f"{fields!r} must be a non-empty list of RunConfig fields")
    for field in fields:
        if field not in FIELD_TYPES:
            hint = difflib.get_close_matches(field, FIELD_TYPES, n=2)
            hint = f" (did you mean {' or '.join(map(repr, hint))}?)" if hint else ""
            raise _error(path, key, f"unknown RunConfig field {field!r}{hint}")
        if field in NOT_TUNABLE:
            raise _error(
                path, key, f"{field!r} is the data, budget or cadence: set it in a profile"
            )
    kinds = {FIELD_TYPES[f] for f in fields}
    if len(kinds) > 1:
        raise _error(path, key, f"{fields} mix types ({', '.join(sorted(kinds))})")

    def check(value: Any, part: str) -> None:  # the value must make a valid config
        base.replace(f"{path}: {where}.{part}", **dict.fromkeys(fields, value))

    if "choices" in raw:
        choices = raw["choices"]
        if set(raw) & {"low", "high", "log"}:
            raise _error(path, where, "give either choices or low/high, not both")
        if not (
            isinstance(choices, list)
            and choices
            and len({repr(c) for c in choices}) == len(choices)
        ):
            raise _error(
                path, f"{where}.choices", f"{choices!r} must be a non-empty list without repeats"
            )
        for choice in choices:
            check(choice, "choices")
        return Param(name, tuple(fields), "categorical", choices=tuple(choices))
    kind = kinds.pop()
    if kind not in ("int", "float"):
        raise _error(path, where, f"{fields[0]} is a {kind} field: give choices = [...]")
    if "low" not in raw or "high" not in raw:
        raise _error(path, where, "needs choices = [...], or both low and high")
    number = int if kind == "int" else float
    low = _number(path, f"{where}.low", raw["low"], number, -math.inf)
    high = _number(path, f"{where}.high", raw["high"], number, -math.inf)
    if low >= high:
        raise _error(
            path, where, f"low={low!r} must be below high={high!r} (fix a value in a profile)"
        )
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise _error(path, f"{where}.log", f"{log!r} must be true or false")
    if log and low <= 0:
        raise _error(path, f"{where}.low", f"{low!r} must be > 0 for a log-uniform range")
    check(low, "low")
    check(high, "high")
    return Param(name, tuple(fields), kind, low=low, high=high, log=log)


# ---- the study -----------------------------------------------------------------------------
def open_study(space: SearchSpace, profile: str, storage, worker: int = 0) -> optuna.Study:
    """The study (created on first use) with this worker's sampler and the space's pruner."""
    obj = space.profile(profile).objective
    if len(obj.directions) == 1:
        warmup = int(space.warmup * _budget_images(space.config(profile, {})))
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


def _budget_images(cfg: RunConfig) -> int:
    """The images a trial sees: the same for every trial when the profile budgets in kimg."""
    return round(cfg.kimg * 1000) if cfg.steps is None else cfg.steps * cfg.batch_size


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


# ---- workers -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TuneJob:
    """Everything a worker process needs; plain data so it pickles across `spawn`."""

    space: str
    profile: str
    storage_url: str
    paths: Paths
    threads: int
    worker: int = 0


def work(job: TuneJob, log=print, images: dict[tuple, ImageSet] | None = None) -> int:
    """Claim waiting trials until none is left; returns how many this worker ran."""
    torch.set_num_threads(job.threads)
    space = load_space(job.space)
    storage = store.open_storage(job.storage_url)
    study = open_study(space, job.profile, storage, worker=job.worker)
    artifacts = store.artifact_store(job.paths.artifacts)
    images = {} if images is None else images  # datasets, decoded once per worker
    ran = 0
    while True:
        store.reap_dead_workers(study, storage)  # fail_stale_trials, and dead pids on this host
        trial = store.claim_next(study, storage)
        if trial is None:
            return ran
        with store.heartbeat(storage, trial._trial_id):
            try:
                state, values, summary = run_trial(trial, space, job, artifacts, images)
                study.tell(trial, values, state=state)
            except optuna.exceptions.UpdateFinishedTrialError:
                # failed as stale while this worker was stalled; its retry is someone else's now
                log(f"[w{job.worker}] trial {trial.number}: given up (another worker retries it)")
                continue
            except Exception as err:  # recorded, not retried: it would fail the same way again
                summary = f"FAILED: {type(err).__name__}: {err}"
                store.record_failure(study, trial, summary[len("FAILED: ") :])
        ran += 1
        log(f"[w{job.worker}] trial {trial.number}: {summary}")
        log(f"[w{job.worker}] {best_so_far(study)}")


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


class _Stop(Exception):
    """Raised at a snapshot to end a trial that should not go on (pruned, or a broken score)."""


def run_trial(trial: optuna.Trial, space: SearchSpace, job: TuneJob, artifacts, images: dict):
    """Train and score one trial; returns (state, values, summary) for study.tell."""
    from .metrics.fidelity import score_generator

    obj = space.profile(job.profile).objective
    params = {name: p.suggest(trial) for name, p in space.params.items()}
    cfg = space.config(job.profile, params)
    run_dir = job.paths.results / trial.study.study_name / str(trial.number)
    if run_dir.exists():  # left by a trial of a store that has since been deleted
        shutil.rmtree(run_dir)
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("config", cfg.to_dict())
    key = (cfg.data, cfg.image_size, cfg.channels)
    if key not in images:
        images[key] = load_images(*key)
    protocol = obj.protocol(images[key])
    metric = protocol.metric_name(obj.metric)
    budget, multi = _budget_images(cfg), len(obj.directions) > 1
    curve: list[list[float]] = []
    score_s, steps_done, scores = 0.0, 0, {}

    def on_snapshot(step: int, G) -> None:
        nonlocal score_s, steps_done, scores
        steps_done = step
        if multi and step < cfg.total_steps:  # nothing to prune: score the final generator only
            return
        started = time.perf_counter()
        scores = score_generator(G, cfg, images[key], protocol)
        score_s += time.perf_counter() - started
        value = float(scores[metric])
        # Reported on a grid of images seen that every trial shares whatever its batch size,
        # so the pruner compares trials at the same point of the budget.
        at = round(
            round(step * obj.scores_per_trial / cfg.total_steps) * budget / obj.scores_per_trial
        )
        curve.append([at, value])
        if not math.isfinite(value):
            raise _Stop(f"non-finite {metric} at {at} images: {scores.get('reason', '')}")
        if not multi:
            trial.report(value, at)
            if trial.should_prune():
                raise _Stop(f"{metric} {value:.2f} at {at} images: worse than the median there")

    started = time.perf_counter()
    status, reason = "completed", None
    try:
        result = train(cfg, run_dir, images=images[key], on_snapshot=on_snapshot)
        steps_done = result["steps_done"]
        if result["status"] == "diverged":
            status, reason = "diverged", f"at step {steps_done}: {result['divergence_reason']}"
    except _Stop as stop:
        status, reason = "pruned", str(stop)
    wall_s = time.perf_counter() - started - score_s  # training only
    attrs = {
        "status": status,
        "pruned_reason": reason,
        "protocol": protocol.to_dict(),
        "scores": {name: scores[name] for name in protocol.metric_names if name in scores},
        "wall_s": wall_s,
        "score_s": score_s,
        "images_per_s": steps_done * cfg.batch_size / max(wall_s, 1e-9),
        "steps_done": steps_done,
        obj.metric: curve[-1][1] if curve else None,
        f"{obj.metric}_curve": curve,
    }
    for name, value in attrs.items():
        trial.set_user_attr(name, value)
    grids = sorted((run_dir / "grids").glob("step_*.png"))
    if grids:
        optuna.artifacts.upload_artifact(
            artifact_store=artifacts,
            file_path=str(grids[-1]),
            study_or_trial=trial,
            mimetype="image/png",
        )
    speed = f"{wall_s:.0f} s training, {attrs['images_per_s']:.0f} img/s"
    if reason:
        return TrialState.PRUNED, None, f"{status}: {reason} ({speed})"
    values = [curve[-1][1]] + ([wall_s] if multi else [])
    return (
        TrialState.COMPLETE,
        values,
        f"{obj.metric} {values[0]:.1f} ({speed}), {format_params(params)}",
    )


# ---- the command ---------------------------------------------------------------------------
def run_tuning(
    space_name: str | Path,
    n_trials: int,
    profile: str = "cpu",
    *,
    workers: int = 1,
    storage_url: str | None = None,
    paths: Paths | None = None,
    threads: int | None = None,
    log=print,
) -> optuna.Study:
    """Top the study up to n_trials and run workers (each on `threads` torch threads, by
    default its share of the cores) until no trial is waiting."""
    import optuna_dashboard

    from .metrics.fidelity import reference_features

    space, paths = load_space(space_name), paths or Paths()
    obj = space.profile(profile).objective
    url = _storage_url(storage_url, paths)
    storage = store.open_storage(url)
    study = open_study(space, profile, storage)
    # The real features, computed once here and cached for every worker; a missing dataset or
    # a broken extractor fails now rather than in each trial.
    base = space.config(profile, {})
    images = load_images(base.data, base.image_size, base.channels)
    protocol = obj.protocol(images)
    reference_features(images, protocol)
    study.set_metric_names(obj.metric_names(protocol))
    study.set_user_attr("space_file", str(space.path))
    study.set_user_attr("base_recipe", space.base_recipe)
    study.set_user_attr("profile", profile)
    study.set_user_attr(
        "search_space", {n: [list(p.fields), p.describe()] for n, p in space.params.items()}
    )
    if optuna_dashboard.get_note(study) != space.note(profile):
        optuna_dashboard.save_note(study, space.note(profile))
    added = top_up(study, storage, n_trials, space.reference)
    log(
        f"{study.study_name}: budget {n_trials} trials, {added} newly queued, store {store.redact(url)}"
    )
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    jobs = [TuneJob(str(space.path), profile, url, paths, threads, i) for i in range(workers)]
    if workers == 1:
        work(jobs[0], log, images={(base.data, base.image_size, base.channels): images})
    else:
        spawn_workers(work, jobs, "dcgan-tune", log)
    counts = {
        s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState
    }
    log(f"{study.study_name}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return study


def _storage_url(storage_url: str | None, paths: Paths) -> str:
    """The ablations' rule: --storage, else $DCGAN_STORAGE, else the store under results/."""
    if storage_url or os.environ.get("DCGAN_STORAGE"):
        return store.storage_url(storage_url)
    return paths.default_storage


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


def command_tune(argv: list[str]) -> int:
    from .cli import _paths, _storage, command_parser

    p = command_parser("tune")
    args = p.parse_args(argv)
    if args.trials is None and args.export_best is None:
        p.error("give --trials N, --export-best PATH, or both")
    if args.trials is not None and args.trials < 1:
        raise ConfigError(f"--trials {args.trials}: must be >= 1")
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: must be >= 1")
    space = load_space(args.space)
    name = space.study_name(space.profile(args.profile).name)
    paths, storage_url = _paths(args), _storage(args)
    if args.trials is not None:
        study = run_tuning(
            space.path, args.trials, args.profile, workers=args.workers, storage_url=storage_url,
            paths=paths,
        )  # fmt: skip
    else:
        try:
            study = optuna.load_study(
                study_name=name, storage=store.open_storage(_storage_url(storage_url, paths))
            )
        except KeyError:
            raise ConfigError(
                f"no study {name!r} in the store yet: run with --trials N first"
            ) from None
    if args.export_best is not None:
        source = export_best(study, args.export_best)["source"]
        print(
            f"best: trial {source['trial']}, {source['score']} -> {args.export_best} (--recipe {args.export_best})"
        )
    return 0


# ---- the dashboard -------------------------------------------------------------------------
def dashboard_args(argv: list[str]) -> argparse.Namespace:
    from .cli import command_parser

    return command_parser("dashboard").parse_args(argv)


def is_loopback(host: str) -> bool:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
        return all(ipaddress.ip_address(a).is_loopback for a in addresses)
    except (socket.gaierror, ValueError):
        return False


def command_dashboard(argv: list[str]) -> int:
    """optuna-dashboard, on loopback unless --host says otherwise: it has no authentication
    and can edit the store."""
    import optuna_dashboard

    from .cli import _paths, _storage

    args = dashboard_args(argv)
    paths = _paths(args)
    url = _storage_url(_storage(args), paths)
    args.artifact_dir = args.artifact_dir or paths.artifacts
    if not is_loopback(args.host):
        print(f"warning: --host {args.host} is not loopback: the dashboard has no authentication and can edit the store; anyone who reaches it can", file=sys.stderr)  # fmt: skip
    print(f"optuna-dashboard on http://{args.host}:{args.port} over {store.redact(url)}, artifacts in {args.artifact_dir}", flush=True)  # fmt: skip
    optuna_dashboard.run_server(
        store.open_storage(url),
        host=args.host,
        port=args.port,
        artifact_store=store.artifact_store(args.artifact_dir),
    )
    return 0
