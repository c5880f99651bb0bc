"""`nox -s gpu-check`: refuses at once without CUDA; on CPU in quick mode, every check runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dcgan.perf import gpu_check

ROOT = Path(__file__).resolve().parent.parent


def test_without_cuda_it_exits_at_once_with_a_clear_message(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "dcgan", "gpu-check", "--results", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == gpu_check.NO_CUDA_EXIT == 3
    assert "needs CUDA" in done.stderr and "nox -s bench" in done.stderr
    assert time.perf_counter() - started < 20  # decided without importing torch
    assert not list(tmp_path.iterdir())  # nothing written, nothing trained


def test_table_lists_every_row_with_its_verdict():
    rows = [
        gpu_check.Row("fast path vs canonical", "900 img/s", "3,000 img/s", 3.33, ">= 3x", True),
        gpu_check.Row("CUDA graphs", result="not implemented", kind="info", note="not yet"),
        gpu_check.Row("Inception", "", "rel. diff 2.0e-05", None, "<= 0.001", False, "correctness"),
    ]
    table = gpu_check.format_table(rows).splitlines()
    assert table[0].split() == ["check", "baseline", "result", "ratio", "goal", "ok", "s"]
    assert "3.33x" in table[2] and table[2].rstrip().endswith("0") and " yes " in table[2]
    assert " - " in table[3] and " NO " in table[4]
    assert table[-1] == "  CUDA graphs: not yet"


@pytest.mark.slow
def test_quick_mode_runs_every_check_on_cpu(tmp_path):
    """The same code as on a GPU, at tiny sizes: what can be checked without one (minutes)."""
    results = tmp_path / "results"
    code = gpu_check.main(results, quick=True, device="cpu", budget_s=3600)
    report = json.loads((results / "gpu-check.json").read_text())
    checks = {c["check"]: c for c in report["checks"]}
    crashed = [c for c in report["checks"] if c["result"].startswith("crashed")]
    assert not crashed, crashed[0]["data"].get("traceback")
    assert code == 0 and report["passed"]
    assert len(checks) == 7 and checks["CUDA graphs"]["result"] == "not implemented"
    assert checks["bf16 with bce (Sigmoid + BCELoss)"]["ok"] is True
    (ablation,) = [c for c in report["checks"] if c["check"].startswith("gpu-profile smoke")]
    assert ablation["ok"] and Path(ablation["data"]["report"]).exists()
