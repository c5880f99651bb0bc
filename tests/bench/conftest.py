"""Benchmarks: the fast path against the canonical loop, both timed in this process.

The CPU may be shared with other work, so absolute times are noise; what this suite
reports is ratios against a baseline measured in the same run (per-round minima: the
least-disturbed round of each), and the fast path's conv-FLOP rate as a fraction of this
machine's own large-conv throughput, measured at the start of the same run.

Skipped unless benchmarks are enabled (`nox -s bench`, or `--benchmark-enable`): timing
them once inside the ordinary test run would cost minutes and measure nothing.
`DCGAN_BENCH_THREADS` sets torch's threads, default 1: on a 2-core machine shared with
other work, 2 OpenMP threads stall at every op's barrier whenever one core is taken
(measured: a cpu_default step 10-20x slower, and ratios that are noise). Set it to the core
count on an idle machine, with OMP_WAIT_POLICY=ACTIVE (tests/conftest.py defaults it to
PASSIVE, which costs ~1.4x at 2 threads when nothing else runs). `DCGAN_BENCH_DEVICE` picks the device (default auto).

`DCGAN_BENCH_QUICK=1` shrinks the benches that train a whole `cpu` run (ablation-level
efficiency, time-to-quality) to QUICK_STEPS steps and QUICK_SNAPSHOTS snapshots: a check
that they work, on a busy machine; their figures mean something only at full size.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dcgan.data import ImageSet, load_images
from dcgan.perf.canonical import write_png_folder
from dcgan.recipes import build_config

torch.set_num_threads(int(os.environ.get("DCGAN_BENCH_THREADS", "1")))
DEVICE = os.environ.get("DCGAN_BENCH_DEVICE", "auto")
HERE = Path(__file__).parent

# Filled by the benchmarks, printed by pytest_terminal_summary.
THROUGHPUT: dict[str, dict[str, float]] = {}  # config -> {"baseline"|"fast": images/s}
STEP_FLOPS: dict[str, float] = {}  # config -> FLOPs of one fast-path step
PIECES: dict[str, float] = {}  # variant -> its time / the whole fast path's time
CEILING: dict[str, float] = {}  # "flops_per_s", "gflop", "shape"
EFFICIENCY: dict[str, dict] = {}  # "phases": {phase: s}, "notes": {...} (test_bench_efficiency)
TIME_TO_QUALITY: dict[str, list] = {}  # "lines": the summary lines (test_bench_time_to_quality)
QUICK = os.environ.get("DCGAN_BENCH_QUICK", "") not in ("", "0")
QUICK_STEPS, QUICK_SNAPSHOTS = 150, 4
_START = time.perf_counter()


def _enabled(config: pytest.Config) -> bool:
    return not config.getoption("benchmark_disable") or config.getoption("benchmark_enable")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _enabled(config):
        return
    skip = pytest.mark.skip(reason="benchmarks: run `nox -s bench` (or pass --benchmark-enable)")
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(skip)


def config_for(recipe: str, **overrides):
    return build_config(recipe, {"device": DEVICE, **overrides}, where="bench")


@pytest.fixture(scope="session")
def datasets() -> dict[tuple[int, int], ImageSet]:
    return {}


@pytest.fixture(scope="session")
def image_set(datasets):
    """The embedded MNIST at a config's size and channels (RGB at 64 for `tutorial`)."""

    def get(cfg) -> ImageSet:
        key = (cfg.image_size, cfg.channels)
        if key not in datasets:
            datasets[key] = load_images(cfg.data, cfg.image_size, cfg.channels)
        return datasets[key]

    return get


@pytest.fixture(scope="session")
def png_root(image_set, tmp_path_factory):
    """The same images as PNG files, written once: what the canonical loop decodes."""
    roots: dict[tuple[int, int], Path] = {}

    def get(cfg) -> Path:
        key = (cfg.image_size, cfg.channels)
        if key not in roots:
            folder = tmp_path_factory.mktemp(f"png{cfg.image_size}x{cfg.channels}")
            roots[key] = write_png_folder(image_set(cfg).images, folder)
        return roots[key]

    return get


