"""Ablation specs: readable TOML files in ablations/, validated before any work starts.

A spec names a question, the documents behind it, a base recipe, arms (named override sets
of RunConfig), the baseline arm and per-profile budgets. Profiles (`smoke`, `cpu`, `gpu`)
come from ablations/_profiles.toml and a spec may refine them. Every run an ablation needs is
built here as a RunConfig, so a typo anywhere fails at once with the file, the key and
what would be valid.

Order in which a run's config is assembled (later wins):
    recipe (arm's `recipe`, else profile's `base_recipe`, else spec's `base_recipe`)
    -> profile overrides -> arm overrides -> `--data` -> width multiplier -> budget matching

Over 400 lines on purpose: the spec schema and the planning it drives change together; checks
beyond structure live in spec_checks.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import spec_checks
from .config import CHOICES, ConfigError, RunConfig
from .locations import ablations_dir, missing_specs_hint
from .recipes import RECIPES, recipe_overrides
from .results import Claim
from .spec_checks import check_keys, key_error, load_toml

ABLATIONS_DIR = ablations_dir()  # $DCGAN_ABLATIONS, a checkout's ablations/, or the wheel's copy
PROFILES_FILE = "_profiles.toml"
# feature spaces a profile may score in (those that pass the sanity suite: dcgan.metrics.sanity)
EXTRACTORS = ("mnist", "randcnn", "inception")
CLAIM_KINDS = ("better", "not_better", "diverges", "info")
SPEC_KEYS = {
    "question",
    "base_recipe",
    "baseline",
    "seeds",
    "notes",
    "sources",
    "claims",
    "profiles",
    "arms",
    "equivalence_margin",
}
CLAIM_KEYS = {
    "source", "text", "kind", "arm", "vs", "reported",
    "measure", "recipe", "data", "budget", "margin", "scope", "criterion",
}  # fmt: skip
CLAIM_MEASURES = {"better": ("fid",), "not_better": ("fid",), "diverges": ("failure",), "info": ()}
CRITERION_KEYS = {"g_loss_above", "d_loss_below"}
PROFILE_KEYS = {
    "base_recipe",
    "overrides",
    "seeds",
    "extractor",
    "n_fake",
    "width_multiplier",
    "data",
    "description",
    "extractors",
    "snapshots",
    "conclusive",
    "replicates",
}
REPLICATE_THREADS = 2  # the default workers train on 1 thread each
ARM_SPECIAL_KEYS = {"recipe", "match_baseline", "label"}


@dataclass
class Profile:
    name: str
    overrides: dict[str, Any]
    seeds: list[int]
    extractor: str
    n_fake: int
    width_multiplier: float = 1.0
    base_recipe: str | None = None
    data: str | None = None
    description: str = ""
    # every feature space scored; the first is the primary one (extractors[0] == extractor)
    extractors: tuple[str, ...] = ()
    snapshots: int | None = None  # scored snapshots per run, evenly in steps (cadence only)
    conclusive: bool = True  # False: too short for final verdicts (the report says so)
    replicates: bool = False  # an execution replicate per arm: the nondeterminism spread


@dataclass
class Arm:
    name: str
    overrides: dict[str, Any]
    recipe: str | None = None
    match_baseline: str = "images"  # 'images': same kimg as the profile; 'steps': same steps
    label: str = ""


@dataclass
class PlannedRun:
    arm: str
    seed: int
    config: RunConfig
    execution: int = 0  # 1: an execution replicate (same arm and seed, another thread count)


@dataclass
class AblationSpec:
    name: str
    path: Path
    question: str
    base_recipe: str
    baseline: str
    arms: dict[str, Arm]
    profiles: dict[str, Profile]
    sources: list[dict] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    equivalence_margin: float | None = None  # ratio scale: 0.10 = equivalent within ±10%

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            raise ConfigError(
                f"{self.path}: no profile {name!r}; choose one of {', '.join(self.profiles)}"
            )
        return self.profiles[name]

    def plan(
        self, profile: str, seeds: list[int] | None = None, data: str | None = None
    ) -> list[PlannedRun]:
        """Every (arm, seed) run as a validated RunConfig, baseline arm first."""
        prof = self.profile(profile)
        seeds = list(seeds) if seeds is not None else prof.seeds
        if not seeds:
            raise ConfigError(f"{self.path}: profile {profile!r} has no seeds")
        spec_checks.check_seeds(self.path, "seeds", seeds)
        order = [self.baseline] + [a for a in self.arms if a != self.baseline]
        runs = []
        for seed in seeds:
            baseline_cfg = self._config(self.arms[self.baseline], prof, seed, data, None)
            for arm_name in order:
                arm = self.arms[arm_name]
                cfg = (
                    baseline_cfg
                    if arm_name == self.baseline
                    else self._config(arm, prof, seed, data, baseline_cfg)
                )
                runs.append(PlannedRun(arm_name, seed, cfg))
        if prof.replicates:  # one execution replicate per arm, on the first seed
            first = [r for r in runs if r.seed == seeds[0]]
            runs += [
                PlannedRun(r.arm, r.seed, r.config.replace(threads=REPLICATE_THREADS), 1)
                for r in first
            ]
        return runs

    def _config(
        self, arm: Arm, prof: Profile, seed: int, data: str | None, baseline: RunConfig | None
    ) -> RunConfig:
        where = f"{self.path} [arms.{arm.name}] with profile {prof.name!r}"
        values = recipe_overrides(arm.recipe or prof.base_recipe or self.base_recipe)
        if prof.data:
            values["data"] = prof.data
        values.update(prof.overrides)
        values.update(arm.overrides)
        if data:
            values["data"] = data
        values["seed"] = seed
        if prof.width_multiplier != 1.0:
            for key in ("g_width", "d_width"):
                base = values.get(key, RunConfig.__dataclass_fields__[key].default)
                values[key] = max(1, round(base * prof.width_multiplier))
        if arm.match_baseline == "steps" and baseline is not None:
            values["steps"] = baseline.total_steps
        cfg = RunConfig.from_dict(values, where=where)
        if prof.snapshots:  # dense, even snapshots; cadence is not part of a run's identity
            cfg = cfg.replace(where, snapshot_every=max(1, cfg.total_steps // prof.snapshots))
        return cfg


def _check_choice(path: Path, key: str, value: Any, choices, shown: str | None = None) -> None:
    if value not in choices:
        valid = shown or ", ".join(map(str, choices))
        raise key_error(path, key, f"{value!r} is not valid; choose one of {valid}")


def _profiles(path: Path, raw: dict, defaults: dict) -> dict[str, Profile]:
    merged: dict[str, dict] = {name: dict(p) for name, p in defaults.items()}
    for name, prof in raw.items():
        if not isinstance(prof, dict):
            raise key_error(path, f"profiles.{name}", "must be a table")
        check_keys(path, f"profiles.{name}.", prof, PROFILE_KEYS)
        base = merged.get(name, {})
        overrides = {**base.get("overrides", {}), **prof.get("overrides", {})}
        merged[name] = {**base, **prof, "overrides": overrides}
    profiles = {}
    for name, p in merged.items():
        check_keys(path, f"profiles.{name}.", p, PROFILE_KEYS)
        where = f"profiles.{name}"
        extractor = p.get("extractor", "mnist")
        _check_choice(path, f"{where}.extractor", extractor, EXTRACTORS)
        extractors = p.get("extractors", [extractor])
        if not (isinstance(extractors, list) and extractors):
            raise key_error(path, f"{where}.extractors", f"{extractors!r} must be a non-empty list")
        for i, name_i in enumerate(extractors):
            _check_choice(path, f"{where}.extractors[{i}]", name_i, EXTRACTORS)
        if "extractors" in p and "extractor" in p and extractors[0] != extractor:
            raise key_error(
                path, f"{where}.extractors", f"the first ({extractors[0]!r}) must be the primary "
                f"extractor {extractor!r}"
            )  # fmt: skip
        extractor = extractors[0]
        snapshots = p.get("snapshots")
        if snapshots is not None and not (isinstance(snapshots, int) and 1 <= snapshots <= 1000):
            raise key_error(path, f"{where}.snapshots", f"{snapshots!r} must be an integer 1..1000")
        conclusive = p.get("conclusive", True)
        replicates = p.get("replicates", False)
        for key, flag in (("conclusive", conclusive), ("replicates", replicates)):
            if not isinstance(flag, bool):
                raise key_error(path, f"{where}.{key}", f"{flag!r} must be true or false")
        seeds = p.get("seeds", [0, 1, 2])
        if not (
            isinstance(seeds, list) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds)
        ):
            raise key_error(
                path, f"{where}.seeds", f"{seeds!r} must be a non-empty list of integers >= 0"
            )
        if len(set(seeds)) != len(seeds):
            raise key_error(path, f"{where}.seeds", f"{seeds!r} repeats a seed")
        n_fake = p.get("n_fake", 1000)
        if not (isinstance(n_fake, int) and n_fake >= 2):
            raise key_error(path, f"{where}.n_fake", f"{n_fake!r} must be an integer >= 2")
        mult = p.get("width_multiplier", 1.0)
        if not (isinstance(mult, int | float) and math.isfinite(mult) and mult > 0):
            raise key_error(
                path, f"{where}.width_multiplier", f"{mult!r} must be a positive number"
            )
        if p.get("base_recipe") is not None and p["base_recipe"] not in RECIPES:
            raise key_error(
                path,
                f"{where}.base_recipe",
                f"unknown recipe {p['base_recipe']!r}; choose one of {', '.join(RECIPES)}",
            )
        profiles[name] = Profile(
            name, dict(p.get("overrides", {})), list(seeds), extractor, n_fake, float(mult),
            p.get("base_recipe"), p.get("data"), p.get("description", ""),
            tuple(dict.fromkeys(extractors)), snapshots, conclusive, replicates,
        )  # fmt: skip
    return profiles


def _arms(path: Path, raw: Any) -> dict[str, Arm]:
    if not isinstance(raw, dict) or not raw:
        raise key_error(path, "arms", "needs at least one [arms.NAME] table of RunConfig overrides")
    arms = {}
    valid_keys = set(RunConfig.__dataclass_fields__) | ARM_SPECIAL_KEYS
    for name, body in raw.items():
        if not isinstance(body, dict):
            raise key_error(path, f"arms.{name}", "must be a table of overrides")
        if not name.strip():
            raise key_error(path, "arms", "an arm name is empty")
        check_keys(path, f"arms.{name}.", body, valid_keys)
        overrides = {k: v for k, v in body.items() if k not in ARM_SPECIAL_KEYS}
        for key, value in overrides.items():
            if key in CHOICES:
                shown = ", ".join(map(repr, CHOICES[key]))
                _check_choice(path, f"arms.{name}.{key}", value, CHOICES[key], shown)
        recipe = body.get("recipe")
        if recipe is not None and recipe not in RECIPES:
            raise key_error(
                path,
                f"arms.{name}.recipe",
                f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}",
            )
        match = body.get("match_baseline", "images")
        if match not in ("images", "steps"):
            raise key_error(
                path,
                f"arms.{name}.match_baseline",
                f"{match!r} is not valid; choose 'images' or 'steps'",
            )
        arms[name] = Arm(name, overrides, recipe, match, body.get("label", ""))
    return arms


def _margin(path: Path, key: str, value: Any) -> float:
    if not (isinstance(value, int | float) and not isinstance(value, bool)):
        raise key_error(path, key, f"{value!r} must be a number between 0 and 1 (0.10 = ±10%)")
    if not (math.isfinite(value) and 0 < value < 1):
        raise key_error(path, key, f"{value!r} must be between 0 and 1 (0.10 = ±10%)")
    return float(value)


def _claim_conditions(path: Path, where: str, c: dict, kind: str, default_margin) -> dict:
    """measure, recipe, data, budget, margin, scope and criterion of one claim, validated."""
    measures = CLAIM_MEASURES[kind]
    measure = c.get("measure", measures[0] if measures else None)
    if measure is not None or "measure" in c:
        _check_choice(path, f"{where}.measure", measure, measures or ("(none for info)",))
    recipe = c.get("recipe")
    if recipe is not None and recipe not in RECIPES:
        raise key_error(
            path,
            f"{where}.recipe",
            f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}",
        )
    for key in ("data", "budget"):
        if c.get(key) is not None and not isinstance(c[key], str):
            raise key_error(path, f"{where}.{key}", f"{c[key]!r} must be a string")
    margin = _margin(path, f"{where}.margin", c["margin"]) if "margin" in c else default_margin
    scope = c.get("scope", "in")
    if not isinstance(scope, str) or not (
        scope == "in" or (scope.startswith("out:") and scope[4:].strip())
    ):
        raise key_error(path, f"{where}.scope", f"{scope!r} must be 'in' or 'out: <why>'")
    criterion = c.get("criterion", {})
    if not isinstance(criterion, dict):
        raise key_error(path, f"{where}.criterion", "must be a table, e.g. { g_loss_above = 20.0 }")
    if criterion and kind != "diverges":
        raise key_error(path, f"{where}.criterion", "only a 'diverges' claim takes a criterion")
    check_keys(path, f"{where}.criterion.", criterion, CRITERION_KEYS)
    for key, value in criterion.items():
        if not (isinstance(value, int | float) and math.isfinite(value)):
            raise key_error(path, f"{where}.criterion.{key}", f"{value!r} must be a number")
    return {
        "measure": measure, "recipe": recipe, "data": c.get("data"), "budget": c.get("budget"),
        "margin": margin, "scope": scope, "criterion": {k: float(v) for k, v in criterion.items()},
    }  # fmt: skip


def _claims(
    path: Path, raw: list, arms: dict[str, Arm], default_margin: float | None = None
) -> list[Claim]:
    claims = []
    for i, c in enumerate(raw):
        where = f"claims[{i}]"
        check_keys(path, f"{where}.", c, CLAIM_KEYS)
        kind = c.get("kind", "info")
        _check_choice(path, f"{where}.kind", kind, CLAIM_KINDS)
        for key in ("arm", "vs"):
            if c.get(key) is not None and c[key] not in arms:
                raise key_error(
                    path, f"{where}.{key}", f"no arm {c[key]!r}; arms: {', '.join(arms)}"
                )
        if kind in ("better", "not_better") and not (c.get("arm") and c.get("vs")):
            raise key_error(path, where, f"kind {kind!r} needs both 'arm' and 'vs'")
        if kind == "diverges" and not c.get("arm"):
            raise key_error(path, where, "kind 'diverges' needs 'arm'")
        claims.append(
            Claim(
                str(c.get("source", "")),
                str(c.get("text", "")),
                kind,
                c.get("arm"),
                c.get("vs"),
                dict(c.get("reported", {})),
                **_claim_conditions(path, where, c, kind, default_margin),
            )
        )
    return claims


def load_spec(name_or_path: str | Path, ablations_dir: Path | None = None) -> AblationSpec:
    ablations_dir = Path(ablations_dir or ABLATIONS_DIR)
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = ablations_dir / f"{name_or_path}.toml"
        if not path.exists():
            known = list_specs(ablations_dir)
            if not known:
                raise ConfigError(missing_specs_hint(ablations_dir))
            raise ConfigError(
                f"no ablation {str(name_or_path)!r} in {ablations_dir}; choose one of {', '.join(known)}"
            )
    raw = load_toml(path)
    check_keys(path, "", raw, SPEC_KEYS)
    spec_checks.check_structure(path, raw)  # shapes, names, seeds: before anything reads them
    defaults_path = path.parent / PROFILES_FILE
    if not defaults_path.exists():  # a spec kept elsewhere still inherits the standard profiles
        defaults_path = ABLATIONS_DIR / PROFILES_FILE
    defaults = load_toml(defaults_path).get("profiles", {}) if defaults_path.exists() else {}
    for key in ("question", "base_recipe", "baseline"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise key_error(path, key, "is required (a non-empty string)")
    if raw["base_recipe"] not in RECIPES:
        raise key_error(
            path,
            "base_recipe",
            f"unknown recipe {raw['base_recipe']!r}; choose one of {', '.join(RECIPES)}",
        )
    arms = _arms(path, raw.get("arms"))
    if raw["baseline"] not in arms:
        raise key_error(
            path, "baseline", f"{raw['baseline']!r} is not an arm; arms: {', '.join(arms)}"
        )
    profiles = _profiles(path, raw.get("profiles", {}), defaults)
    margin = (
        _margin(path, "equivalence_margin", raw["equivalence_margin"])
        if "equivalence_margin" in raw
        else None
    )
    if "seeds" in raw:  # spec-wide seeds apply to every profile that doesn't set its own
        for name, prof in profiles.items():
            if "seeds" not in raw.get("profiles", {}).get(name, {}):
                prof.seeds = list(raw["seeds"])
    spec = AblationSpec(
        name=path.stem, path=path, question=raw["question"], base_recipe=raw["base_recipe"],
        baseline=raw["baseline"], arms=arms, profiles=profiles, sources=list(raw.get("sources", [])),
        claims=_claims(path, raw.get("claims", []), arms, margin), notes=list(raw.get("notes", [])),
        equivalence_margin=margin,
    )  # fmt: skip
    for prof in profiles:  # build every config now: nothing invalid survives to training
        spec.plan(prof, seeds=spec.profiles[prof].seeds[:1])
    spec_checks.check_spec(spec)  # sizes within limits; no arm identical to another everywhere
    return spec


def list_specs(ablations_dir: Path | None = None) -> list[str]:
    ablations_dir = Path(ablations_dir or ABLATIONS_DIR)
    return sorted(
        p.stem
        for p in ablations_dir.glob("*.toml")
        if not p.name.startswith("_") and not p.stem.startswith("tune_")
    )
