"""The canonical DCGAN loop (pytorch/examples `dcgan/main.py`): the in-run baseline.

`dcgan.train.Run` is the fast path; this module is what it must equal and what it is timed
against. It does everything the usual way: images decoded from PNG files by a torchvision
`ImageFolder` + `DataLoader` every epoch, `.item()` on every step, the default memory format,
fp32, and D's weight gradients computed (then thrown away) in the G step. Same networks and
initial weights (`build_models`), same batch size. The loss form, `d_loss_reduction`,
`g_steps` and `g_fresh_noise` follow the config so any constant-lr arm has a baseline.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from ..config import ConfigError, RunConfig
from ..models import Discriminator, Generator, build_models
from ..train import resolve_device


def write_png_folder(images: torch.Tensor, root: Path) -> Path:
    """uint8 (N, C, H, W) images as PNG files in an ImageFolder tree (one class, `all/`)."""
    folder = Path(root) / "all"
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        array = image.permute(1, 2, 0).squeeze(2).numpy()  # HxW (L) or HxWx3 (RGB)
        Image.fromarray(array).save(folder / f"{i:05d}.png")
    return Path(root)


def _load_grey(path: str) -> Image.Image:
    with open(path, "rb") as fh:
        return Image.open(fh).convert("L")


def image_folder_loader(root: Path, cfg: RunConfig, workers: int = 2, seed: int = 0) -> DataLoader:
    """main.py's pipeline: ImageFolder, Resize + CenterCrop + ToTensor + Normalize(0.5, 0.5),
    shuffled, `workers` decoding processes (main.py's default is 2). drop_last keeps the
    fast path's static batch size."""
    from torchvision import datasets, transforms

    half = (0.5,) * cfg.channels
    transform = transforms.Compose([
        transforms.Resize(cfg.image_size),
        transforms.CenterCrop(cfg.image_size),
        transforms.ToTensor(),
        transforms.Normalize(half, half),
    ])  # fmt: skip
    loader = _load_grey if cfg.channels == 1 else datasets.folder.default_loader
    dataset = datasets.ImageFolder(str(root), transform=transform, loader=loader)
    return DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=True, num_workers=workers, drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip


def canonical_steps(
    cfg: RunConfig,
    loader_or_images: DataLoader | Iterable[torch.Tensor],
    n_steps: int,
    *,
    noise: Callable[[], torch.Tensor] | None = None,
    nets: tuple[Generator, Discriminator] | None = None,
) -> Iterator[dict[str, float]]:
    """Yield each step's losses and D outputs, read with `.item()` as main.py prints them.

    `loader_or_images`: a DataLoader of (images, labels), re-iterated every epoch, or an
    iterable of ready batches in [-1, 1]. `noise()` draws a (B, nz, 1, 1) batch (default:
    `torch.randn` on the global RNG, as main.py). Pass `nets` to read the weights afterwards.
    """
    if cfg.lr_schedule != "constant":
        raise ConfigError(f"the canonical loop has a constant lr; lr_schedule={cfg.lr_schedule!r}")
    device = resolve_device(cfg.device)
    netG, netD = nets if nets is not None else build_models(cfg)
    netG.to(device)
    netD.to(device)
    criterion = nn.BCELoss() if cfg.d_sigmoid_head else nn.BCEWithLogitsLoss()
    optimizerD = torch.optim.Adam(netD.parameters(), lr=cfg.lr_d, betas=(cfg.beta1_d, cfg.beta2_d))
    optimizerG = torch.optim.Adam(netG.parameters(), lr=cfg.lr_g, betas=(cfg.beta1_g, cfg.beta2_g))
    d_scale = 0.5 if cfg.d_loss_reduction == "mean" else 1.0

    def draw_noise() -> torch.Tensor:
        if noise is not None:
            return noise()
        return torch.randn(cfg.batch_size, cfg.nz, 1, 1, device=device)

    if isinstance(loader_or_images, DataLoader):
        batches = (images for _ in itertools.count() for images, _ in loader_or_images)
    else:
        batches = iter(loader_or_images)

    for data in itertools.islice(batches, n_steps):
        # (1) Update D: maximize log(D(x)) + log(1 - D(G(z)))
        netD.zero_grad()
        real = data.to(device)
        label = torch.full((real.size(0),), 1.0, dtype=real.dtype, device=device)
        output = netD(real)
        errD_real = criterion(output, label) * d_scale
        errD_real.backward()
        D_x = (output if cfg.d_sigmoid_head else output.sigmoid()).mean().item()

        fake = netG(draw_noise())
        label.fill_(0.0)
        output = netD(fake.detach())
        errD_fake = criterion(output, label) * d_scale
        errD_fake.backward()
        D_G_z1 = (output if cfg.d_sigmoid_head else output.sigmoid()).mean().item()
        errD = errD_real + errD_fake
        optimizerD.step()

        # (2) Update G: maximize log(D(G(z))); D's weight grads are computed and discarded
        for k in range(cfg.g_steps):
            if k > 0 or cfg.g_fresh_noise:
                fake = netG(draw_noise())
            netG.zero_grad()
            label.fill_(1.0)
            output = netD(fake)
            errG = criterion(output, label)
            errG.backward()
            D_G_z2 = (output if cfg.d_sigmoid_head else output.sigmoid()).mean().item()
            optimizerG.step()

        yield {
            "d_loss": errD.item(), "g_loss": errG.item(),
            "d_real": D_x, "d_fake": D_G_z1, "d_fake_after_d_step": D_G_z2,
        }  # fmt: skip


def canonical_steps_exact(
    cfg: RunConfig,
    batches: Sequence[torch.Tensor],
    noises: Sequence[torch.Tensor],
    nets: tuple[Generator, Discriminator] | None = None,
) -> list[dict[str, float]]:
    """The canonical loop on given batches and noise (in the order the loop draws them), for
    equivalence tests against the fast path on identical inputs."""
    draws = iter(noises)
    rows = canonical_steps(cfg, batches, len(batches), noise=lambda: next(draws), nets=nets)
    return list(rows)