def cpu_baseline(spec_name: str = "activation"):
    """(spec, profile, planned run): the `cpu` profile's baseline arm, seed 0, as an ablation
    plans it; under DCGAN_BENCH_QUICK its budget is QUICK_STEPS steps with QUICK_SNAPSHOTS
    snapshots (snapshot_every rounded up). The device follows DCGAN_BENCH_DEVICE (default
    auto, the spec's own; the device is not part of a run's identity)."""
    from dcgan.specs import load_spec

    spec = load_spec(spec_name)
    run = spec.plan("cpu", [0])[0]
    assert (run.arm, run.seed, run.execution) == (spec.baseline, 0, 0), run
    cfg = run.config.replace("bench", device=DEVICE)
    if QUICK:
        cfg = cfg.replace(
            "bench (DCGAN_BENCH_QUICK)",
            kimg=QUICK_STEPS * cfg.batch_size / 1000,
            snapshot_every=-(-QUICK_STEPS // QUICK_SNAPSHOTS),
        )
        assert cfg.total_steps == QUICK_STEPS, cfg.total_steps
    return spec, spec.profile("cpu"), dataclasses.replace(run, config=cfg)


def best_round_s(benchmark) -> float:
    return benchmark.stats.stats.min


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _efficiency_summary(terminalreporter) -> None:
    write = terminalreporter.write_line
    scale = "DCGAN_BENCH_QUICK: reduced size, figures not representative" if QUICK else "full size"
    if EFFICIENCY:
        notes = EFFICIENCY["notes"]
        terminalreporter.section(f"one cpu-profile run, phase by phase ({scale})")
        write(f"{notes['what']}; {torch.get_num_threads()} torch thread(s); share = of the total")
        phases = EFFICIENCY["phases"]
        total = sum(phases.values())
        for phase, seconds in phases.items():
            write(f"  {phase:<58}{seconds:>9.2f} s{seconds / total:>7.1%}")
        write(f"  {'total':<58}{total:>9.2f} s")
        write(f"scoring share of a run: {notes['scoring_share_of_run']:.1%} (goal < 10%): "
              f"{notes['scoring_share_rule']}")  # fmt: skip
        for line in notes.get("lines", []):
            write(line)
    if TIME_TO_QUALITY:
        terminalreporter.section(f"time to quality: cpu baseline until the gate passes ({scale})")
        for line in TIME_TO_QUALITY.get("lines", []):
            write(line)


def pytest_terminal_summary(terminalreporter) -> None:
    _efficiency_summary(terminalreporter)
    if not (THROUGHPUT or PIECES or CEILING):
        return
    write = terminalreporter.write_line
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    terminalreporter.section("fast path vs canonical (ratios: same process, best rounds)")
    write(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load}")
    ceiling = CEILING.get("flops_per_s")
    if ceiling:
        write(
            f"conv-FLOP limit: {ceiling / 1e9:.1f} GFLOP/s (conv2d {CEILING['shape']}, best round)"
        )
    write(f"{'config':<16}{'baseline img/s':>16}{'fast img/s':>12}{'speed-up':>10}"
          f"{'fast GFLOP/s':>14}{'of limit':>10}")  # fmt: skip
    for name, row in THROUGHPUT.items():
        base, fast = row.get("baseline"), row.get("fast")
        cells = [_num(base, ".1f"), _num(fast, ".1f"), "-", "-", "-"]
        if base and fast:
            cells[2] = f"{fast / base:.2f}x"
        if fast and name in STEP_FLOPS:
            rate = fast / row["batch"] * STEP_FLOPS[name]
            cells[3] = f"{rate / 1e9:.1f}"
            cells[4] = f"{rate / ceiling:.0%}" if ceiling else "-"
        widths = (16, 12, 10, 14, 10)
        write(f"{name:<16}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))
    if "4 seeds packed" in THROUGHPUT:
        write("(4 seeds packed: baseline = the same 4 seeds as 4 fast-path runs in sequence)")
    if PIECES:
        write("pieces at cpu_default (interleaved rounds): variant time / fast path time")
        for variant, ratio in PIECES.items():
            write(f"  {variant:<44}{ratio:>6.2f}x")
    write(f"bench wall time: {time.perf_counter() - _START:.0f} s")
