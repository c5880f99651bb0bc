"""The ablation runner end to end on the smoke profile, against a throwaway store."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from dcgan import runner, store, worker
from dcgan.runner import Paths, run_ablation

ROOT = Path(__file__).resolve().parent.parent


def _trials(paths: Paths, name="ablate/loss/smoke"):
    study = optuna.load_study(study_name=name, storage=store.open_storage(paths.default_storage))
    return study.get_trials(deepcopy=False)


def _final_fids(paths: Paths) -> dict:
    done = [t for t in _trials(paths) if t.state == TrialState.COMPLETE]
    return {
        (t.user_attrs["arm"], t.user_attrs["seed"]): t.user_attrs["scores"]["fid"] for t in done
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One uninterrupted smoke run of the `loss` ablation (2 arms x 2 seeds)."""
    paths = Paths(tmp_path_factory.mktemp("results"), tmp_path_factory.mktemp("reports"))
    lines = []
    page = run_ablation("loss", "smoke", paths=paths, log=lines.append)
    return paths, page, lines


def test_ablation_trains_scores_stores_and_reports(finished):
    paths, page, lines = finished
    assert page == paths.reports / "loss-smoke.html" and page.exists()
    assert (paths.reports / "index.html").exists()
    done = [t for t in _trials(paths) if t.state == TrialState.COMPLETE]
    assert sorted((t.user_attrs["arm"], t.user_attrs["seed"]) for t in done) == [
        ("bce", 0),
        ("bce", 1),
        ("bce_logits", 0),
        ("bce_logits", 1),
    ]
    for t in done:
        assert t.user_attrs["status"] in ("completed", "diverged")
        assert t.user_attrs["scores"]["fid_metric"].startswith("fid_mnist")
        assert len(t.user_attrs["fid_curve"]) >= 2  # FID over training
        names = {
            m.filename
            for m in optuna.artifacts.get_all_artifact_meta(
                t, storage=store.open_storage(paths.default_storage)
            )
        }
        assert {"curves.json", "step_0000012.png", "step_0000024.png"} <= names
    with open(paths.tables / "loss-smoke.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and {r["arm"] for r in rows} == {"bce", "bce_logits"}


def test_rerunning_a_finished_ablation_trains_nothing(finished):
    paths, _, _ = finished
    before = {p: p.stat().st_mtime_ns for p in paths.runs.rglob("checkpoint.pt")}
    n_trials = len(_trials(paths))
    lines = []
    run_ablation("loss", "smoke", paths=paths, log=lines.append)
    assert any("0 newly queued" in line for line in lines)
    assert len(_trials(paths)) == n_trials
    assert {p: p.stat().st_mtime_ns for p in paths.runs.rglob("checkpoint.pt")} == before


def test_adding_seeds_trains_only_the_new_ones(finished):
    paths, _, _ = finished
    lines = []
    run_ablation("loss", "smoke", seeds=[0, 1, 2], paths=paths, log=lines.append, report=False)
    assert any("2 newly queued" in line for line in lines)
    trained = [line for line in lines if line.startswith("[w0]")]
    assert len(trained) == 2 and all("seed 2" in line for line in trained)


def test_two_workers_split_the_runs_without_duplicates(tmp_path, capfd):
    """Which worker takes which run is up to timing; that no run is taken twice is not (the
    claim itself is raced directly in tests/test_store.py)."""
    paths = Paths(tmp_path / "results", tmp_path / "reports")
    lines = []
    run_ablation(
        "loss", "smoke", seeds=[0, 1, 2], workers=2, paths=paths, report=False, log=lines.append
    )
    trials = _trials(paths)
    keys = [(t.user_attrs["arm"], t.user_attrs["seed"]) for t in trials]
    assert len(keys) == 6 and len(set(keys)) == 6
    assert all(t.state == TrialState.COMPLETE for t in trials)
    captured = capfd.readouterr()  # spawned workers print to the file descriptors
    out = "\n".join(lines) + captured.out + captured.err
    assert out.count("completed") == 6
    assert not [w for w in ("died", "FAILED", "given up", "Traceback") if w in out]


def test_killed_ablation_resumes_to_the_same_numbers(finished, tmp_path):
    """SIGKILL the whole ablation at a moment during training, re-run: same end state."""
    reference, _, _ = finished
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "dcgan",
        *"ablate loss --profile smoke --no-report --workers 1".split(),
    ]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    # wait until the first run has a checkpoint, then kill mid-ablation
    deadline = time.time() + 120
    while time.time() < deadline and not list(
        (tmp_path / "results" / "runs").glob("*/checkpoint.pt")
    ):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    paths = Paths(tmp_path / "results", tmp_path / "reports")
    assert len(_final_fids(paths)) < 4, "the kill landed before the ablation finished"
    subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=600)
    fids = _final_fids(paths)
    assert fids == {k: v for k, v in _final_fids(reference).items() if k[1] in (0, 1)}
    keys = [
        (t.user_attrs["arm"], t.user_attrs["seed"])
        for t in _trials(paths)
        if t.state == TrialState.COMPLETE
    ]
    assert len(keys) == len(set(keys)) == 4


GB = 1 << 30


@pytest.mark.parametrize(
    ("cores", "cuda", "queued", "data_gb", "expected"),
    [
        (2, False, 18, 0, 2),
        (64, False, 18, 0, 8),  # capped
        (16, False, 3, 0, 3),  # no more workers than runs
        (2, False, 0, 0, 1),
        (16, True, 18, 0, 1),  # one per GPU
        (16, False, 18, 3, 4),  # 16 GB free / (3 GB of data + 1 GB each)
        (16, False, 18, 40, 1),  # data larger than memory: still one
    ],
)
def test_default_workers_per_core_memory_and_gpu(
    monkeypatch, cores, cuda, queued, data_gb, expected
):
    monkeypatch.setattr(worker.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(runner.torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(worker, "available_memory", lambda: 16 * GB)
    assert worker.default_workers(queued, data_gb * GB) == expected


def test_a_wider_run_waits_until_nothing_else_runs_on_this_host(tmp_path):
    """An execution replicate (2 threads) is left to the host's last worker: while another run
    of this host is RUNNING a 1-thread worker takes the 1-thread runs and passes over it; a
    run held by another host does not hold it back; once nothing runs here, it is taken."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    storage = store.open_storage(url)
    study = optuna.create_study(study_name="wide", storage=storage)
    for seed, threads in ((0, 0), (1, 2), (2, 0)):
        config = {"threads": threads}
        study.enqueue_trial({}, user_attrs={"arm": "a", "seed": seed, "config": config})
    may_take = runner.alone_if_wider(study, threads=1)
    held = store.claim_next(study, storage)  # seed 0, held by this host
    assert held.user_attrs["seed"] == 0
    taken = store.claim_next(study, storage, may_take)
    assert taken.user_attrs["seed"] == 2  # the replicate (seed 1) was passed over
    assert store.claim_next(study, storage, may_take) is None  # only the replicate is left
    for trial in (held, taken):
        storage.set_trial_user_attr(trial._trial_id, "owner", {"host": "elsewhere", "pid": 1})
    assert store.claim_next(study, storage, may_take).user_attrs["seed"] == 1
