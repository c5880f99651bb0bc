"""SIGKILL the smoke ablation at many moments; the end state equals an uninterrupted run's."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from dcgan import store
from dcgan.runner import Paths

ROOT = Path(__file__).resolve().parents[2]
CMD = [sys.executable, "-m", "dcgan", "ablate", "loss", "--profile", "smoke", "--workers", "1"]
# (crash point, how many passes before the kill): each lands in a different phase
CRASH_POINTS = [
    ("train_step", 5), ("train_step", 30), ("train_step", 70),
    ("atomic_write", 1), ("atomic_write", 4), ("atomic_write", 9), ("atomic_write", 17),
    ("score", 1), ("score", 3), ("store_tell", 1), ("store_tell", 3), ("report", 1),
]  # fmt: skip


def _env(**extra):
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def _end_state(workdir: Path):
    storage = store.open_storage(Paths(workdir / "results").default_storage)
    trials = optuna.load_study(study_name="ablate/loss/smoke", storage=storage).get_trials(
        deepcopy=False
    )
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    keys = [(t.user_attrs["arm"], t.user_attrs["seed"]) for t in done]
    assert len(keys) == len(set(keys)), f"a run was recorded twice: {keys}"
    return {
        (t.user_attrs["arm"], t.user_attrs["seed"]): (
            t.user_attrs["scores"]["fid"],
            t.user_attrs["result"]["final_g_loss"],
        )
        for t in done
    }


def _no_partial_files_in_use(workdir: Path):
    for path in (workdir / "results").rglob("*"):
        if path.suffix in (".pt", ".json", ".png", ".html") and path.is_file():
            assert path.stat().st_size > 0, path


@pytest.mark.slow
def test_twenty_kills_then_same_end_state(tmp_path, tally):
    reference = tmp_path / "reference"
    reference.mkdir()
    subprocess.run(CMD, cwd=reference, env=_env(), check=True, capture_output=True, timeout=900)
    expected = _end_state(reference)
    assert len(expected) == 4

    work = tmp_path / "killed"
    work.mkdir()
    rng = random.Random(0)
    kills = 0
    for point, count in CRASH_POINTS:  # deterministic kills inside named phases
        proc = subprocess.run(
            CMD,
            cwd=work,
            env=_env(DCGAN_CRASH_AT=f"{point}:{count}"),
            capture_output=True,
            timeout=900,
        )
        kills += proc.returncode == -signal.SIGKILL
    while kills < 22:  # and kills at random wall-clock moments
        proc = subprocess.Popen(
            CMD, cwd=work, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(2.0, 12.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    final = subprocess.run(CMD, cwd=work, env=_env(), capture_output=True, text=True, timeout=900)
    assert final.returncode == 0, final.stdout[-2000:]
    assert _end_state(work) == expected
    _no_partial_files_in_use(work)
    assert (work / "reports" / "loss-smoke.html").exists()
    tally("SIGKILLs survived (smoke ablation)", kills, kills)
