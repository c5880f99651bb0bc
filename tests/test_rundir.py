"""RunDir alone knows a run folder's layout: names, listings with their steps, atomic writes."""

from __future__ import annotations

import json
import threading
import time

import pytest
import torch

from dcgan import atomic, rundir
from dcgan.config import RunConfig
from dcgan.rundir import RunDir, grid_step, snapshot_step


def test_layout_names():
    run = RunDir("/x/run")
    assert run.config.name == "config.json" and run.result.name == "result.json"
    assert run.checkpoint.name == "checkpoint.pt" and run.metrics.name == "metrics.jsonl"
    assert run.scores.name == "scores.jsonl" and run.curves.name == "curves.json"
    assert run.lock_file.name == ".lock" and run.quarantine_dir.name == "quarantine"
    assert str(run.snapshot(250)).endswith("snapshots/G_step_0000250.pt")
    assert str(run.grid(250)).endswith("grids/step_0000250.png")
    assert RunDir.of(run) is run and RunDir(run) == run and str(run) == "/x/run"


def test_step_names_parse_back_and_nothing_else_does():
    assert snapshot_step("G_step_0000250.pt") == 250 and grid_step("step_0001000.png") == 1000
    for name in ("G_step_.pt", "G_step_12a.pt", ".G_step_0000250.pt.123.tmp", "step_1.png.tmp"):
        assert snapshot_step(name) is None and grid_step(name) is None
    assert grid_step("G_step_0000250.pt") is None and snapshot_step("step_0000250.png") is None
    assert grid_step(rundir.grid_name(12)) == 12 and snapshot_step(rundir.snapshot_name(12)) == 12


def test_listings_are_in_step_order_and_skip_strays(tmp_path):
    run = RunDir(tmp_path)
    assert run.snapshots() == {} and run.grids() == [] and run.latest_grid() is None
    for step in (20, 5, 100):
        run.write_snapshot(step, {"w": torch.zeros(1)})
        run.write_grid(step, b"png")
    (run.snapshots_dir / ".G_step_0000007.pt.1.tmp").write_bytes(b"half")  # a killed write
    (run.grids_dir / "notes.txt").write_text("x")
    assert list(run.snapshots()) == [5, 20, 100]
    assert [s for s, _ in run.grids()] == [5, 20, 100]
    assert run.latest_snapshot() == (100, run.snapshot(100))
    assert run.latest_grid() == (100, run.grid(100))


def test_every_write_is_atomic(tmp_path, monkeypatch):
    written = []
    real = atomic.atomic_write
    monkeypatch.setattr(atomic, "atomic_write", lambda p, w: written.append(p.name) or real(p, w))
    run = RunDir(tmp_path / "r")
    run.write_config(RunConfig(steps=1))
    run.write_result({"status": "completed"})
    run.write_checkpoint({"step": 1})
    run.write_snapshot(1, {"w": torch.zeros(1)})
    run.write_grid(1, b"png")
    run.write_scores([{"b": 1, "a": 2}])
    run.write_curves({"step": [1], "d_loss": [0.5]})
    run.truncate_metrics(0)
    run.rewrite_metric_lines(['{"step": 0}'])
    assert written == [
        "config.json", "result.json", "checkpoint.pt", "G_step_0000001.pt", "step_0000001.png",
        "scores.jsonl", "curves.json", "metrics.jsonl", "metrics.jsonl",
    ]  # fmt: skip
    assert run.read_curves() == {"step": [1], "d_loss": [0.5]}
    assert run.scores.read_text() == '{"a": 2, "b": 1}\n'
    assert run.read_config() == RunConfig(steps=1)
    assert run.read_result() == {"status": "completed"}


def test_metrics_append_truncate_and_a_cut_last_line(tmp_path):
    run = RunDir(tmp_path)
    run.append_metrics([{"step": i} for i in range(4)])
    with open(run.metrics, "a") as fh:
        fh.write('{"step": 4, "d_lo')  # a kill mid-line
    assert [r["step"] for r in run.read_metrics()] == [0, 1, 2, 3]
    run.truncate_metrics(2)
    assert run.metrics.read_text() == '{"step": 0}\n{"step": 1}\n'


def test_where_a_run_stands(tmp_path):
    run = RunDir(tmp_path)
    assert run.resume_step() == 0 and run.last_logged_step() == 0
    run.append_metrics([{"step": i} for i in range(7)])
    with open(run.metrics, "a") as fh:
        fh.write('{"step": 7, "d_lo')
    assert run.last_logged_step() == 7
    run.write_checkpoint({"step": 6})
    assert run.resume_step() == 6
    run.write_result({"steps_done": 12})
    assert run.resume_step() == 12
    run.result.write_text("garbage")
    assert run.resume_step() == 0


def test_result_and_provenance_reads(tmp_path):
    run = RunDir(tmp_path)
    assert run.read_result() is None and run.provenance() is None
    run.result.write_text("not json")
    assert run.read_result() is None
    run.write_result({"status": "completed"})  # a run from before provenance was recorded
    assert run.provenance() is None
    run.write_result({"status": "completed", "provenance": {"environments": [{"cpu": "x"}]}})
    assert run.provenance() == {"environments": [{"cpu": "x"}]}


def test_quarantine_goes_into_the_runs_own_folder(tmp_path):
    run = RunDir(tmp_path)
    run.write_result({"x": 1})
    moved = run.quarantine(run.result, "bad")
    assert moved.parent == run.quarantine_dir and not run.result.exists()
    assert json.loads(moved.read_text()) == {"x": 1}


def test_lock_is_exclusive(tmp_path):
    run = RunDir(tmp_path / "r")
    order = []

    def other():
        with RunDir(tmp_path / "r").lock():
            order.append("other")

    with run.lock():
        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(0.2)
        order.append("first")
    thread.join(5)
    assert order == ["first", "other"]


@pytest.mark.parametrize("module", ["train", "integrity", "collect", "metrics/fidelity"])
def test_no_other_module_spells_the_layout(module):
    """The file names live in dcgan/rundir.py; these modules go through RunDir."""
    from pathlib import Path

    import dcgan

    text = (Path(dcgan.__file__).parent / f"{module}.py").read_text()
    code = "\n".join(line.split("#")[0] for line in text.split('"""')[::2])  # no docstrings
    for name in ('"result.json"', '"checkpoint.pt"', '"config.json"', '"scores.jsonl"',
                 '"metrics.jsonl"', '"curves.json"', '"snapshots"', '"grids"', "G_step_",
                 '"quarantine"'):  # fmt: skip
        assert name not in code, (module, name)
