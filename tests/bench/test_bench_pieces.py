"""Each fast-path piece at cpu_default, leave-one-out, in interleaved rounds.

Every variant runs the same k steps once per round, in a rotating order, so a burst of
load from elsewhere hits all of them alike. The figure per variant is its best round over
the whole fast path's best round: above 1 means the piece it undoes was a win.

Variants fed by a DataLoader go last in each round, then the round pauses: their worker
processes prefetch a few batches after a round ends, and that decoding must not land in
another variant's timing (it did, before this ordering). The prefetched batches make their
next round slightly cheaper, so the data piece's figure is, if anything, an underestimate.
"""

from __future__ import annotations

import statistics
import time

from .conftest import PIECES, config_for
from .steppers import canonical_stepper, fast_run, fast_stepper

K = 20
ROUNDS = 5
PREFETCH_PAUSE_S = 1.0
FAST = "fast path (all pieces)"
LOADER = "without resident uint8 data (PNG DataLoader)"
CANONICAL = "canonical loop (baseline)"


def test_fast_path_pieces(benchmark, image_set, png_root, tmp_path):
    cfg = config_for("cpu_default")
    images, root = image_set(cfg), png_root(cfg)

    def fast(name, run_cfg=cfg, **kwargs):
        sync_every_step = kwargs.pop("sync_every_step", False)
        run = fast_run(run_cfg, images, tmp_path / name, **kwargs)
        return fast_stepper(run, K, sync_every_step=sync_every_step)

    variants = {
        FAST: fast("all"),
        "without channels_last": fast("cl", cfg.replace(channels_last=False)),
        "without D-grad skip in the G step": fast("skip", skip_d_weight_grads=False),
        LOADER: fast("data", png_root=root),
        "without deferred reads (.item() every step)": fast("sync", sync_every_step=True),
        "with torch.compile": fast("compile", cfg.replace(compile=True)),
        CANONICAL: canonical_stepper(cfg, root, K),
    }
    warmup_s = {}
    for name, step in variants.items():  # untimed: workers start, compilation happens
        start = time.perf_counter()
        step()
        warmup_s[name] = time.perf_counter() - start
    times: dict[str, list[float]] = {name: [] for name in variants}
    loaders = [LOADER, CANONICAL]
    in_memory = [name for name in variants if name not in loaders]

    def one_round() -> None:
        shift = len(times[FAST])
        for names in (in_memory, loaders):
            for name in names[shift % len(names) :] + names[: shift % len(names)]:
                start = time.perf_counter()
                variants[name]()
                times[name].append(time.perf_counter() - start)
        time.sleep(PREFETCH_PAUSE_S)

    time.sleep(PREFETCH_PAUSE_S)

    benchmark.group = "fast-path pieces: cpu_default"
    benchmark.pedantic(one_round, rounds=ROUNDS)
    best_fast = min(times[FAST])
    for name, ts in times.items():
        PIECES[name] = min(ts) / best_fast
    benchmark.extra_info.update(
        steps_per_variant_round=K,
        time_over_fast_path=dict(PIECES),
        first_call_s=warmup_s,
        best_ms_per_step={name: min(ts) / K * 1000 for name, ts in times.items()},
        median_ms_per_step={name: statistics.median(ts) / K * 1000 for name, ts in times.items()},
    )
