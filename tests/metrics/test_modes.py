import math

import numpy as np
import pytest
import torch
from torch_fidelity.noise import random_normal

from dcgan import sampling
from dcgan.config import RunConfig
from dcgan.data import stacked_mnist
from dcgan.metrics import fidelity, modes
from dcgan.metrics.extractors import quantise_to_uint8
from dcgan.metrics.fidelity import generate_fakes
from dcgan.metrics.modes import N_SAMPLES, coverage, generate_images, mode_coverage, score_modes
from dcgan.models import build_models, generate


def test_real_stacked_mnist_covers_all_modes_with_near_zero_kl():
    real = stacked_mnist(32)
    assert len(real) == N_SAMPLES
    result = mode_coverage(real.images)
    assert result["modes"] >= 995
    # sampling noise alone: E[KL] ~ (1000 - 1) / (2 * 26000) = 0.019
    assert result["kl"] < 0.05


def test_one_repeated_image_is_one_mode():
    one = stacked_mnist(32, n=1).images.expand(500, -1, -1, -1)
    result = mode_coverage(one)
    assert result["modes"] == 1
    assert result["kl"] == pytest.approx(math.log(1000))


def test_coverage_of_known_histograms():
    assert coverage(torch.full((1000,), 26)) == {"modes": 1000, "kl": 0.0, "n": 26000}
    half = torch.zeros(1000, dtype=torch.int64)
    half[:500] = 2
    assert coverage(half)["kl"] == pytest.approx(math.log(2))


def test_generator_samples_use_torch_fidelitys_noise_stream():
    """...sampled as the reference implementation samples (BatchNorm on batch statistics, the
    one policy of dcgan.sampling), whatever the chunk the latents are drawn in."""
    cfg = RunConfig(data="stacked_mnist", channels=3)
    g, _ = build_models(cfg)
    images, nonfinite = generate_images(g, 10, seed=7, device=torch.device("cpu"), batch_size=4)
    z = random_normal(np.random.RandomState(7), (10, cfg.nz))
    with torch.no_grad():
        expected = quantise_to_uint8(generate(g, z))
    assert nonfinite == 0
    assert torch.equal(images, expected)


def test_modes_count_the_samples_fid_scores():
    """The same G and seed: the images modes counts are the images FID/KID score."""
    cfg = RunConfig(data="stacked_mnist", channels=3, g_width=8)
    torch.manual_seed(3)
    g, _ = build_models(cfg)
    g.train()
    ours, _ = generate_images(g, 600, seed=11, device=torch.device("cpu"))
    fid_fakes, _ = generate_fakes(g, cfg.nz, 600, seed=11, device="cpu")
    assert torch.equal(ours, fid_fakes)
    assert g.training  # the generator itself is untouched


def test_modes_protocol_states_its_sampling_and_old_eval_mode_counts_are_not_current():
    protocol = modes.modes_protocol(device="cpu")
    assert protocol["sampling"] == sampling.POLICY
    assert protocol["id"] != "63d0fabb391b"  # the eval-mode protocol's id: counts changed
    old = {"kind": "stacked_mnist_modes", "n": 26000, "id": "63d0fabb391b"}
    records = [
        {"metric": m, "extractor": "mnist", "kind": "generator", "step": 10, "value": 1.0,
         "protocol_id": p["id"], "protocol": p}
        for m in ("modes", "modes_kl") for p in (old, protocol)
    ]  # fmt: skip
    assert [r["protocol_id"] for r in fidelity.select(records, "modes")] == [protocol["id"]]
    assert len(fidelity.select(records, "modes", current=False)) == 2


def test_non_finite_generator_scores_nan_with_a_reason():
    cfg = RunConfig(data="stacked_mnist", channels=3)
    g, _ = build_models(cfg)
    with torch.no_grad():
        next(g.parameters())[0, 0, 0, 0] = float("nan")
    result = score_modes(g, n=100, device="cpu")
    assert math.isnan(result["modes"]) and "non-finite" in result["reason"]
    assert result["protocol"]["n"] == 100 and result["protocol"]["id"]
