"""Time to quality: training wall time and images until the `cpu` baseline is trained enough.

The run: the `activation` spec's baseline arm, seed 0, as `plan("cpu", [0])` makes it
(conftest.cpu_baseline; 1,500 steps at batch 64 with a snapshot every 75 steps, or
DCGAN_BENCH_QUICK's reduced budget), trained twice from the same initial weights:

- `project`: this project's loop, `dcgan.train.train`, as an ablation runs it (its metrics
  log, grids, snapshots and checkpoints written to a temp folder: they count);
- `canonical`: pytorch/examples' loop, `dcgan.perf.canonical.canonical_steps` over the same
  images as PNG files through ImageFolder + DataLoader (2 workers), as in
  tests/bench/steppers.py `canonical_stepper`; it writes no files (main.py would write
  grids and checkpoints: this favours the canonical loop).

The two are interleaved snapshot by snapshot in one process: at each of the project's
snapshots (train()'s `on_snapshot`), its clock pauses and the canonical loop trains up to the
same step on its own clock, so a change of load from elsewhere hits both alike. Copying each
generator's weights at a snapshot is outside both clocks. (The canonical DataLoader's 2
workers may decode up to 4 batches ahead while the project's clock runs: at most 4 of each
segment's 75 batches.) Writing the PNG folder, building the reference features and scoring
are outside both clocks too.

Afterwards every snapshot of both loops is scored alike: `fidelity.score_generator` under the
`mnist` protocol at the profile's n_fake (1,000 fakes on the fixed evaluation noise). The gate
is `dcgan.report.trajectory.gate` itself (GATE_WINDOW 0.25, GATE_MAX_IMPROVEMENT 0.50, and
the final-precision floor of 10% of real-vs-real): time-to-quality is the first snapshot K
at which the curve truncated at K, with K as its budget, passes the gate -- the best-so-far
FID at K fell by less than 50% from the last snapshot at or before 0.75 K. The gate detects
a slowing of the best-so-far FID, not a level: a curve that stalls early with precision above
the floor passes at that K, as the report's gate would at that budget. Reported for each
loop: K, images (K x 1000), training seconds to K; and canonical / project for both. A loop
that never passes within the budget is said to, not failed. One seed: the two loops draw
different data orders and noise, so the images ratio carries seed-like variation of the
trajectory besides the loops' own difference; the seconds ratio also carries throughput.
Nothing about time is asserted.
"""

from __future__ import annotations

import os
import time

import pandas as pd
import torch

from dcgan.metrics import fidelity
from dcgan.models import Generator, build_models
from dcgan.perf.canonical import canonical_steps, image_folder_loader
from dcgan.report.trajectory import gate
from dcgan.train import train

from .conftest import QUICK, TIME_TO_QUALITY, cpu_baseline

LOOPS = ("project", "canonical")
EXTRACTOR = "mnist"


def _weights(G: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in G.state_dict().items()}


def _first_passing(curve: list[tuple[float, float, float]], real_precision: float):
    """(kimg, Gate) of the first snapshot K whose curve truncated at K passes the gate with
    budget K, else (None, the Gate at the last snapshot)."""
    verdict = None
    for i, (kimg, _, precision) in enumerate(curve):
        frame = pd.DataFrame(
            {
                "seed": 0,
                "kimg": [c[0] for c in curve[: i + 1]],
                "value": [c[1] for c in curve[: i + 1]],
            }
        )
        verdict = gate(frame, kimg, final_precision=precision, real_precision=real_precision)
        if verdict.trained:
            return kimg, verdict
    return None, verdict


