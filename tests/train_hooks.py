"""Test-only ways into the training loop, kept out of `dcgan.train`'s API.

- `train_until(cfg, run_dir, step, ...)`: train, but stop after `step` without finishing, as
  a kill just after that step's writes would (None: to the end, as `train`).
- `RunWithDWeightGrads`: a `Run` whose G step also computes D's weight gradients (the
  canonical loop's way), to test and measure what skipping them saves.
"""

from __future__ import annotations

from dcgan.train import Run, _train


def train_until(cfg, run_dir, step: int | None, **kwargs) -> dict:
    return _train(cfg, run_dir, _stop_after=step, **kwargs)


class RunWithDWeightGrads(Run):
    _d_weight_grads_in_g_step = True


def run_class(skip_d_weight_grads: bool = True) -> type[Run]:
    """`Run` (the default: skipping) or `RunWithDWeightGrads`."""
    return Run if skip_d_weight_grads else RunWithDWeightGrads
