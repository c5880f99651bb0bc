"""Exact Fréchet distance through symmetric eigendecompositions.

FID needs tr(sqrt(S1 S2)). S1 S2 is not symmetric, so the usual routes are scipy's `sqrtm`
(a Schur decomposition, slow and occasionally complex) or torch-fidelity 0.4.0's
`eigvals(S1 @ S2)` (a general, non-symmetric eigensolver). But S1 S2 is similar to the
symmetric PSD matrix sqrt(S1) S2 sqrt(S1), so

    tr(sqrt(S1 S2)) = sum(sqrt(eigvalsh(sqrt(S1) S2 sqrt(S1))))

needs only symmetric eigensolvers, is real by construction, and sqrt(S1) of a fixed reference
set can be computed once and cached, leaving two matmuls and one eigenvalues-only `eigvalsh`
per scored model: on 2048-d, ~1-2 s on 2 CPU cores against 15-55 s for scipy's `sqrtm` and
3-28 s for torch-fidelity's `eigvals` (timings on a shared machine vary that much). The
one-off square root (an `eigh` with eigenvectors) costs about what `sqrtm` does.
Everything runs in float64; eigenvalues that rounding pushes slightly below zero are clamped.
"""

from __future__ import annotations

import numpy as np


def sqrtm_psd(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance matrix (PSD up to rounding)."""
    sigma = np.asarray(sigma, dtype=np.float64)
    eigenvalues, eigenvectors = np.linalg.eigh((sigma + sigma.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def trace_sqrt_product(sqrt_sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr(sqrt(S1 S2)) given sqrt(S1)."""
    middle = sqrt_sigma1 @ np.asarray(sigma2, dtype=np.float64) @ sqrt_sigma1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())


def frechet_distance(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    sqrt_sigma1: np.ndarray | None = None,
) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2)); pass a cached sqrt(S1) to reuse it."""
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    if sqrt_sigma1 is None:
        sqrt_sigma1 = sqrtm_psd(sigma1)
    diff = mu1 - mu2
    covariance_term = (
        np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sqrt_sigma1, sigma2)
    )
    return float(diff @ diff + covariance_term)


def fid_infinity(
    fake: np.ndarray,
    mu_ref: np.ndarray,
    sigma_ref: np.ndarray,
    sqrt_sigma_ref: np.ndarray | None = None,
    points: int = 15,
    min_n: int | None = None,
    seed: int = 0,
) -> dict:
    """Bias-corrected FID (Chong & Forsyth 2020, "Effectively Unbiased FID"): FID of the
    reference statistics against random subsets of N fakes, at `points` (>= 10) sizes N evenly
    spaced from min_n (default: a fifth of the fakes) to all of them, fitted by least squares
    as FID(N) = FID_inf + slope / N and extrapolated to N = infinity.

    FID's bias comes from the finite-sample fake covariance and falls as 1/N, so with the
    reference statistics fixed (from many reals) the intercept estimates FID at infinite N.
    Returns {"fid_inf", "slope", "n": sizes, "fid": the FID at each size}."""
    fake = np.asarray(fake, dtype=np.float64)
    total = len(fake)
    min_n = max(2, total // 5) if min_n is None else min_n
    if points < 10 or not 2 <= min_n < total:
        raise ValueError(f"FID_inf needs >= 10 sizes between 2 and {total} (got {points}, {min_n})")
    if sqrt_sigma_ref is None:
        sqrt_sigma_ref = sqrtm_psd(sigma_ref)
    sizes = np.unique(np.linspace(min_n, total, points).round().astype(int))
    rng = np.random.default_rng(seed)
    fids = []
    for n in sizes:
        subset = fake[rng.permutation(total)[:n]]
        fids.append(
            frechet_distance(
                mu_ref,
                sigma_ref,
                subset.mean(0),
                np.cov(subset, rowvar=False),
                sqrt_sigma1=sqrt_sigma_ref,
            )
        )
    fids = np.array(fids)
    design = np.stack([np.ones(len(sizes)), 1.0 / sizes], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(design, fids, rcond=None)
    return {
        "fid_inf": float(intercept),
        "slope": float(slope),
        "n": sizes.tolist(),
        "fid": fids.tolist(),
    }