def test_time_to_quality(benchmark, image_set, png_root, tmp_path, monkeypatch):
    _, prof, planned = cpu_baseline("activation")
    cfg = planned.config
    monkeypatch.setenv("DCGAN_CACHE_DIR", str(tmp_path / "cache"))
    images = image_set(cfg)
    root = png_root(cfg)  # untimed: the canonical loop's PNG folder
    # step -> (training seconds to reach it, G's weights there), per loop
    snaps: dict[str, dict[int, tuple[float, dict]]] = {loop: {} for loop in LOOPS}
    result: dict = {}

    def both_loops() -> None:
        torch.manual_seed(cfg.seed)  # the canonical loop's noise comes from the global RNG
        G, D = build_models(cfg)  # the same initial weights train() builds
        loader = image_folder_loader(root, cfg)
        canonical = canonical_steps(cfg, loader, cfg.total_steps, nets=(G, D))
        clock = {"canonical_s": 0.0, "canonical_steps": 0, "paused_s": 0.0}
        start = time.perf_counter()

        def on_snapshot(step: int, G_project: torch.nn.Module) -> None:
            entered = time.perf_counter()
            snaps["project"][step] = (entered - start - clock["paused_s"], _weights(G_project))
            started = time.perf_counter()
            for _ in range(step - clock["canonical_steps"]):
                next(canonical)
            clock["canonical_s"] += time.perf_counter() - started
            clock["canonical_steps"] = step
            snaps["canonical"][step] = (clock["canonical_s"], _weights(G))
            clock["paused_s"] += time.perf_counter() - entered

        result.update(train(cfg, tmp_path / "run", images=images, on_snapshot=on_snapshot))

    benchmark.group = "time to quality: cpu baseline, project vs canonical loop"
    benchmark.pedantic(both_loops, rounds=1, iterations=1)

    protocol = fidelity.make_protocol(images, EXTRACTOR, prof.n_fake, cfg.device)
    fid_name, precision_name = protocol.metric_name("fid"), protocol.metric_name("precision")
    real_precision = fidelity.score_floor(images, protocol)[precision_name]
    curves: dict[str, list[tuple[float, float, float]]] = {}  # loop -> [(kimg, fid, precision)]
    for loop in LOOPS:
        curves[loop] = []
        for step, (_, weights) in sorted(snaps[loop].items()):
            G = Generator(cfg)
            G.load_state_dict(weights)
            scores = fidelity.score_generator(G, cfg, images, protocol)
            curves[loop].append(
                (step * cfg.batch_size / 1000, scores[fid_name], scores[precision_name])
            )

    budget_steps = max(snaps["project"])
    budget_kimg = budget_steps * cfg.batch_size / 1000
    reached: dict[str, dict] = {}
    lines = [
        f"activation baseline, seed 0, {budget_steps} of {cfg.total_steps} steps at batch "
        f"{cfg.batch_size} ({result.get('status')}), {len(snaps['project'])} snapshots; "
        f"{fid_name} and {precision_name} (real-vs-real {real_precision:.3f}); "
        f"{torch.get_num_threads()} torch thread(s), load average "
        + ", ".join(f"{x:.1f}" for x in os.getloadavg())
    ]
    for loop in LOOPS:
        kimg, verdict = _first_passing(curves[loop], real_precision)
        steps = sorted(snaps[loop])
        total_s = snaps[loop][steps[-1]][0]
        row = {
            "img_per_s": steps[-1] * cfg.batch_size / total_s,
            "curve": [[k, round(f, 2)] for k, f, _ in curves[loop]],
            "gate": verdict.reason if verdict is not None else "no snapshot",
        }
        if kimg is None:
            lines.append(
                f"{loop:<10} not trained enough within {budget_kimg:g} kimg ({row['gate']}); "
                f"{row['img_per_s']:.0f} img/s"
            )
        else:
            step = round(kimg * 1000 / cfg.batch_size)
            row.update(kimg=kimg, images=step * cfg.batch_size, train_s=snaps[loop][step][0])
            lines.append(
                f"{loop:<10} passes at {kimg:g} kimg ({row['images']:,} images) after "
                f"{row['train_s']:.1f} s of training ({row['gate']}); {row['img_per_s']:.0f} img/s"
            )
        lines.append(
            f"{'':<10} {fid_name}: " + ", ".join(f"{k:g}:{f:.1f}" for k, f, _ in curves[loop])
        )
        reached[loop] = row
    if all("train_s" in reached[loop] for loop in LOOPS):
        base, fast = reached["canonical"], reached["project"]
        ratios = {
            "seconds canonical / project": base["train_s"] / fast["train_s"],
            "images canonical / project": base["images"] / fast["images"],
        }
        lines.append("; ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    else:
        ratios = {}
        lines.append("no ratio: at least one loop did not pass the gate within the budget")
    if QUICK:
        lines.append("DCGAN_BENCH_QUICK: a reduced budget; the gate is not expected to pass")
    TIME_TO_QUALITY["lines"] = lines
    benchmark.extra_info.update(
        quick=QUICK,
        budget_kimg=budget_kimg,
        loops=reached,
        ratios=ratios,
        real_precision=real_precision,
    )
    print()
    for line in lines:
        print(line)
