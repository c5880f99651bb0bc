"""Callables that train k steps: the canonical baseline and the fast path, piece by piece.

Each stepper keeps its state between calls, so a benchmark round times steady-state steps
(models built, DataLoader workers started, compilation done in warm-up rounds).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from dcgan.config import RunConfig
from dcgan.data import ImageSet
from dcgan.perf.canonical import canonical_steps, image_folder_loader
from dcgan.train import METRIC_NAMES, Run, resolve_device
from tests.train_hooks import run_class

Stepper = Callable[[], None]


def sync(device: torch.device) -> None:
    """Rounds end with the device idle, so wall-clock time is the work's time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def canonical_stepper(cfg: RunConfig, png_root: Path, k: int) -> Stepper:
    """pytorch/examples' loop: ImageFolder + DataLoader (2 workers) decoding PNGs each epoch."""
    steps = canonical_steps(cfg, image_folder_loader(png_root, cfg), n_steps=10**9)
    device = resolve_device(cfg.device)

    def run_k() -> None:
        for _ in range(k):
            next(steps)
        sync(device)

    return run_k


def loader_batches(cfg: RunConfig, png_root: Path) -> Iterator[torch.Tensor]:
    return (x for _ in itertools.count() for x, _ in image_folder_loader(png_root, cfg))


def fast_run(
    cfg: RunConfig,
    images: ImageSet,
    run_dir: Path,
    *,
    skip_d_weight_grads: bool = True,
    png_root: Path | None = None,
) -> Run:
    """A Run with one piece optionally undone: D's weight grads in the G step, or (png_root)
    batches decoded by the canonical DataLoader instead of the resident uint8 tensor."""
    run = run_class(skip_d_weight_grads)(cfg, run_dir, images)
    if png_root is not None:
        batches = loader_batches(cfg, png_root)
        run.real_batch = lambda: next(batches).to(run.device, memory_format=run.memory_format)
    return run


def fast_stepper(run: Run, k: int, *, sync_every_step: bool = False) -> Stepper:
    """train()'s inner loop without the file writes: values stay on the device in a window
    read every log_every steps (or, to measure that piece, read every step)."""
    window = torch.zeros(run.cfg.log_every, len(METRIC_NAMES), device=run.device)
    filled = 0

    def run_k() -> None:
        nonlocal filled
        for _ in range(k):
            values = run.train_step()
            run.step += 1
            if sync_every_step:
                values.tolist()
            window[filled] = values
            filled += 1
            if filled == run.cfg.log_every:
                window.tolist()
                filled = 0
        sync(run.device)

    return run_k
