"""Named recipes: each source document's whole setup as overrides of RunConfig's defaults.

Facts from ../shared/DESIGN.md section 1. Budgets are the documents' own (epochs x their
dataset size, in kimg); on the embedded MNIST you will usually override them (`--kimg`).
A recipe can also be a JSON file, as `dcgan tune` exports the best trial:
{"name": ..., "overrides": {...}}.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import ConfigError, RunConfig

_FACES_64 = {"image_size": 64, "channels": 3, "g_width": 64, "d_width": 64}

RECIPES: dict[str, dict[str, Any]] = {
    # The embedded default: MNIST at 32x32, small enough for 3 seeds x 6 arms in 15 min on
    # 2 CPU cores (see README "CPU default"). 003's semantics, narrower nets, batch 64.
    "cpu_default": {
        "data": "mnist", "image_size": 32, "channels": 1, "g_width": 32, "d_width": 32,
        "batch_size": 64, "kimg": 40.0,
    },
    # 003: the PyTorch DCGAN tutorial (= pytorch/examples dcgan): CelebA, 5 epochs.
    "tutorial": {**_FACES_64, "batch_size": 128, "kimg": 5 * 202.599},
    # 000: anime faces (115k), 003's nets and loss, batch 512, 30 epochs. Its `n_extra_g = 1`
    # is declared but never used by its loop: one G step per D step.
    "anime512": {**_FACES_64, "batch_size": 512, "kimg": 30 * 115.0},
    # 001: CelebA; G from 1024 channels with BN after the last ConvT; 001's unpadded D with
    # biases and BN on every block; logits + BCEWithLogitsLoss; D loss averaged; fresh noise
    # for the G step; 50 epochs.
    "celeba_logits": {
        **_FACES_64, "g_width": 128, "g_last_bn": True, "d_layout": "unpadded_001",
        "d_width": 32, "d_first_bn": True, "loss": "bce_logits", "d_loss_reduction": "mean",
        "g_fresh_noise": True, "batch_size": 128, "kimg": 50 * 202.599,
    },
    # 002: anime faces (63,632); 003's nets with PyTorch's default init; 50 epochs.
    "default_init": {**_FACES_64, "init": "pytorch_default", "batch_size": 128, "kimg": 50 * 63.632},
    # 004: Pokemon (806 images); BN after D's first conv; lr 3e-4; step decay as intended;
    # 1000 epochs.
    "pokemon": {
        **_FACES_64, "d_first_bn": True, "lr_g": 3e-4, "lr_d": 3e-4,
        "lr_schedule": "step_decay", "batch_size": 128, "kimg": 1000 * 0.806,
    },
}  # fmt: skip

DOCUMENT_OF_RECIPE = {
    "tutorial": "003",
    "anime512": "000",
    "celeba_logits": "001",
    "default_init": "002",
    "pokemon": "004",
}


def recipe_overrides(name_or_path: str) -> dict[str, Any]:
    if name_or_path in RECIPES:
        return dict(RECIPES[name_or_path])
    path = Path(name_or_path)
    if path.suffix == ".json" and path.exists():
        try:
            payload = json.loads(path.read_text())
            return dict(payload["overrides"])
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ConfigError(
                f"recipe file {path}: expected {{'overrides': {{...}}}} ({err})"
            ) from None
    raise ConfigError(
        f"unknown recipe {name_or_path!r}; choose one of {', '.join(sorted(RECIPES))} "
        "or a recipe .json file exported by `dcgan tune`"
    )


def build_config(
    recipe: str, overrides: dict[str, Any] | None = None, where: str = "overrides"
) -> RunConfig:
    """Recipe first, then overrides: the one way every entry point makes a RunConfig."""
    values = recipe_overrides(recipe)
    values.update(overrides or {})
    return RunConfig.from_dict(values, where=f"recipe {recipe!r} + {where}")
