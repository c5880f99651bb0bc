"""Sampling: 1,000 images through `dcgan.models.generate`, as evaluation draws them."""

from __future__ import annotations

import pytest
import torch

from dcgan.models import build_models, generate
from dcgan.train import resolve_device

from .conftest import best_round_s, config_for
from .steppers import sync

N = 1000


@pytest.mark.parametrize("recipe", ["cpu_default", "tutorial"])
def test_generate_1000(benchmark, recipe):
    cfg = config_for(recipe)
    device = resolve_device(cfg.device)
    g = build_models(cfg)[0].to(device)
    z = torch.randn(N, cfg.nz, generator=torch.Generator().manual_seed(0)).to(device)

    def sample() -> None:
        generate(g, z)
        sync(device)

    benchmark.group = "sample 1000 images"
    benchmark.pedantic(sample, rounds=3, warmup_rounds=1)
    benchmark.extra_info["images_per_s"] = N / best_round_s(benchmark)
