"""Where a number came from: hardware, package versions, the git commit and the thread count.

Two uses, kept apart:

- `provenance(device)`: what a run records about the machine that trained it (train writes it
  into the run's result.json; `dcgan.rundir.RunDir.provenance` reads it back). The report shows
  the set of these across runs and flags a mixture (`summarise`); a run that recorded none
  (trained before runs recorded it) is "not recorded", never filled in from another machine.
- `hardware`, `package_versions`, `git_commit`: the machine running the code now, which for a
  report is the machine that rendered it, and is labelled as such.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
from collections import Counter
from pathlib import Path

PACKAGES = (
    "torch",
    "torchvision",
    "torch-fidelity",
    "optuna",
    "numpy",
    "scipy",
    "pandas",
    "seaborn",
)
# What a run records: the packages its numbers depend on (training, sampling, scoring, the store)
RUN_PACKAGES = ("torch", "torchvision", "torch-fidelity", "optuna", "numpy")
PROVENANCE_VERSION = 1


def cpu_model() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def hardware() -> str:
    """The machine running this code now (a GPU if there is one, else the CPU)."""
    import torch

    gpu = gpu_name()
    if gpu is not None:
        return f"GPU {gpu}"
    return f"CPU {cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    return {"python": platform.python_version()} | {name: _version(name) for name in names}


def git_commit(repo: Path | None = None) -> str:
    repo = repo or Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.cache
def _static() -> dict:
    """What does not change while a process lives: read once (git runs a subprocess).

    The commit is the one checked out when this process first asked, i.e. close to the code it
    imported; '-dirty' says the working tree had uncommitted changes then."""
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu_name(),
        "packages": package_versions(RUN_PACKAGES),
        "git_commit": git_commit(),
    }


def provenance(device: str) -> dict:
    """The environment a run trains in, as recorded in its result.json."""
    import torch

    return {
        "version": PROVENANCE_VERSION,
        **_static(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
    }


# ---- across runs --------------------------------------------------------------------------
def describe(env: dict) -> str:
    """One line for a recorded environment, without its thread count (shown apart)."""
    device = str(env.get("device", ""))
    if device.startswith("cuda") and env.get("gpu"):
        where = f"GPU {env['gpu']}"
    else:
        cores = f", {env['cpu_count']} cores" if env.get("cpu_count") else ""
        where = f"CPU {env.get('cpu', 'unknown')}{cores}"
    packages = ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items())
    return f"{where}; {packages}; git {env.get('git_commit', 'unknown')}"


def run_environments(record: dict | None) -> list[dict]:
    """The environments one run's provenance record lists (empty: not recorded)."""
    if not isinstance(record, dict):
        return []
    return [e for e in record.get("environments", []) if isinstance(e, dict)]


def summarise(records: list[dict | None]) -> dict:
    """The set of environments across runs (one provenance record per run, None where the run
    recorded none): {'runs', 'environments': [{'description', 'runs'}], 'threads': {n: runs},
    'not_recorded', 'partly_recorded', 'mixed'}.

    'mixed' is True when the recorded runs come from more than one environment (a run resumed
    on another machine counts in each of its environments); thread counts are listed apart,
    since execution replicates differ in them on purpose."""
    by_description: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    not_recorded = partly = 0
    for record in records:
        envs = run_environments(record)
        if not envs:
            not_recorded += 1
            continue
        if not record.get("complete", True):
            partly += 1
        for description in dict.fromkeys(describe(e) for e in envs):
            by_description[description] += 1
        for n in dict.fromkeys(str(e.get("torch_threads", "?")) for e in envs):
            threads[n] += 1
    return {
        "runs": len(records),
        "environments": [
            {"description": d, "runs": n} for d, n in sorted(by_description.items(), key=_order)
        ],
        "threads": dict(sorted(threads.items(), key=_order)),
        "not_recorded": not_recorded,
        "partly_recorded": partly,
        "mixed": len(by_description) > 1,
    }


def _order(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]
