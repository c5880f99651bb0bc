"""The training step (one D + one G update): canonical loop and fast path, side by side."""

from __future__ import annotations

import pytest

from .conftest import STEP_FLOPS, THROUGHPUT, best_round_s, config_for, count_flops
from .steppers import canonical_stepper, fast_run, fast_stepper

# (steps per round, rounds): tutorial is ~3-8 s a step on 2 CPU cores.
PLAN = {"cpu_default": (20, 5), "tutorial": (1, 3)}


@pytest.mark.parametrize(
    "recipe, form",
    [
        ("cpu_default", "baseline"),
        ("cpu_default", "fast"),
        ("tutorial", "baseline"),
        ("tutorial", "fast"),
    ],
)
def test_train_step(benchmark, recipe, form, image_set, png_root, tmp_path):
    cfg = config_for(recipe)
    k, rounds = PLAN[recipe]
    if form == "baseline":
        step = canonical_stepper(cfg, png_root(cfg), k)
    else:
        run = fast_run(cfg, image_set(cfg), tmp_path)
        STEP_FLOPS[recipe] = count_flops(run.train_step)  # untimed; doubles as warm-up
        step = fast_stepper(run, k)
    benchmark.group = f"train step: {recipe}"
    benchmark.extra_info.update(recipe=recipe, form=form, steps_per_round=k, batch=cfg.batch_size)
    benchmark.pedantic(step, rounds=rounds, warmup_rounds=1)
    images_per_s = k * cfg.batch_size / best_round_s(benchmark)
    benchmark.extra_info["images_per_s"] = images_per_s
    THROUGHPUT.setdefault(recipe, {"batch": cfg.batch_size})[form] = images_per_s
