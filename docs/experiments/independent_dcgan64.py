"""Experiment (session 8): is the recipes pilot's failure (D wins outright, G stays grey noise)
a bug in dcgan.models or the setting? pytorch/examples' dcgan nets written here independently,
at 64x64, nc=1, widths W (argv[1], default 16 = the recipes' quarter width), on the embedded
MNIST at 64 (dcgan.data), STEPS steps (argv[2]) at batch 128. Result: docs/pilot.md (recipes).
    PYTHONPATH=. .venv/bin/python docs/experiments/independent_dcgan64.py 16 401
"""

import sys

import torch
from torch import nn

from dcgan.data import load_images

torch.set_num_threads(1)
torch.manual_seed(0)
W = int(sys.argv[1]) if len(sys.argv) > 1 else 16
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 401
NZ, NC, B = 100, 1, 128
real = load_images("mnist", 64, 1).images.float() / 127.5 - 1


def up(c_in, c_out, first=False):
    conv = nn.ConvTranspose2d(c_in, c_out, 4, 1 if first else 2, 0 if first else 1, bias=False)
    return [conv, nn.BatchNorm2d(c_out), nn.ReLU(True)]


def down(c_in, c_out, bn=True):
    conv = nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False)
    return [conv, *([nn.BatchNorm2d(c_out)] if bn else []), nn.LeakyReLU(0.2, True)]


G = nn.Sequential(
    *up(NZ, W * 8, first=True), *up(W * 8, W * 4), *up(W * 4, W * 2), *up(W * 2, W),
    nn.ConvTranspose2d(W, NC, 4, 2, 1, bias=False), nn.Tanh(),
)  # fmt: skip
D = nn.Sequential(
    *down(NC, W, bn=False), *down(W, W * 2), *down(W * 2, W * 4), *down(W * 4, W * 8),
    nn.Conv2d(W * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid(),
)  # fmt: skip


def init(m: nn.Module) -> None:  # main.py's weights_init
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


G.apply(init)
D.apply(init)
bce = nn.BCELoss()
opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
for step in range(STEPS):
    x = real[torch.randint(0, len(real), (B,))]
    D.zero_grad()
    out = D(x).view(-1)
    loss_real = bce(out, torch.ones(B))
    loss_real.backward()
    d_x = out.mean().item()
    fake = G(torch.randn(B, NZ, 1, 1))
    loss_fake = bce(D(fake.detach()).view(-1), torch.zeros(B))
    loss_fake.backward()
    opt_d.step()
    G.zero_grad()
    out = D(fake).view(-1)
    loss_g = bce(out, torch.ones(B))
    loss_g.backward()
    opt_g.step()
    if step % 50 == 0:
        print(
            f"{step} Ld {loss_real.item() + loss_fake.item():.4f} Lg {loss_g.item():.3f} "
            f"D(x) {d_x:.4f} D(G(z)) {out.mean().item():.5f} fake std {fake.std().item():.3f}",
            flush=True,
        )
