"""The DCGAN generator and discriminator, configurable along every axis the documents vary.

Layer lists follow ../shared/DESIGN.md section 1; `tests/test_models.py` pins the parameter
counts the documents' own code gives, so a refactor here cannot silently change a recipe.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import RunConfig


def _g_activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "selu": nn.SELU}[name]()


def _d_activation(name: str) -> nn.Module:
    return {"leaky_relu": lambda: nn.LeakyReLU(0.2), "selu": nn.SELU}[name]()


def _widths(image_size: int, base: int) -> list[int]:
    """Channel widths from the 4x4 stage up: 64px -> [8b, 4b, 2b, b], 32px -> [4b, 2b, b]."""
    levels = int(math.log2(image_size)) - 2
    return [base * 2 ** (levels - 1 - i) for i in range(levels)]


def _upsample_block(cin: int, cout: int, kind: str) -> list[nn.Module]:
    if kind == "conv_transpose":
        return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)]
    # 004's idea, built correctly: nearest x2 then a size-preserving convolution.
    return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1, bias=False)]


class Generator(nn.Module):
    def __init__(self, cfg: RunConfig):
        super().__init__()
        self.nz = cfg.nz
        widths = _widths(cfg.image_size, cfg.g_width)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(cfg.nz, widths[0], 4, 1, 0, bias=False),  # 1x1 -> 4x4
            nn.BatchNorm2d(widths[0]),
            _g_activation(cfg.g_activation),
        ]
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += _upsample_block(cin, cout, cfg.g_upsample)
            layers += [nn.BatchNorm2d(cout), _g_activation(cfg.g_activation)]
        layers += _upsample_block(widths[-1], cfg.channels, cfg.g_upsample)
        if cfg.g_last_bn:  # document 001
            layers.append(nn.BatchNorm2d(cfg.channels))
        layers.append(nn.Tanh())
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        return self.main(z)


class Discriminator(nn.Module):
    """Outputs one value per image: a probability (loss 'bce') or a logit (otherwise)."""

    def __init__(self, cfg: RunConfig):
        super().__init__()
        if cfg.d_layout == "unpadded_001":
            layers = self._unpadded_001(cfg)
        else:
            layers = self._standard(cfg)
        if cfg.d_sigmoid_head:
            layers.append(nn.Sigmoid())
        self.main = nn.Sequential(*layers)

    @staticmethod
    def _standard(cfg: RunConfig) -> list[nn.Module]:
        widths = list(reversed(_widths(cfg.image_size, cfg.d_width)))  # [d, 2d, 4d, 8d]
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels, widths[0], 4, 2, 1, bias=False)]
        if cfg.d_first_bn:  # documents 004 (and 001's layout has it too)
            layers.append(nn.BatchNorm2d(widths[0]))
        layers.append(_d_activation(cfg.d_activation))
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.Conv2d(cin, cout, 4, 2, 1, bias=False),
                nn.BatchNorm2d(cout),
                _d_activation(cfg.d_activation),
            ]
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False))
        return layers

    @staticmethod
    def _unpadded_001(cfg: RunConfig) -> list[nn.Module]:
        """001's D: 64 -> 31 -> 14 -> 11 -> 4 -> 1. At 32x32 (the recipes' cpu scale) its
        fourth block cannot fit, so it is dropped and the head sees 3x3: 32 -> 15 -> 6 -> 3 -> 1,
        keeping what makes it 001's (unpadded, biases, a stride-1 block, BN on every block)."""
        h, full = cfg.d_width, cfg.image_size == 64
        plan = [(cfg.channels, h, 2), (h, 2 * h, 2), (2 * h, 4 * h, 1)]
        plan += [(4 * h, 4 * h, 2)] if full else []
        layers: list[nn.Module] = []
        for i, (cin, cout, stride) in enumerate(plan):
            layers.append(nn.Conv2d(cin, cout, 4, stride))
            if i > 0 or cfg.d_first_bn:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(_d_activation(cfg.d_activation))
        layers.append(nn.Conv2d(4 * h, 1, 4, 2) if full else nn.Conv2d(4 * h, 1, 3, 1))
        return layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten()


def dcgan_init_(module: nn.Module) -> None:
    """Radford et al.'s init as 003 writes it: conv weights N(0, .02), BN weights N(1, .02)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def build_models(cfg: RunConfig, seed: int | None = None) -> tuple[Generator, Discriminator]:
    """G and D with initial weights drawn from the run's seed alone.

    G and D use separate, fixed sub-seeds so that arms whose networks have the same shapes
    start from identical weights (common random numbers), whatever else differs.
    """
    seed = cfg.seed if seed is None else seed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(sub_seed(seed, "G"))
        g = Generator(cfg)
        if cfg.init == "dcgan":
            dcgan_init_(g)
        torch.manual_seed(sub_seed(seed, "D"))
        d = Discriminator(cfg)
        if cfg.init == "dcgan":
            dcgan_init_(d)
    return g, d


def sub_seed(seed: int, stream: str) -> int:
    """Independent, stable seeds per random stream (G init, D init, data order, noise...)."""
    return (seed * 1_000_003 + sum(ord(c) * 31**i for i, c in enumerate(stream))) % 2**62


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def generate(g: Generator, z: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """Samples in [-1, 1] the way the reference implementation draws them: BatchNorm uses the
    batch's statistics (G stays in train mode), but running statistics are left untouched,
    so sampling never changes the model. Batches of a fixed size keep samples independent of
    how many are drawn."""
    bns = [m for m in g.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    was_training = g.training
    g.train()
    for m in bns:
        m.track_running_stats = False  # train mode + no tracking: batch stats, no updates
    try:
        return torch.cat([g(chunk) for chunk in z.split(batch_size)])
    finally:
        for m in bns:
            m.track_running_stats = True
        g.train(was_training)
