"""K=4 seeds of cpu_default: one packed network (dcgan.perf.packed) against 4 runs in sequence.

Interleaved rounds, as in test_bench_pieces: both sides train 4 models for k steps each.
"""

from __future__ import annotations

import time

from dcgan.perf.packed import PackedRun
from dcgan.train import Run

from .conftest import THROUGHPUT, config_for
from .steppers import sync

K_MODELS = 4
STEPS = 5
ROUNDS = 5


def test_packed_vs_sequential(benchmark, image_set, tmp_path):
    cfgs = [config_for("cpu_default", seed=seed) for seed in range(K_MODELS)]
    images = image_set(cfgs[0])
    runs = [Run(cfg, tmp_path / str(i), images) for i, cfg in enumerate(cfgs)]
    pack = PackedRun(cfgs, images)

    def advance(run) -> None:
        for _ in range(STEPS):
            run.train_step()
            run.step += 1
        sync(run.device)

    sides = {"sequential": lambda: [advance(run) for run in runs], "packed": lambda: advance(pack)}
    times: dict[str, list[float]] = {name: [] for name in sides}

    def one_round() -> None:
        order = list(sides) if len(times["packed"]) % 2 else list(sides)[::-1]
        for name in order:
            start = time.perf_counter()
            sides[name]()
            times[name].append(time.perf_counter() - start)

    benchmark.group = "packed: 4 seeds of cpu_default"
    benchmark.pedantic(one_round, rounds=ROUNDS, warmup_rounds=1)
    images_per_s = {
        name: K_MODELS * STEPS * cfgs[0].batch_size / min(ts[1:]) for name, ts in times.items()
    }
    benchmark.extra_info.update(images_per_s=images_per_s)
    THROUGHPUT["4 seeds packed"] = {
        "batch": cfgs[0].batch_size,
        "baseline": images_per_s["sequential"],
        "fast": images_per_s["packed"],
    }
