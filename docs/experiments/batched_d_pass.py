"""Experiment (session 6): would one D pass over real + fake (N=128) beat two passes (N=64)?

D's convolutions do not mix images, so the D step could run each conv once on the real and fake
batches together (BatchNorm kept per half). This times each conv layer of cpu_default's D, fwd +
bwd, channels_last, 1 thread (the workers' layout), best of 5 rounds: two calls at N=64 against
one at N=128. Result: docs/performance.md ("Session 6"). Run from the repo root:
    PYTHONPATH=. .venv/bin/python docs/experiments/batched_d_pass.py
"""

import time

import torch
from torch import nn

torch.set_num_threads(1)
CL = torch.channels_last
LAYERS = [
    ("D0", nn.Conv2d(1, 32, 4, 2, 1, bias=False), (1, 32, 32)),
    ("D1", nn.Conv2d(32, 64, 4, 2, 1, bias=False), (32, 16, 16)),
    ("D2", nn.Conv2d(64, 128, 4, 2, 1, bias=False), (64, 8, 8)),
    ("D3", nn.Conv2d(128, 1, 4, 1, 0, bias=False), (128, 4, 4)),
]


def best_ms(layer: nn.Module, inputs: list[torch.Tensor], reps: int = 30) -> float:
    best = float("inf")
    for round_ in range(6):  # the first round warms up
        start = time.perf_counter()
        for _ in range(reps):
            for x in inputs:
                y = layer(x)
                y.backward(torch.ones_like(y))
        if round_:
            best = min(best, (time.perf_counter() - start) / reps)
    return best * 1e3


for name, layer, chw in LAYERS:
    layer = layer.to(memory_format=CL)
    two = [torch.randn(64, *chw).to(memory_format=CL).requires_grad_() for _ in range(2)]
    one = [torch.randn(128, *chw).to(memory_format=CL).requires_grad_()]
    a, b = best_ms(layer, two), best_ms(layer, one)
    print(f"{name}: 2 x N=64 {a:.2f} ms, 1 x N=128 {b:.2f} ms, ratio {a / b:.2f}")
