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
