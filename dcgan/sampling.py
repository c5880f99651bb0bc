"""The one sampling policy: how a generator's latents become the uint8 images that are looked at
(training grids), scored (FID / KID / precision-recall, the class histogram) and counted
(Stacked MNIST modes).

`sample(G, z)`: G runs in train mode with BatchNorm on each batch's statistics, as the
reference implementation samples (`dcgan.models.generate`; running statistics are left
untouched, so sampling never changes the model), in fixed batches of `BATCH` latents (so an
image does not depend on how many are drawn alongside it), in full fp32 (TF32 off), without
autograd; the output in [-1, 1] becomes uint8 exactly as real images are stored
(`quantise_to_uint8`: round((x + 1) * 127.5), clamped), a non-finite pixel becomes 0 (mid-gray)
and is counted (`sample_counted`). Scorers draw their latents from `eval_latents`:
torch-fidelity's 'normal' stream (numpy RandomState) from a seed.

This is the policy FID has sampled with since protocol version 1: FID / KID / class-histogram
values and their protocol ids are unchanged by it (`POLICY` is stamped on their protocols but
left out of the ids while it equals `FID_POLICY_SINCE_V1`; see `policy_in_id`). Stacked MNIST
mode counts sampled G in eval mode (running statistics) before; they now count these same
samples, and their protocol carries the policy, so their id changed with their values.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch_fidelity.noise import random_normal

from .metrics.extractors import full_fp32_precision, quantise_to_uint8
from .models import generate

BATCH = 250
# Stamped on score protocols; a change to the policy must change this string.
POLICY = (
    f"G in train mode, BatchNorm on batch statistics (running stats untouched), batches of "
    f"{BATCH}, fp32 without TF32; uint8 = round((x + 1) * 127.5) clamped, non-finite -> 0"
)
FID_POLICY_SINCE_V1 = POLICY  # the policy FID/KID/classes were scored with before it was stamped


def policy_in_id(policy: str) -> bool:
    """Whether a protocol's id must include its sampling policy: only when it is not the one
    FID has always used, so every existing FID/KID/class protocol id stays what it was."""
    return policy != FID_POLICY_SINCE_V1


@torch.no_grad()
def sample_counted(G: nn.Module, z: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(uint8 images on z's device, count of non-finite pixels) of G on latents z: the policy."""
    images, nonfinite = [], 0
    with full_fp32_precision():
        for chunk in z.split(BATCH):
            x = generate(G, chunk, batch_size=BATCH)
            finite = torch.isfinite(x)
            nonfinite += int((~finite).sum())
            images.append(quantise_to_uint8(torch.where(finite, x, 0.0)))
    return torch.cat(images), nonfinite


def sample(G: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) images of G on latents z, under the one sampling policy."""
    return sample_counted(G, z)[0]


def eval_latents(n: int, nz: int, seed: int, chunk: int = 1000) -> torch.Tensor:
    """n latents of torch-fidelity's 'normal' stream from `seed` (drawn in chunks; the stream
    is sequential, so the latents do not depend on the chunk size)."""
    rng = np.random.RandomState(seed)
    return torch.cat([random_normal(rng, (min(chunk, n - s), nz)) for s in range(0, n, chunk)])


def sample_seeded(
    G: nn.Module, n: int, nz: int, seed: int, device: torch.device | str, chunk: int = 1000
) -> tuple[torch.Tensor, int]:
    """(n uint8 images on the CPU, non-finite pixel count) of G on `eval_latents(n, nz, seed)`:
    what FID/KID score, the class histogram reads and Stacked MNIST modes count.

    Latents are drawn and sampled `chunk` at a time (rounded up to a multiple of BATCH, so
    the images do not depend on it); G itself is used as it is: callers pass a copy."""
    chunk = -(-max(1, chunk) // BATCH) * BATCH
    rng = np.random.RandomState(seed)
    images, nonfinite = [], 0
    for start in range(0, n, chunk):
        z = random_normal(rng, (min(chunk, n - start), nz)).to(device)
        x, bad = sample_counted(G, z)
        images.append(x.cpu())
        nonfinite += bad
    return torch.cat(images), nonfinite
