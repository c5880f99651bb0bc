"""Learning-rate schedules as per-step multipliers (LambdaLR), so resume is exact.

`step_decay` is document 004's rule as its author intended it (the notebook changes Python
variables, never the optimizer, so as written it has no effect): at the end of each epoch e
(counting from 0), lr_D *= 0.8 when e % 10 == 0, and lr_G *= 0.9 when e % 10, e % 11 or
e % 12 == 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable


def _decays_d(epoch: int) -> bool:
    return epoch % 10 == 0


def _decays_g(epoch: int) -> bool:
    return epoch % 10 == 0 or epoch % 11 == 0 or epoch % 12 == 0


def lr_multiplier(
    schedule: str, net: str, total_steps: int, steps_per_epoch: int, final_ratio: float
) -> Callable[[int], float]:
    """Multiplier of the base lr at a given step, for net 'G' or 'D'."""
    if schedule == "constant":
        return lambda step: 1.0
    if schedule == "step_decay":
        factor, decays = (0.9, _decays_g) if net == "G" else (0.8, _decays_d)

        def step_decay(step: int) -> float:
            finished_epochs = step // steps_per_epoch
            return factor ** sum(decays(e) for e in range(finished_epochs))

        return step_decay
    span = max(1, total_steps)
    if schedule == "linear":
        return lambda step: 1.0 - (1.0 - final_ratio) * min(step, span) / span
    if schedule == "cosine":
        return lambda step: (
            final_ratio
            + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(step, span) / span))
        )
    if schedule == "exponential":
        return lambda step: final_ratio ** (min(step, span) / span)
    raise ValueError(f"unknown lr_schedule {schedule!r}")
