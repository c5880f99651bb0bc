"""What the report stage reads: everything about one ablation, pulled out of the result store.

The store (dcgan/store.py) builds this; the report (dcgan/report/) renders it. Nothing in the
report touches Optuna, so a report can be rendered from any source that fills these fields.

`runs` has one row per (arm, seed) the spec asks for, including ones not yet run:
    arm, seed, is_baseline, status ('completed' | 'diverged' | 'failed' | 'running' |
    'waiting' | 'missing'), diverged_at_step, divergence_reason, steps_done, total_steps,
    wall_s, images_per_s, final_d_loss, final_g_loss, final_d_real, final_d_fake,
    fid, kid, kid_std, modes, kl (NaN unless the data is stacked_mnist), fid_metric,
    kid_metric (metric names that state the protocol, e.g. 'fid_mnist_1k'), protocol_id,
    dtype ('fp32' | 'bf16'), config_hash, scored_step, batch_size, total_kimg (the budget)
`curves` is long-form: arm, seed, step, kimg (step x batch / 1000), metric, value, with metric in
    d_loss, g_loss, d_real, d_fake, lr_g, lr_d, g_grad_norm, d_grad_norm, fid, kid
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

RUN_COLUMNS = [
    "arm", "seed", "is_baseline", "status", "diverged_at_step", "divergence_reason",
    "steps_done", "total_steps", "wall_s", "images_per_s", "final_d_loss", "final_g_loss",
    "final_d_real", "final_d_fake", "fid", "kid", "kid_std", "modes", "kl", "fid_metric",
    "kid_metric", "protocol_id", "dtype", "config_hash", "scored_step", "batch_size", "total_kimg",
]  # fmt: skip
CURVE_COLUMNS = ["arm", "seed", "step", "kimg", "metric", "value"]


@dataclass
class Claim:
    """A source document's claim, a pre-registered hypothesis tested under stated conditions.

    kind: 'better' (arm beats vs on FID), 'not_better' (arm does not beat vs: needs evidence,
    an equivalence test or a resolved 'worse'), 'diverges' (arm fails to train in most seeds),
    'info' (context only; no verdict computed).
    Conditions the claim was made under: measure ('fid' for better/not_better, 'failure' for
    diverges), recipe, data, budget, margin (equivalence margin on the ratio scale; None: the
    spec's), scope ('in', or 'out: <why>' when this project cannot test it under its
    conditions) and, for divergence, a loss criterion stated beside the document's own figures
    ({'g_loss_above': 20.0, 'd_loss_below': 0.01}).
    """

    source: str  # document id, e.g. "004"
    text: str
    kind: str
    arm: str | None = None
    vs: str | None = None
    reported: dict[str, float] = field(default_factory=dict)  # e.g. final losses the doc gives
    measure: str | None = None
    recipe: str | None = None
    data: str | None = None
    budget: str | None = None
    margin: float | None = None
    scope: str = "in"
    criterion: dict[str, float] = field(default_factory=dict)

    @property
    def in_scope(self) -> bool:
        return not self.scope.startswith("out")

    @property
    def out_of_scope_reason(self) -> str:
        return self.scope.partition(":")[2].strip() if not self.in_scope else ""


@dataclass
class AblationResults:
    name: str
    question: str
    profile: str
    baseline: str
    arms: dict[str, dict]  # arm name -> overrides, in spec order
    sources: list[dict]  # {document, title, claim}
    claims: list[Claim]
    runs: pd.DataFrame  # RUN_COLUMNS
    curves: pd.DataFrame  # CURVE_COLUMNS
    grids: dict[tuple[str, int], list[tuple[int, Path]]]  # (arm, seed) -> [(step, png)]
    protocol: dict  # extractor, weights_sha256, n_real, n_fake, reference, kid_subset_size, ...
    floor: dict | None  # real-vs-real: {'fid': .., 'kid': .., 'kid_std': ..}
    setup: dict  # data, seeds, budget, base recipe, hardware, packages, git commit, store
    notes: list[str] = field(default_factory=list)  # caveats the report must print
    conclusive: bool = True  # False for profiles too short for final verdicts (smoke, quick)
    # execution replicates: arm, seed, threads, fid_main, fid_replicate, status (may be empty)
    executions: pd.DataFrame = field(default_factory=pd.DataFrame)
    spec_path: str = ""
