"""The training step (one D + one G update): canonical loop and fast path, side by side.

Both forms of a config are timed in the same rounds, alternating which goes first, so a
change of load from elsewhere during the benchmark hits both alike (timed as separate
tests, a drift of load between them once turned tutorial's 1.2x into 0.97x). The
benchmark's own time is the pair's round; each form's best round is in extra_info and in
the ratio table.
"""

from __future__ import annotations

import statistics
import time

import pytest

from .conftest import STEP_FLOPS, THROUGHPUT, config_for, count_flops
from .steppers import canonical_stepper, fast_run, fast_stepper

# (steps per round, rounds): tutorial is ~3-8 s a step on this 2-core CPU.
PLAN = {"cpu_default": (20, 5), "tutorial": (1, 3)}


@pytest.mark.parametrize("recipe", list(PLAN))
def test_train_step(benchmark, recipe, image_set, png_root, tmp_path):
    cfg = config_for(recipe)
    k, rounds = PLAN[recipe]
    run = fast_run(cfg, image_set(cfg), tmp_path)
    STEP_FLOPS[recipe] = count_flops(run.train_step)  # untimed
    forms = {"baseline": canonical_stepper(cfg, png_root(cfg), k), "fast": fast_stepper(run, k)}
    times: dict[str, list[float]] = {form: [] for form in forms}

    def one_round() -> None:
        order = list(forms) if len(times["fast"]) % 2 else list(forms)[::-1]
        for form in order:
            start = time.perf_counter()
            forms[form]()
            times[form].append(time.perf_counter() - start)

    benchmark.group = "train step: baseline + fast, one round each"
    benchmark.pedantic(one_round, rounds=rounds, warmup_rounds=1)
    timed = {form: ts[1:] for form, ts in times.items()}  # the first round was the warm-up
    images_per_s = {form: k * cfg.batch_size / min(ts) for form, ts in timed.items()}
    benchmark.extra_info.update(
        recipe=recipe,
        steps_per_round=k,
        batch=cfg.batch_size,
        images_per_s=images_per_s,
        median_s_per_step={form: statistics.median(ts) / k for form, ts in timed.items()},
        step_gflop=STEP_FLOPS[recipe] / 1e9,
    )
    THROUGHPUT[recipe] = {"batch": cfg.batch_size, **images_per_s}
