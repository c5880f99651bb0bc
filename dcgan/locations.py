"""Where things live: the specs, the results folder and the reports folder.

Light on purpose (standard library only): the command line's `--help` reads it.

- specs: `$DCGAN_ABLATIONS`, else `ablations/` of a source checkout, else the copy a wheel
  ships inside the package (`dcgan/ablations/`, see pyproject.toml).
- results (`store.db`, `runs/`, `tables/`, `artifacts/`, `cache/`): `--results`, else
  `$DCGAN_RESULTS`, else `results/` in the working directory.
- reports (HTML): `--reports`, else `$DCGAN_REPORTS`, else `reports/` in the working directory.
- store (Optuna storage URL): `--storage`, else `$DCGAN_STORAGE`, else `RESULTS/store.db`
  (`storage_url`: the one rule every command and the API use).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

ABLATIONS_ENV = "DCGAN_ABLATIONS"
RESULTS_ENV = "DCGAN_RESULTS"
REPORTS_ENV = "DCGAN_REPORTS"
STORAGE_ENV = "DCGAN_STORAGE"
PACKAGE = Path(__file__).resolve().parent
SOURCE_ABLATIONS = PACKAGE.parent / "ablations"  # a source checkout (or an editable install)
PACKAGED_ABLATIONS = PACKAGE / "ablations"  # what a wheel installs


def ablations_dir() -> Path:
    env = os.environ.get(ABLATIONS_ENV)
    if env:
        return Path(env)
    if (SOURCE_ABLATIONS / "_profiles.toml").exists():
        return SOURCE_ABLATIONS
    return PACKAGED_ABLATIONS


def missing_specs_hint(directory: Path) -> str:
    """What to say when no spec is found: where we looked and how to point elsewhere."""
    return (
        f"no ablation specs (*.toml) in {directory}: a source checkout keeps them in ablations/, "
        f"an installed wheel in dcgan/ablations/; set ${ABLATIONS_ENV} to a folder of specs"
    )


def results_dir(value: str | Path | None = None) -> Path:
    return Path(value or os.environ.get(RESULTS_ENV) or "results")


def reports_dir(value: str | Path | None = None) -> Path:
    return Path(value or os.environ.get(REPORTS_ENV) or "reports")


ABLATIONS_DIR = ablations_dir()  # as dcgan.specs sees it


@dataclass(frozen=True)
class Paths:
    results: Path = Path("results")
    reports: Path = Path("reports")

    @property
    def runs(self) -> Path:
        return self.results / "runs"

    @property
    def artifacts(self) -> Path:
        return self.results / "artifacts"

    @property
    def tables(self) -> Path:
        return self.results / "tables"

    @property
    def default_storage(self) -> str:
        return f"sqlite:///{self.results / 'store.db'}"


def storage_url(flag: str | None, paths: Paths) -> str:
    """The result store: --storage, else $DCGAN_STORAGE, else the SQLite file under results."""
    return flag or os.environ.get(STORAGE_ENV) or paths.default_storage


def spec_name(spec) -> str:
    """A built-in spec (ablations/NAME.toml) is NAME; a spec file anywhere else is NAME-<8 hex
    digits of its resolved path>, so `ablate elsewhere/loss.toml` never takes over the built-in
    `loss` study, report page or table."""
    path = Path(spec.path).resolve()
    if path.parent == Path(ABLATIONS_DIR).resolve():
        return path.stem
    return f"{path.stem}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def study_name(spec, profile: str, data: str | None) -> str:
    spec.name = spec_name(spec)  # the study, the report page and the table share one name
    return f"ablate/{spec.name}/{profile}" + (f"/{data}" if data else "")
