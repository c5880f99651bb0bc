"""K runs that differ only in seed, trained in one process as one network K times as wide.

Each layer of the K copies becomes one layer: convolutions (and transposed ones) with
groups=K, so group k sees only model k's channels; BatchNorm over K times the channels,
whose statistics are per channel, hence per model. Model k's batch and noise sit in channel
block k. The K losses are summed, so model k's gradient is its own loss's; Adam is
elementwise, so one Adam over the packed parameters is K Adams. The step is `Run.train_step`'s
(same data order and noise streams per seed, D's weight grads skipped in the G step), so
model k ends where `Run` with seed k ends (tests/test_packed.py).

Whether it pays depends on the machine: one op on K times the channels replaces K small ops
(less per-op overhead), but grouped kernels may run slower per FLOP than dense ones.
tests/bench/test_bench_packed.py measures it against K sequential runs.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..config import ConfigError, RunConfig
from ..data import ImageSet
from ..losses import discriminator_loss, generator_loss, probability
from ..models import Discriminator, Generator, build_models, sub_seed
from ..schedules import lr_multiplier
from ..train import epoch_order, resolve_device

PACKED_METRICS = ("d_loss", "g_loss", "d_real", "d_fake", "d_fake_after_d_step")


def pack(layers: list[nn.Sequential]) -> nn.Sequential:
    """K same-shaped Sequentials -> one, K times as wide, with the K models' weights."""
    k = len(layers)
    packed: list[nn.Module] = []
    for group in zip(*layers, strict=True):
        first = group[0]
        if isinstance(first, nn.Conv2d | nn.ConvTranspose2d):
            layer = type(first)(
                first.in_channels * k, first.out_channels * k, first.kernel_size,
                first.stride, first.padding, groups=k, bias=first.bias is not None,
            )  # fmt: skip
        elif isinstance(first, nn.BatchNorm2d):
            layer = nn.BatchNorm2d(first.num_features * k, first.eps, first.momentum)
        else:  # activations, Upsample, Tanh, Sigmoid: no state, elementwise or per channel
            packed.append(copy.deepcopy(first))
            continue
        state = {
            name: torch.cat([m.state_dict()[name] for m in group]) if value.dim() else value
            for name, value in first.state_dict().items()
        }
        layer.load_state_dict(state)
        packed.append(layer)
    return nn.Sequential(*packed)


def unpack(packed: nn.Sequential, layers: list[nn.Sequential]) -> None:
    """Copy the packed weights back into the K models' own Sequentials."""
    k = len(layers)
    for packed_layer, *group in zip(packed, *layers, strict=True):
        for name, value in packed_layer.state_dict().items():
            parts = value.chunk(k) if value.dim() else [value] * k
            for model_layer, part in zip(group, parts, strict=True):
                model_layer.state_dict()[name].copy_(part)


class PackedRun:
    """K seeds of one config as one network; `train_step` is `Run.train_step` for each."""

    def __init__(self, cfgs: list[RunConfig], images: ImageSet):
        if len({c.replace(seed=0) for c in cfgs}) != 1:
            raise ConfigError("packed runs must share every setting but the seed")
        if cfgs[0].amp != "off":
            raise ConfigError("packed runs train in full precision: set amp='off'")
        cfg = self.cfg = cfgs[0]
        self.cfgs, self.k, self.device = cfgs, len(cfgs), resolve_device(cfg.device)
        self.n_images = len(images)
        self.steps_per_epoch = self.n_images // cfg.batch_size
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.models = [build_models(c) for c in cfgs]
        self.G = pack([g.main for g, _ in self.models]).to(
            self.device, memory_format=self.memory_format
        )
        self.D = pack([d.main for _, d in self.models]).to(
            self.device, memory_format=self.memory_format
        )
        self.dtype = next(self.G.parameters()).dtype
        self.opt_g = torch.optim.Adam(
            self.G.parameters(), cfg.lr_g, betas=(cfg.beta1_g, cfg.beta2_g)
        )
        self.opt_d = torch.optim.Adam(
            self.D.parameters(), cfg.lr_d, betas=(cfg.beta1_d, cfg.beta2_d)
        )
        fn = {
            net: lr_multiplier(cfg.lr_schedule, net, cfg.total_steps, self.steps_per_epoch, cfg.lr_final_ratio)
            for net in ("G", "D")
        }  # fmt: skip
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, fn["G"])
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, fn["D"])
        self.noise = [
            torch.Generator(self.device).manual_seed(sub_seed(c.seed, "noise")) for c in cfgs
        ]
        self.real_u8 = images.images.to(self.device)
        self.step = 0
        self.orders: list[torch.Tensor] = []

    def real_batch(self) -> torch.Tensor:
        """Model k's batch (its own seed's data order) in channel block k."""
        epoch, i = divmod(self.step, self.steps_per_epoch)
        if i == 0 or not self.orders:
            self.orders = [
                epoch_order(c.seed, epoch, self.n_images).to(self.device) for c in self.cfgs
            ]
        b = self.cfg.batch_size
        idx = torch.stack([order[i * b : (i + 1) * b] for order in self.orders], dim=1)  # (B, K)
        batch = self.real_u8[idx].flatten(1, 2)  # (B, K*C, H, W)
        batch = batch.float().div_(127.5).sub_(1.0).to(self.dtype)  # as Run, then the models' dtype
        return batch.contiguous(memory_format=self.memory_format)

    def noise_batch(self) -> torch.Tensor:
        cfg = self.cfg
        shape = (cfg.batch_size, cfg.nz, 1, 1)
        return torch.cat(
            [torch.randn(shape, device=self.device, generator=g) for g in self.noise], dim=1
        )

    def d_forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """D's outputs, one (B,) tensor per model."""
        return list(self.D(x).flatten(1).unbind(1))

    def train_step(self) -> torch.Tensor:
        """One D update and cfg.g_steps G updates of every model; (K, 5) metrics, on device."""
        cfg = self.cfg
        real = self.real_batch()
        fake = self.G(self.noise_batch())
        real_out = self.d_forward(real)
        fake_out = self.d_forward(fake.detach())
        d_losses = [
            discriminator_loss(r, f, cfg.loss, cfg.d_loss_reduction)
            for r, f in zip(real_out, fake_out, strict=True)
        ]
        self.opt_d.zero_grad(set_to_none=True)
        torch.stack(d_losses).sum().backward()
        self.opt_d.step()

        self.D.requires_grad_(False)
        for k in range(cfg.g_steps):
            if k > 0 or cfg.g_fresh_noise:
                fake = self.G(self.noise_batch())
            g_out = self.d_forward(fake)
            g_losses = [generator_loss(out, cfg.loss) for out in g_out]
            self.opt_g.zero_grad(set_to_none=True)
            torch.stack(g_losses).sum().backward()
            self.opt_g.step()
        self.D.requires_grad_(True)
        self.sched_g.step()
        self.sched_d.step()

        probs = [[probability(o, cfg.loss) for o in outs] for outs in (real_out, fake_out, g_out)]
        columns = [torch.stack(values) for values in (d_losses, g_losses, *probs)]
        return torch.stack(columns, dim=1).detach()

    def unpacked(self) -> list[tuple[Generator, Discriminator]]:
        """The K models as ordinary Generator/Discriminator pairs, with the trained weights."""
        unpack(self.G, [g.main for g, _ in self.models])
        unpack(self.D, [d.main for _, d in self.models])
        return self.models
