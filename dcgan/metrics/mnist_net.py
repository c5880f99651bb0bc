"""A small MNIST classifier: the `mnist` feature extractor and the Stacked MNIST mode counter.

Inception features describe photographs; on 32x32 digits a digit classifier's features are
the meaningful (and on a CPU ~1,000x cheaper) space for FID/KID, and its predictions count Stacked
MNIST modes. It is trained, seeded, on the reference part of the 5,000 embedded digits and
evaluated on the held-out part, the same split the FID floor uses, so the held-out digits
stay unseen. The committed weights are pinned by sha256; loading verifies it.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..atomic import atomic_write_bytes

WEIGHTS_PATH = Path(__file__).resolve().parent.parent / "assets" / "mnist_classifier.pt"
WEIGHTS_SHA256 = "76255b9e0a27121fc7d37bc186dbf288709fca21b74cf72bd5821c61a14382cd"
HELD_OUT_ACCURACY = 0.988  # accuracy of the committed weights on the 1,000 held-out digits
FEATURE_DIM = 128
N_HELD_OUT = 1000  # held-out digits of the 5,000: never trained on
IMAGE_SIZE = 32


class ChecksumError(RuntimeError):
    """Weights on disk are not the ones every recorded score was computed with."""


class MnistNet(nn.Module):
    """Three conv blocks and two linear layers; input (N, 1, 32, 32) in [-1, 1].

    The first convolution has stride 2 instead of a pooled full-resolution stage: ~3x the
    throughput (Stacked MNIST classifies 78,000 digits per score) for 0.2% held-out accuracy.
    """

    def __init__(self, width: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 5, 2, 2, bias=False),  # 32 -> 16
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 16 -> 8
            nn.Conv2d(2 * width, 4 * width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(4 * width),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8 -> 4
            nn.Flatten(),
            nn.Dropout(0.25),
        )
        # The feature: the penultimate layer, batch-normalised, before its ReLU. No dimension
        # is ever dead (constant zero), so covariances stay full rank for the Frechet distance,
        # and features are about unit scale, as KID's polynomial kernel (gamma = 1/dim) assumes.
        self.penultimate = nn.Sequential(
            nn.Linear(4 * width * 4 * 4, FEATURE_DIM, bias=False), nn.BatchNorm1d(FEATURE_DIM)
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.25), nn.Linear(FEATURE_DIM, 10))

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.penultimate(self.body(x))
        return features, self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[1]


def uint8_to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 1, 32, 32) -> float in [-1, 1], exactly the range the GAN is trained on."""
    return images.float() / 127.5 - 1.0


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@functools.cache
def verified_state_dict() -> dict[str, torch.Tensor]:
    """The committed weights, refusing a file whose sha256 is not the recorded one."""
    if not WEIGHTS_PATH.exists():
        raise ChecksumError(
            f"{WEIGHTS_PATH} is missing; train it with `python -m dcgan train-classifier`"
        )
    blob = WEIGHTS_PATH.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise ChecksumError(
            f"{WEIGHTS_PATH} has sha256 {digest}, but scores are recorded against {WEIGHTS_SHA256} "
            "(dcgan.metrics.mnist_net.WEIGHTS_SHA256). Restore the committed file, or retrain with "
            "`python -m dcgan train-classifier` and record the new checksum (old scores then "
            "no longer compare)."
        )
    return torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu")


def load_classifier(device: str | torch.device = "cpu") -> MnistNet:
    """A fresh copy of the committed classifier in eval mode (callers may move it freely).

    Channels-last: ~1.7x the CPU throughput of the default layout for these small convs.
    """
    net = MnistNet()
    net.load_state_dict(verified_state_dict())
    return net.eval().requires_grad_(False).to(device, memory_format=torch.channels_last)


# ---- training ----------------------------------------------------------------------------
def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Small random rotations (+-11 deg), scalings (+-10%) and shifts (+-2 px)."""
    n = len(x)

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=gen)

    angle, scale = uniform(-0.2, 0.2), uniform(0.9, 1.1)
    shift_x, shift_y = uniform(-2 / 16, 2 / 16), uniform(-2 / 16, 2 / 16)
    cos, sin = scale * angle.cos(), scale * angle.sin()
    theta = torch.stack(
        [torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # shift to [0, 2] so that the zero padding grid_sample adds is the black background
    return F.grid_sample(x + 1, grid, align_corners=False) - 1


def train_classifier(
    seed: int = 0, epochs: int = 30, batch_size: int = 64, max_lr: float = 3e-3
) -> tuple[MnistNet, float]:
    """Train on the reference digits; return the net and its held-out accuracy."""
    from ..data import held_out_split, load_images

    digits = load_images("mnist", IMAGE_SIZE, 1)
    x, y = uint8_to_input(digits.images), digits.labels
    reference, held_out = held_out_split(len(digits), N_HELD_OUT)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = MnistNet()
    steps_per_epoch = -(-len(reference) // batch_size)
    optimizer = torch.optim.AdamW(net.parameters(), lr=max_lr / 10, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr, total_steps=epochs * steps_per_epoch
    )
    for _ in range(epochs):
        net.train()
        order = reference[torch.randperm(len(reference), generator=gen)]
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            loss = F.cross_entropy(net(_augment(x[batch], gen)), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(x[held_out]).argmax(1) == y[held_out]).float().mean().item()
    return net, accuracy


def command_train_classifier(argv: list[str] | None = None) -> int:
    """`python -m dcgan train-classifier`: retrain and save the committed weights."""
    parser = argparse.ArgumentParser(
        prog="python -m dcgan train-classifier",
        description="Train the MNIST classifier behind the `mnist` extractor and mode counting.",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (fixes float order)")
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    net, accuracy = train_classifier(seed=args.seed, epochs=args.epochs)
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    atomic_write_bytes(args.out, buffer.getvalue())
    digest = file_sha256(args.out)
    print(f"held-out accuracy: {accuracy:.4f} ({N_HELD_OUT} digits never trained on)")
    print(f"trained in {time.perf_counter() - started:.0f} s; saved {args.out}")
    print(f"sha256: {digest}")
    if digest != WEIGHTS_SHA256:
        print(
            "this differs from WEIGHTS_SHA256: to commit these weights set "
            f'WEIGHTS_SHA256 = "{digest}" and HELD_OUT_ACCURACY = {accuracy:.4f} in {__file__}'
        )
    return 0 if accuracy >= 0.98 else 1
