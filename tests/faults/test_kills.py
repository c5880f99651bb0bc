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


def _training_now(work: Path):
    """The run being trained right now, if any: a RUNNING trial whose run folder has a step log
    and no result yet (read from the store and the folder: no guessing with sleeps)."""
    try:
        storage = store.open_storage(Paths(work / "results").default_storage, must_exist=True)
        study = optuna.load_study(study_name="ablate/loss/smoke", storage=storage)
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    except Exception:  # the store or the study is not there yet
        return None
    for t in running:
        run_dir = work / "results" / "runs" / t.user_attrs.get("config_hash", "-")
        log = run_dir / "metrics.jsonl"
        if log.exists() and log.stat().st_size > 0 and not (run_dir / "result.json").exists():
            return t
    return None


def _final_rerun_matches(work: Path, expected: dict) -> None:
    final = subprocess.run(CMD, cwd=work, env=_env(), capture_output=True, text=True, timeout=900)
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
    assert _end_state(work) == expected
    _no_partial_files_in_use(work)
    assert (work / "reports" / "loss-smoke.html").exists()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The smoke ablation run once, uninterrupted: the end state every killed one must reach."""
    work = tmp_path_factory.mktemp("reference")
    subprocess.run(CMD, cwd=work, env=_env(), check=True, capture_output=True, timeout=900)
    expected = _end_state(work)
    assert len(expected) == 4
    return expected


@pytest.mark.slow
def test_kills_at_named_crash_points_then_same_end_state(tmp_path, reference, case):
    """12 runs armed with a named crash point (training steps, atomic writes, scoring, the
    store's tell, report rendering), one after another on the same folders, then a re-run:
    same runs, same numbers, none twice, no truncated file in use. A point the remaining work
    never reaches (e.g. train_step:70 once most steps are checkpointed) does not fire; the table
    counts the kills that did."""
    kills = 0
    for point, count in CRASH_POINTS:
        proc = subprocess.run(
            CMD, cwd=tmp_path, env=_env(DCGAN_CRASH_AT=f"{point}:{count}"), capture_output=True,
            timeout=900,
        )  # fmt: skip
        kills += proc.returncode == -signal.SIGKILL
    case("kill/resume/concurrency", kills)
    assert kills >= 6, f"only {kills} crash points fired"
    _final_rerun_matches(tmp_path, reference)


@pytest.mark.slow
@pytest.mark.fault("kill/resume/concurrency", n=10)
def test_ten_random_kills_during_training_then_same_end_state(tmp_path, reference):
    """10 SIGKILLs at random moments INSIDE training: each waits until the store and the run
    folder show a run being trained (RUNNING, a step log, no result), then a random 0-1.5 s
    more; a kill counts only if the run still had no result when it landed. Then a re-run:
    same runs, same numbers."""
    rng = random.Random(0)
    in_training = 0
    for _ in range(40):  # bounded: at most 40 attempts to land 10 kills in training
        if in_training == 10:
            break
        proc = subprocess.Popen(
            CMD, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 180
        victim = None
        while victim is None and proc.poll() is None and time.monotonic() < deadline:
            victim = _training_now(tmp_path)
            time.sleep(0.05)
        if victim is not None:
            time.sleep(rng.uniform(0.0, 1.5))  # a random moment inside the run's training
            if proc.poll() is None:
                run_dir = tmp_path / "results" / "runs" / victim.user_attrs["config_hash"]
                had_result = (run_dir / "result.json").exists()
                proc.send_signal(signal.SIGKILL)
                in_training += not had_result
        proc.wait(timeout=900)
        if victim is None:
            break  # nothing left to train: the ablation finished between kills
    assert in_training == 10, f"only {in_training} kills landed during training"
    _final_rerun_matches(tmp_path, reference)
