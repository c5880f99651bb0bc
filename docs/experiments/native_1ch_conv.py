"""Experiment (session 6): the two 1-channel convolutions of cpu_default on PyTorch's native kernel.

Issue 15 asks for "convolution algorithm and layout choices per layer". Part 1 times each conv
layer of cpu_default (fwd + bwd, batch 64, 1 thread, best of 5 rounds) three ways: oneDNN with
channels_last (the fast path), oneDNN contiguous, and the native im2col kernel (oneDNN off).
Part 2 puts the layers where native wins (G's last, D's first: 1 output / 1 input channel)
on the native kernel inside a whole train step (custom autograd Function, channels_last kept at
its boundaries) and times whole steps against the fast path in interleaved rounds.
Result and verdict: docs/performance.md ("Session 6"). Run from the repo root:
    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python -W ignore docs/experiments/native_1ch_conv.py
"""

import copy
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dcgan.data import load_images
from dcgan.models import build_models
from dcgan.recipes import build_config
from dcgan.train import Run

torch.set_num_threads(1)
CL, CONTIG = torch.channels_last, torch.contiguous_format


def conv_layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]


def layer_ms(layer: nn.Module, shape: torch.Size, fmt, onednn: bool, reps: int = 30) -> float:
    layer = copy.deepcopy(layer).to(memory_format=fmt)
    x = torch.randn(shape).to(memory_format=fmt).requires_grad_()
    best = float("inf")
    with torch.backends.mkldnn.flags(enabled=onednn):
        for round_ in range(6):
            start = time.perf_counter()
            for _ in range(reps):
                y = layer(x)
                y.backward(torch.ones_like(y))
            if round_:  # the first round warms up
                best = min(best, (time.perf_counter() - start) / reps)
    return best * 1e3


class NativeConvFn(torch.autograd.Function):
    """conv / conv-transpose with oneDNN off in forward and backward; channels_last outside."""

    @staticmethod
    def forward(ctx, x, w, stride, padding, transposed):
        x, w = x.contiguous(), w.contiguous()
        with torch.backends.mkldnn.flags(enabled=False):
            conv = F.conv_transpose2d if transposed else F.conv2d
            y = conv(x, w, None, stride, padding)
        ctx.save_for_backward(x, w)
        ctx.geometry = (stride, padding, transposed)
        return y.contiguous(memory_format=CL)

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        stride, padding, transposed = ctx.geometry
        with torch.backends.mkldnn.flags(enabled=False):
            gx, gw, _ = torch.ops.aten.convolution_backward(
                gy.contiguous(), x, w, None, list(stride), list(padding), [1, 1], transposed,
                [0, 0], 1, [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False],
            )  # fmt: skip
        gx = gx.contiguous(memory_format=CL) if gx is not None else None
        gw = gw.contiguous(memory_format=CL) if gw is not None else None
        return gx, gw, None, None, None


class NativeConv(nn.Module):
    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv, self.transposed = conv, isinstance(conv, nn.ConvTranspose2d)

    def forward(self, x):
        c = self.conv
        return NativeConvFn.apply(x, c.weight, c.stride, c.padding, self.transposed)


def per_layer(cfg) -> None:
    g, d = build_models(cfg, seed=0)
    shapes: dict[str, tuple[nn.Module, torch.Size]] = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o, name=f"{net}{k}": shapes.__setitem__(name, (m, i[0].shape)))
        for net, model in (("G", g), ("D", d))
        for k, m in enumerate(conv_layers(model))
    ]  # fmt: skip
    with torch.no_grad():
        d(g(torch.randn(cfg.batch_size, cfg.nz)))
    for h in hooks:
        h.remove()
    print("part 1: ms per fwd+bwd, batch", cfg.batch_size)
    print(f"{'layer':6} {'input':18} {'oneDNN CL':>10} {'oneDNN contig':>14} {'native':>8}")
    for name, (layer, shape) in shapes.items():
        times = [
            layer_ms(layer, shape, f, on) for f, on in ((CL, True), (CONTIG, True), (CONTIG, False))
        ]
        print(f"{name:6} {str(tuple(shape)):18} {times[0]:10.2f} {times[1]:14.2f} {times[2]:8.2f}")


def whole_step(cfg, rounds: int = 10, k: int = 20) -> None:
    images = load_images(cfg.data, cfg.image_size, cfg.channels)
    tmp = Path(tempfile.mkdtemp())
    fast, native = Run(cfg, tmp / "fast", images), Run(cfg, tmp / "native", images)
    for net in (native.G.main, native.D.main):
        i = [j for j, m in enumerate(net) if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
        j = i[-1] if net is native.G.main else i[0]
        net[j] = NativeConv(net[j])

    def advance(run: Run) -> float:
        start = time.perf_counter()
        for _ in range(k):
            run.train_step()
            run.step += 1
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"fast": [], "native": []}
    for r in range(rounds):
        order = [("fast", fast), ("native", native)]
        for name, run in order if r % 2 else order[::-1]:
            times[name].append(advance(run))
    drift = max(
        (p - q).abs().max().item()
        for a, b in ((fast.G, native.G), (fast.D, native.D))
        for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )
    best = {n: min(ts) / k * 1e3 for n, ts in times.items()}
    print(f"part 2: ms per step (best of {rounds} rounds of {k}): fast path {best['fast']:.1f}, "
          f"1-channel convs native {best['native']:.1f}: speed-up {best['fast'] / best['native']:.2f}x; "
          f"max |weight difference| after {rounds * k} steps {drift:.1e} (float rounding)")  # fmt: skip


if __name__ == "__main__":
    cfg = build_config("cpu_default")
    per_layer(cfg)
    whole_step(cfg)
