"""The adversarial suite's table: every case is counted as TRIED when it runs and as HANDLED
only if its test passes, so a failing case shows as tried-but-not-handled.

A test declares its class with `@pytest.mark.fault("class")` (one case) or
`@pytest.mark.fault("class", n=K)` (K cases checked together), or calls the `case` fixture
(`case("class")`) when the count is known only at run time. Skipped tests count as neither.
The table is printed at the end of the session and, when DCGAN_FAULT_TABLE names a file,
written there as Markdown (the README's Reliability section is that file).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLASSES = (
    "data: bad image folders and files",
    "specs: malformed specs and values",
    "cli: commands, flags and exit codes",
    "store: storage URLs, servers and claims",
    "kill/resume/concurrency",
    "disk/corruption: caches and run files",
    "security: secrets, paths, pickles, formulas",
    "resources: workers, threads, sizes",
)
TABLE: dict[str, dict[str, int]] = defaultdict(lambda: {"tried": 0, "handled": 0})
_PENDING: dict[str, list[tuple[str, int]]] = defaultdict(list)
_STARTED = time.time()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "fault(kind, n=1): a case of the adversarial fault suite, counted in its table"
    )


def _kind(kind: str) -> str:
    matches = [c for c in CLASSES if c.startswith(kind)]
    return matches[0] if len(matches) == 1 else kind


def pytest_runtest_setup(item):
    for mark in item.iter_markers("fault"):
        _PENDING[item.nodeid].append((_kind(mark.args[0]), int(mark.kwargs.get("n", 1))))


@pytest.fixture
def case(request):
    """case(kind, n=1): count n more cases of `kind` for this test (handled if it passes)."""

    def record(kind: str, n: int = 1) -> None:
        _PENDING[request.node.nodeid].append((_kind(kind), n))

    return record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    final = report.when == "call" or (report.when == "setup" and not report.passed)
    if not final:
        return
    for kind, n in _PENDING.pop(item.nodeid, []):
        if report.skipped:
            continue
        TABLE[kind]["tried"] += n
        if report.passed:
            TABLE[kind]["handled"] += n


def table_markdown() -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    tried = sum(c["tried"] for c in TABLE.values())
    handled = sum(c["handled"] for c in TABLE.values())
    lines = [
        f"Fault suite, {time.strftime('%Y-%m-%d')}, commit {commit or '?'}, "
        f"{time.time() - _STARTED:.0f} s:",
        "",
        "| class | tried | handled |",
        "|---|---|---|",
    ]
    order = [c for c in CLASSES if c in TABLE] + sorted(k for k in TABLE if k not in CLASSES)
    lines += [f"| {k} | {TABLE[k]['tried']} | {TABLE[k]['handled']} |" for k in order]
    lines.append(f"| **all** | **{tried}** | **{handled}** |")
    return "\n".join(lines) + "\n"


def pytest_terminal_summary(terminalreporter):
    if not TABLE:
        return
    tr = terminalreporter
    tr.section("adversarial fault suite: tried / handled")
    tr.write_line(f"{'class':44s} {'tried':>7s} {'handled':>8s}")
    order = [c for c in CLASSES if c in TABLE] + sorted(k for k in TABLE if k not in CLASSES)
    for kind in order:
        counts = TABLE[kind]
        tr.write_line(f"{kind:44s} {counts['tried']:7d} {counts['handled']:8d}")
    tried = sum(c["tried"] for c in TABLE.values())
    handled = sum(c["handled"] for c in TABLE.values())
    tr.write_line(f"{'all':44s} {tried:7d} {handled:8d}   ({time.time() - _STARTED:.0f} s)")
    out = os.environ.get("DCGAN_FAULT_TABLE")
    if out:
        Path(out).write_text(table_markdown())


# ---- shared helpers -------------------------------------------------------------------------
def run_python(code: str, *, timeout: float, env: dict | None = None, cwd=None, memory_gb=4):
    """Run `code` in a fresh interpreter with a wall-clock deadline and a memory cap,
    so a case that would hang or eat memory on broken code fails instead of taking the machine
    (RLIMIT_DATA: torch reserves far more address space than it uses, so RLIMIT_AS cannot).
    Returns (returncode or None on timeout, stdout+stderr)."""

    def limits():
        import resource

        cap = memory_gb << 30
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))  # heap + private mappings
        os.setsid()  # its own process group: killed as a whole on timeout

    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=full_env, cwd=cwd, preexec_fn=limits,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        return None, out


def wait_for(predicate, *, timeout: float, every: float = 0.05, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
