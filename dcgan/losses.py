"""The GAN objectives, one place per loss so an ablation swaps exactly one thing.

`bce` is document 003's Sigmoid head + BCELoss (log clamped at -100; unsafe under autocast).
`bce_logits` is document 001's logits head + BCEWithLogitsLoss: the same objective, stable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _bce(output: torch.Tensor, target: float, sigmoid_head: bool) -> torch.Tensor:
    labels = torch.full_like(output, target)
    if sigmoid_head:
        # BCELoss refuses NaN input (a device assert on CUDA). Feed it a sanitised copy and
        # add 0 * sum(output): exactly zero while finite, NaN once D has diverged, so a
        # divergence is recorded as a result instead of crashing the run.
        safe = torch.nan_to_num(output, nan=0.5)
        return F.binary_cross_entropy(safe, labels) + 0.0 * output.sum()
    return F.binary_cross_entropy_with_logits(output, labels)


def discriminator_loss(
    real_out: torch.Tensor, fake_out: torch.Tensor, loss: str, reduction: str
) -> torch.Tensor:
    sigmoid_head = loss == "bce"
    total = _bce(real_out, 1.0, sigmoid_head) + _bce(fake_out, 0.0, sigmoid_head)
    return total / 2 if reduction == "mean" else total


def generator_loss(fake_out: torch.Tensor, loss: str) -> torch.Tensor:
    """Non-saturating loss: fakes labelled real."""
    return _bce(fake_out, 1.0, loss == "bce")


def probability(output: torch.Tensor, loss: str) -> torch.Tensor:
    """D's mean probability of 'real': D(x) / D(G(z)) in the canonical log."""
    return (output if loss == "bce" else torch.sigmoid(output)).mean()
