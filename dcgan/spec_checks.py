"""Checks of a spec's structure and values that `dcgan.specs` runs before building any config.

Each failure is one ConfigError line naming the file, the key and what would be valid, raised
while the spec loads: nothing here may surface later as a traceback after training (the
report's sources table, a claim's reported numbers, a page name, a seed list read as a string).
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from pathlib import Path
from typing import Any

from .config import ConfigError, RunConfig

# A spec's file name becomes its study, report page and table name; a profile's name becomes
# part of the page and table file names: both stay plain, so no name can leave results/ or
# reports/ or need escaping in a URL.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
PROFILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,31}$")
# An arm name is shown as text (the report escapes it) but lands in CSV cells: it may not
# start like a spreadsheet formula (= + - @) or hold control characters.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

# Sizes past these are typos, not experiments: each would exhaust memory or run for years.
LIMITS: dict[str, float] = {
    "nz": 4096,
    "g_width": 4096,
    "d_width": 4096,
    "batch_size": 16384,
    "g_steps": 100,
    "steps": 50_000_000,
    "kimg": 1_000_000,
}
# Fields a run's identity ignores (RunConfig.hash): two arms differing only here are one run.
NOT_IDENTITY = {"device", "log_every", "grid_every", "snapshot_every", "checkpoint_every"}


def key_error(path: Path, key: str, message: str) -> ConfigError:
    """`FILE: KEY: MESSAGE`, the one form of every spec and search-space error."""
    return ConfigError(f"{path}: {key}: {message}")


def check_keys(path: Path, where: str, got: dict, allowed: set[str]) -> None:
    for key in got:
        if key not in allowed:
            hint = difflib.get_close_matches(key, allowed, n=2)
            raise key_error(
                path, f"{where}{key}",
                "unknown key" + (f" (did you mean {' or '.join(map(repr, hint))}?)" if hint else "")
                + f"; valid keys: {', '.join(sorted(allowed))}",
            )  # fmt: skip


def load_toml(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"{path}: spec file does not exist")
    if not path.is_file():
        raise ConfigError(f"{path}: is not a file (a spec is one .toml file)")
    try:
        text = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the spec: {err.strerror or err}") from None
    if len(text) > 1 << 20:
        raise ConfigError(f"{path}: {len(text):,} bytes is not a spec (at most 1 MiB)")
    try:  # utf-8-sig: a byte-order mark (some editors write one) is not part of the TOML
        raw = tomllib.loads(text.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    return raw


def check_name(path: Path) -> None:
    if not NAME_RE.match(path.stem):
        raise key_error(
            path,
            "file name",
            f"{path.stem!r} cannot name a study, report page and table: use 1-64 letters, digits, "
            "'_', '-' or '.', starting with a letter or digit (rename the file)",
        )


def check_seeds(path: Path | str, key: str, seeds: Any) -> list[int]:
    """A non-empty list of distinct integers >= 0 (never a string: "01" is not [0, 1])."""
    if not (
        isinstance(seeds, list)
        and seeds
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise key_error(
            Path(path), key, f"{seeds!r} must be a non-empty list of integers >= 0, e.g. [0, 1, 2]"
        )
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise key_error(
            Path(path), key, f"{seeds!r} repeats a seed ({repeated}); each seed runs once"
        )
    return list(seeds)


def _table(path: Path, key: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise key_error(path, key, f"must be a table, got {type(value).__name__} {value!r:.60}")
    return value


def _strings(path: Path, key: str, value: Any) -> None:
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise key_error(
            path,
            key,
            f'must be a list of strings, e.g. ["first note", "second"]; got {value!r:.60}',
        )


def _scalar_overrides(path: Path, key: str, table: Any) -> None:
    _table(path, key, table)
    for name, value in table.items():
        if name == "seed":
            raise key_error(
                path,
                f"{key}.seed",
                "a run's seed comes from the profile's `seeds` (or --seeds), not from overrides",
            )
        if isinstance(value, dict | list):
            raise key_error(
                path,
                f"{key}.{name}",
                f"{value!r:.60} must be a single value, not a {type(value).__name__}",
            )


def check_structure(path: Path, raw: dict) -> None:
    """The shape of a parsed spec: container types, names, seeds, notes, sources, claims."""
    check_name(path)
    if "seeds" in raw:
        check_seeds(path, "seeds", raw["seeds"])
    if "notes" in raw:
        _strings(path, "notes", raw["notes"])
    for key in ("question", "base_recipe", "baseline"):
        if key in raw and not isinstance(raw[key], str):
            raise key_error(path, key, f"must be a string, got {raw[key]!r:.60}")
    sources = raw.get("sources", [])
    if not isinstance(sources, list):
        raise key_error(
            path, "sources", "must be a list of [[sources]] tables (document, title, claim)"
        )
    for i, source in enumerate(sources):
        _table(path, f"sources[{i}]", source)
        for k, v in source.items():
            if not isinstance(v, str):
                raise key_error(path, f"sources[{i}].{k}", f"{v!r:.60} must be a string")
    claims = raw.get("claims", [])
    if not isinstance(claims, list):
        raise key_error(path, "claims", "must be a list of [[claims]] tables")
    for i, claim in enumerate(claims):
        _table(path, f"claims[{i}]", claim)
        for k in ("source", "text", "arm", "vs"):
            if k in claim and not isinstance(claim[k], str):
                raise key_error(path, f"claims[{i}].{k}", f"{claim[k]!r:.60} must be a string")
        reported = _table(path, f"claims[{i}].reported", claim.get("reported", {}))
        for k, v in reported.items():
            if not (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)):
                raise key_error(
                    path,
                    f"claims[{i}].reported.{k}",
                    f"{v!r:.60} must be a finite number, e.g. {k} = 27.0",
                )
    profiles = _table(path, "profiles", raw.get("profiles", {}))
    for name, prof in profiles.items():
        check_profile(path, name, prof)
    arms = raw.get("arms", {})
    if isinstance(arms, dict):
        for name, body in arms.items():
            check_arm(path, name, body)


def check_profile(path: Path, name: str, prof: Any) -> None:
    if not PROFILE_RE.match(name):
        raise key_error(
            path,
            f"profiles.{name}",
            "a profile name is part of file names: use 1-32 letters, digits, '_' or '-', "
            "starting with a letter or digit",
        )
    prof = _table(path, f"profiles.{name}", prof)
    if "overrides" in prof:
        _scalar_overrides(path, f"profiles.{name}.overrides", prof["overrides"])
    if "seeds" in prof:
        check_seeds(path, f"profiles.{name}.seeds", prof["seeds"])
    for key in ("description", "data", "base_recipe", "extractor"):
        if key in prof and not isinstance(prof[key], str):
            raise key_error(path, f"profiles.{name}.{key}", f"{prof[key]!r:.60} must be a string")


def check_arm(path: Path, name: str, body: Any) -> None:
    if not name.strip() or name != name.strip():
        raise key_error(
            path, f"arms.{name!r}", "an arm name may not be empty or start/end with spaces"
        )
    if name.startswith(FORMULA_START) or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise key_error(
            path,
            f"arms.{name!r}",
            "an arm name may not start with = + - @ (a spreadsheet would run it as a formula in "
            "the CSV table) or hold control characters",
        )
    if len(name) > 100:
        raise key_error(path, f"arms.{name[:20]}...", "an arm name is at most 100 characters")
    if isinstance(body, dict):
        overrides = {
            k: v for k, v in body.items() if k not in ("recipe", "match_baseline", "label")
        }
        _scalar_overrides(path, f"arms.{name}", overrides)
        if "label" in body and not isinstance(body["label"], str):
            raise key_error(path, f"arms.{name}.label", f"{body['label']!r:.60} must be a string")


def check_limits(cfg: RunConfig, where: str) -> None:
    for key, top in LIMITS.items():
        value = getattr(cfg, key)
        if value is not None and value > top:
            raise ConfigError(f"{where}: {key}={value!r} is beyond the supported maximum {top:g}")


def identity_fields(cfg: RunConfig) -> tuple:
    return tuple(sorted((k, v) for k, v in cfg.to_dict().items() if k not in NOT_IDENTITY))


def duplicate_arms(configs: dict[str, RunConfig], baseline: str) -> list[tuple[str, str]]:
    """(arm, the earlier arm it equals) for arms that plan the same run (seed aside)."""
    seen: dict[tuple, str] = {}
    out = []
    for arm in [baseline] + [a for a in configs if a != baseline]:
        key = identity_fields(configs[arm])
        if key in seen:
            out.append((arm, seen[key]))
        else:
            seen[key] = arm
    return out


def arm_configs(spec, profile: str, data: str | None = None) -> dict[str, RunConfig]:
    """Every arm's config under a profile, on the profile's first seed."""
    prof = spec.profile(profile)
    seed = prof.seeds[0]
    baseline = spec._config(spec.arms[spec.baseline], prof, seed, data, None)
    configs = {spec.baseline: baseline}
    for name, arm in spec.arms.items():
        if name != spec.baseline:
            configs[name] = spec._config(arm, prof, seed, data, baseline)
    return configs


def check_spec(spec) -> None:
    """Sizes within LIMITS under every profile, and no arm that equals another under EVERY
    profile (a profile may collapse arms on purpose, e.g. `smoke` sets one batch size for all:
    `ablate` says so; an arm identical everywhere measures nothing and is refused)."""
    everywhere: set[tuple[str, str]] | None = None
    for profile in spec.profiles:
        configs = arm_configs(spec, profile)
        for name, cfg in configs.items():
            check_limits(cfg, f"{spec.path} [arms.{name}] with profile {profile!r}")
        pairs = set(duplicate_arms(configs, spec.baseline))
        everywhere = pairs if everywhere is None else everywhere & pairs
    for arm, other in sorted(everywhere or ()):
        what = f"the baseline {other!r}" if other == spec.baseline else f"arm {other!r}"
        raise key_error(
            spec.path,
            f"arms.{arm}",
            f"plans exactly the same runs as {what} under every profile; "
            "change an override or remove the arm",
        )


def csv_safe(frame):
    """A copy of a DataFrame whose text cells cannot run as spreadsheet formulas: a cell that
    starts with = + - @ (or a tab / carriage return) gets a leading apostrophe (OWASP's CSV
    injection advice). Numbers are left as they are. For collect.export_table; arm names are
    already refused at spec load if they start like a formula."""
    from pandas.api.types import is_numeric_dtype

    out = frame.copy()
    for col in out.columns:
        if not is_numeric_dtype(out[col]):
            out[col] = out[col].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v
            )
    return out
