"""Out-of-distribution diagnostics of a sample of fakes.

- Class histogram: the `mnist` classifier's argmax over its logits for every fake. Classes
  covered = classes holding at least 1% of the fakes; class KL = KL(fake class histogram ||
  uniform over 10) in nats (0 for a perfectly balanced sample, log 10 = 2.30 when every fake
  gets one label). Real held-out digits: 10 classes, KL ~0.003.
- Feature norm: the fraction of fakes whose feature norm exceeds the 99th percentile of the
  reference (real) features' norms, per extractor. Real held-out digits give ~0.01; a sample
  far above that lives where the extractor was never fitted, and its FID there measures how
  strongly it excites a few directions rather than how digit-like it is.
"""

from __future__ import annotations

import math

import torch

CLASS_SHARE = 0.01  # a class counts as covered when it holds at least this share of fakes
NORM_QUANTILE = 0.99
N_CLASSES = 10
# A snapshot is flagged out of distribution when this share of its fakes has a feature norm
# above the reference 99th percentile (ten times what real held-out digits give).
OOD_NORM_FRAC_LIMIT = 0.10


def class_histogram_scores(predicted: torch.Tensor, n_classes: int = N_CLASSES) -> dict:
    """Classes covered (>= 1% of the sample) and KL(histogram || uniform) in nats."""
    counts = torch.bincount(predicted.flatten(), minlength=n_classes).double()
    p = counts / counts.sum()
    hit = p > 0
    kl = float((p[hit] * (p[hit] * n_classes).log()).sum())
    return {
        "classes_covered": int((p >= CLASS_SHARE).sum()),
        "class_kl": max(kl, 0.0),
        "histogram": [int(c) for c in counts],
    }


def norm_quantile(reference: torch.Tensor, q: float = NORM_QUANTILE) -> float:
    return float(torch.quantile(reference.double().norm(dim=1), q))


def norm_excess_fraction(features: torch.Tensor, threshold: float) -> float:
    """Share of rows whose Euclidean norm exceeds threshold."""
    if not math.isfinite(threshold):
        return math.nan
    return float((features.double().norm(dim=1) > threshold).double().mean())
