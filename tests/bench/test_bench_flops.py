"""This machine's achievable conv throughput: the ceiling the fast path is compared to."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dcgan.train import resolve_device

from .conftest import CEILING, DEVICE, best_round_s, count_flops
from .steppers import sync

# (batch, channels in = out, size, kernel, stride): a large 3x3 conv and DCGAN's own 4x4/2.
SHAPES = [(32, 256, 32, 3, 1), (128, 256, 32, 4, 2)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_conv_flop_limit(benchmark, shape):
    n, c, size, k, stride = shape
    device = resolve_device(DEVICE)
    x = torch.randn(n, c, size, size, device=device).contiguous(memory_format=torch.channels_last)
    w = torch.randn(c, c, k, k, device=device).contiguous(memory_format=torch.channels_last)

    def conv() -> None:
        F.conv2d(x, w, stride=stride, padding=k // 2)
        sync(device)

    flops = count_flops(conv)
    benchmark.group = "conv-FLOP limit"
    benchmark.pedantic(conv, rounds=5, warmup_rounds=1)
    rate = flops / best_round_s(benchmark)
    benchmark.extra_info.update(gflop=flops / 1e9, gflop_per_s=rate / 1e9)
    if rate > CEILING.get("flops_per_s", 0):
        CEILING.update(flops_per_s=rate, shape=f"{n}x{c}x{size}x{size}, k{k} s{stride}")
