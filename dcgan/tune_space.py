"""A tuning search space (ablations/tune_*.toml): its schema, validated like an ablation spec.

`load_space` reads the file and checks every key and value before any trial runs: each failure
is one ConfigError naming the file, the key and what would be valid, and a config is built for
every profile so nothing invalid survives to a trial. `SearchSpace.config` turns a trial's
parameters into the RunConfig it trains (recipe -> profile overrides -> parameters, snapshots
where the trial is scored).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from .config import ConfigError, RunConfig
from .data import ImageSet
from .recipes import RECIPES, recipe_overrides
from .spec_checks import check_keys, key_error, load_toml
from .specs import ABLATIONS_DIR, EXTRACTORS

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
    raw = load_toml(path)
    check_keys(path, "", raw, SPACE_KEYS)
    recipe = raw.get("base_recipe", "cpu_default")
    if recipe not in RECIPES:
        raise key_error(
            path, "base_recipe", f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}"
        )
    seed = _number(path, "seed", raw.get("seed", 0), int, 0)
    objective = _objective(path, raw.get("objective", {}))
    pruner = raw.get("pruner", {})
    check_keys(path, "pruner.", pruner, PRUNER_KEYS)
    n_startup = _number(path, "pruner.n_startup_trials", pruner.get("n_startup_trials", 5), int, 0)
    warmup = _number(path, "pruner.warmup", pruner.get("warmup", 0.5), float, 0)
    if warmup > 1:
        raise key_error(
            path, "pruner.warmup", f"{warmup!r} is a fraction of a trial's images, in [0, 1]"
        )
    for table in ("params", "profiles"):
        if not isinstance(raw.get(table), dict) or not raw[table]:
            raise key_error(path, table, f"needs at least one [{table}.NAME] table")
    base = RunConfig.from_dict(recipe_overrides(recipe), where=f"{path}: base_recipe")
    params = {name: _param(path, name, body, base) for name, body in raw["params"].items()}
    profiles = {
        name: _profile(path, name, body, recipe, objective)
        for name, body in raw["profiles"].items()
    }
    reference = raw.get("reference", {})
    for name in reference:
        if name not in params:
            raise key_error(
                path, f"reference.{name}", f"not a parameter; parameters: {', '.join(params)}"
            )
    if reference and set(reference) != set(params):
        missing = ", ".join(sorted(set(params) - set(reference)))
        raise key_error(path, "reference", f"must give every parameter; missing: {missing}")
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
        raise key_error(path, key, f"{value!r} must be {what} >= {minimum:g}")
    return kind(value)


def _objective(path: Path, raw: Any) -> Objective:
    if not isinstance(raw, dict):
        raise key_error(path, "objective", "must be a table")
    check_keys(path, "objective.", raw, OBJECTIVE_KEYS)
    for key, value, valid in [
        ("metric", raw.get("metric", "fid"), METRICS),
        ("extractor", raw.get("extractor", "mnist"), EXTRACTORS),
        ("second", raw.get("second"), (None, *SECOND_OBJECTIVES)),
    ]:
        if value not in valid:
            choices = ", ".join(v for v in valid if v)
            raise key_error(
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
        raise key_error(path, where, "must be a table")
    check_keys(path, f"{where}.", raw, PROFILE_KEYS)
    overrides = raw.get("overrides", {})
    if not isinstance(overrides, dict):
        raise key_error(path, f"{where}.overrides", "must be a table of RunConfig overrides")
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
        raise key_error(
            path, where, "must be a table: choices = [...], or low = ... and high = ..."
        )
    check_keys(path, f"{where}.", raw, PARAM_KEYS)
    fields = raw.get("fields", [name])
    key = f"{where}.fields" if "fields" in raw else where
    if not (isinstance(fields, list) and fields and all(isinstance(f, str) for f in fields)):
        raise key_error(path, key, f"{fields!r} must be a non-empty list of RunConfig fields")
    for field in fields:
        if field not in FIELD_TYPES:
            hint = difflib.get_close_matches(field, FIELD_TYPES, n=2)
            hint = f" (did you mean {' or '.join(map(repr, hint))}?)" if hint else ""
            raise key_error(path, key, f"unknown RunConfig field {field!r}{hint}")
        if field in NOT_TUNABLE:
            raise key_error(
                path, key, f"{field!r} is the data, budget or cadence: set it in a profile"
            )
    kinds = {FIELD_TYPES[f] for f in fields}
    if len(kinds) > 1:
        raise key_error(path, key, f"{fields} mix types ({', '.join(sorted(kinds))})")

    def check(value: Any, part: str) -> None:  # the value must make a valid config
        base.replace(f"{path}: {where}.{part}", **dict.fromkeys(fields, value))

    if "choices" in raw:
        choices = raw["choices"]
        if set(raw) & {"low", "high", "log"}:
            raise key_error(path, where, "give either choices or low/high, not both")
        if not (
            isinstance(choices, list)
            and choices
            and len({repr(c) for c in choices}) == len(choices)
        ):
            raise key_error(
                path, f"{where}.choices", f"{choices!r} must be a non-empty list without repeats"
            )
        for choice in choices:
            check(choice, "choices")
        return Param(name, tuple(fields), "categorical", choices=tuple(choices))
    kind = kinds.pop()
    if kind not in ("int", "float"):
        raise key_error(path, where, f"{fields[0]} is a {kind} field: give choices = [...]")
    if "low" not in raw or "high" not in raw:
        raise key_error(path, where, "needs choices = [...], or both low and high")
    number = int if kind == "int" else float
    low = _number(path, f"{where}.low", raw["low"], number, -math.inf)
    high = _number(path, f"{where}.high", raw["high"], number, -math.inf)
    if low >= high:
        raise key_error(
            path, where, f"low={low!r} must be below high={high!r} (fix a value in a profile)"
        )
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise key_error(path, f"{where}.log", f"{log!r} must be true or false")
    if log and low <= 0:
        raise key_error(path, f"{where}.low", f"{low!r} must be > 0 for a log-uniform range")
    check(low, "low")
    check(high, "high")
    return Param(name, tuple(fields), kind, low=low, high=high, log=log)


def budget_images(cfg: RunConfig) -> int:
    """The images a trial sees: the same for every trial when the profile budgets in kimg."""
    return round(cfg.kimg * 1000) if cfg.steps is None else cfg.steps * cfg.batch_size
