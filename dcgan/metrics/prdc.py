"""Precision, recall, density and coverage of fakes against reals (Naeem et al. 2020).

k-nearest-neighbour balls around each real sample (radius: distance to its k-th nearest other
real) and around each fake:

- precision: fraction of fakes inside at least one real ball (Kynkäänniemi et al. 2019);
- recall: fraction of reals inside at least one fake ball;
- density: (1 / kM) * sum over fakes of the number of real balls containing the fake;
  E = 1 when fakes and reals are identically distributed, > 1 when fakes crowd dense regions;
- coverage: fraction of real balls that contain at least one fake;
  E = 1 - prod_{i=1..k} (N - i) / (N + M - i) for identical distributions (Lemma 2), which
  tends to 1 - 2^-k (0.969 at k = 5) when M = N grows.

N reals, M fakes; distances are Euclidean, in float64, with the membership test `<=` as in
torch-fidelity's precision/recall. Both sets are compared at equal N by the caller (the radii
depend on N).
"""

from __future__ import annotations

import math

import torch

NEAREST_K = 5  # Naeem et al.'s recommendation for density and coverage


def _kth_neighbour_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest other row."""
    d = torch.cdist(x, x)
    d.fill_diagonal_(math.inf)
    return d.kthvalue(k, dim=1).values


def real_radii(real: torch.Tensor, k: int = NEAREST_K) -> torch.Tensor:
    """Each real's k-NN radius: fixed by the reference, so a scorer can compute it once."""
    return _kth_neighbour_radii(real.double(), k)


def prdc(
    real: torch.Tensor,
    fake: torch.Tensor,
    k: int = NEAREST_K,
    radii: torch.Tensor | None = None,
) -> dict[str, float]:
    """Precision, recall, density and coverage of `fake` (M, d) against `real` (N, d);
    `radii`: `real_radii(real, k)`, if already computed."""
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"prdc needs more than k={k} samples on each side")
    real, fake = real.double(), fake.double()
    real_radii = _kth_neighbour_radii(real, k) if radii is None else radii
    fake_radii = _kth_neighbour_radii(fake, k)
    d = torch.cdist(real, fake)  # (N, M)
    inside_real = d <= real_radii[:, None]  # fake j inside real i's ball
    inside_fake = d <= fake_radii[None, :]  # real i inside fake j's ball
    return {
        "precision": float(inside_real.any(dim=0).double().mean()),
        "recall": float(inside_fake.any(dim=1).double().mean()),
        "density": float(inside_real.double().sum() / (k * fake.shape[0])),
        "coverage": float(inside_real.any(dim=1).double().mean()),
    }


def expected_coverage(n_real: int, n_fake: int, k: int = NEAREST_K) -> float:
    """E[coverage] when reals and fakes share one distribution (Naeem et al. 2020, Lemma 2)."""
    return 1.0 - math.prod((n_real - i) / (n_real + n_fake - i) for i in range(1, k + 1))
