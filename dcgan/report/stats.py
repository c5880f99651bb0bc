"""Per-arm estimates and arm-vs-arm differences, with only the certainty a few seeds allow.

Percentile bootstrap intervals are narrower than their nominal 95% with 3-5 seeds (with 3 they
span about the seeds' range), so a difference counts as resolved only when its paired bootstrap
CI excludes 0 *and* the paired t-test agrees (p < 0.05). Lower is better for FID and KID.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from dcgan.results import AblationResults

SCORED_STATUSES = ("completed", "diverged")  # diverged runs are scored at their last good snapshot
METRICS = ("fid", "kid")
LEVEL = 0.95
ALPHA = 0.05
N_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
_QUANTILES = ((1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2)
NAN = float("nan")


@dataclass(frozen=True)
class Estimate:
    """A mean over n seeds with a 95% bootstrap CI; lo/hi are NaN with fewer than 2 seeds."""

    mean: float
    lo: float
    hi: float
    n: int

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    @property
    def excludes_zero(self) -> bool:
        return self.has_ci and (self.lo > 0 or self.hi < 0)


@dataclass(frozen=True)
class Difference:
    """arm − reference on one metric, paired by seed; the unpaired CI shows what pairing gains."""

    arm: str
    reference: str
    metric: str
    paired: Estimate  # mean of per-seed differences over seeds both arms scored
    p: float  # paired t-test
    d_z: float  # Cohen's d_z: mean difference / sd of differences
    unpaired_lo: float  # bootstrap of the difference of means, arms resampled independently
    unpaired_hi: float

    @property
    def resolved(self) -> bool:
        return self.paired.excludes_zero and math.isfinite(self.p) and self.p < ALPHA

    @property
    def direction(self) -> str | None:
        """'better' or 'worse' for a resolved difference; None when the seeds cannot tell."""
        if not self.resolved:
            return None
        return "better" if self.paired.mean < 0 else "worse"


@dataclass(frozen=True)
class ArmSummary:
    arm: str
    is_baseline: bool
    overrides: dict
    expected: int  # runs the spec asks for
    done_seeds: tuple[int, ...]  # completed or diverged
    unfinished: tuple[tuple[int, str], ...]  # (seed, status): excluded from every statistic
    diverged: int
    diverged_at_median: float
    fid: Estimate
    kid: Estimate
    modes: Estimate | None  # None unless the data has modes (stacked MNIST)
    kl: Estimate | None
    d_loss: float
    g_loss: float
    wall_s: float
    images_per_s: float


@dataclass(frozen=True)
class Analysis:
    arms: list[ArmSummary]
    differences: dict[str, dict[str, Difference]]  # arm -> metric -> arm − baseline
    has_modes: bool


def _finite(values) -> np.ndarray:
    x = np.asarray(pd.to_numeric(pd.Series(values, dtype=object), errors="coerce"), float)
    return x[np.isfinite(x)]


def _rng() -> np.random.Generator:
    return np.random.default_rng(BOOTSTRAP_SEED)


def _resampled_means(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return x[rng.integers(0, x.size, size=(N_RESAMPLES, x.size))].mean(axis=1)


def mean_ci(values) -> Estimate:
    """Mean over seeds with a seeded percentile bootstrap CI (undefined for one seed)."""
    x = _finite(values)
    if x.size == 0:
        return Estimate(NAN, NAN, NAN, 0)
    if x.size == 1:
        return Estimate(float(x[0]), NAN, NAN, 1)
    lo, hi = np.quantile(_resampled_means(x, _rng()), _QUANTILES)
    return Estimate(float(x.mean()), float(lo), float(hi), int(x.size))


def scored(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"].isin(SCORED_STATUSES)]


def _metric_by_seed(runs: pd.DataFrame, arm: str, metric: str) -> pd.Series:
    rows = scored(runs)
    rows = rows[rows["arm"] == arm]
    values = pd.to_numeric(rows[metric], errors="coerce")
    return pd.Series(values.to_numpy(), index=rows["seed"].to_numpy()).dropna()


def _paired_test(arm: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(p, d_z); a constant difference has sd 0, so p is 0 (or 1 when it is 0)."""
    diffs = arm - reference
    if diffs.size < 2:
        return NAN, NAN
    sd = float(diffs.std(ddof=1))
    mean = float(diffs.mean())
    if sd == 0:
        return (1.0, NAN) if mean == 0 else (0.0, math.copysign(math.inf, mean))
    return float(scipy_stats.ttest_rel(arm, reference).pvalue), mean / sd


def compare(runs: pd.DataFrame, arm: str, reference: str, metric: str) -> Difference:
    """arm − reference on metric; pairs only the seeds both arms scored."""
    a = _metric_by_seed(runs, arm, metric)
    b = _metric_by_seed(runs, reference, metric)
    common = a.index.intersection(b.index).sort_values()
    arm_values, reference_values = a[common].to_numpy(float), b[common].to_numpy(float)
    paired = mean_ci(arm_values - reference_values)
    p, d_z = _paired_test(arm_values, reference_values)
    unpaired_lo = unpaired_hi = NAN
    if a.size >= 2 and b.size >= 2:
        rng = _rng()
        boot = _resampled_means(a.to_numpy(float), rng) - _resampled_means(b.to_numpy(float), rng)
        unpaired_lo, unpaired_hi = (float(q) for q in np.quantile(boot, _QUANTILES))
    return Difference(arm, reference, metric, paired, p, d_z, unpaired_lo, unpaired_hi)


def _mean(values) -> float:
    x = _finite(values)
    return float(x.mean()) if x.size else NAN


def summarize_arm(results: AblationResults, arm: str) -> ArmSummary:
    rows = results.runs[results.runs["arm"] == arm]
    done = scored(rows)
    unfinished = rows[~rows["status"].isin(SCORED_STATUSES)]
    diverged = done[done["status"] == "diverged"]
    diverged_at = _finite(diverged["diverged_at_step"])
    modes, kl = mean_ci(done["modes"]), mean_ci(done["kl"])
    return ArmSummary(
        arm=arm,
        is_baseline=arm == results.baseline,
        overrides=dict(results.arms.get(arm, {})),
        expected=len(rows),
        done_seeds=tuple(sorted(int(s) for s in done["seed"])),
        unfinished=tuple(
            sorted(
                (int(s), str(st))
                for s, st in zip(unfinished["seed"], unfinished["status"], strict=True)
            )
        ),
        diverged=len(diverged),
        diverged_at_median=float(np.median(diverged_at)) if diverged_at.size else NAN,
        fid=mean_ci(done["fid"]),
        kid=mean_ci(done["kid"]),
        modes=modes if modes.n else None,
        kl=kl if kl.n else None,
        d_loss=_mean(done["final_d_loss"]),
        g_loss=_mean(done["final_g_loss"]),
        wall_s=_mean(done["wall_s"]),
        images_per_s=_mean(done["images_per_s"]),
    )


def arm_names(results: AblationResults) -> list[str]:
    """Spec order, then any arm the store has that the spec no longer lists."""
    names = list(results.arms)
    return names + [a for a in dict.fromkeys(results.runs["arm"]) if a not in results.arms]


def analyse(results: AblationResults) -> Analysis:
    arms = [summarize_arm(results, name) for name in arm_names(results)]
    differences = {
        a.arm: {m: compare(results.runs, a.arm, results.baseline, m) for m in METRICS}
        for a in arms
        if not a.is_baseline
    }
    has_modes = any(a.modes is not None for a in arms)
    return Analysis(arms, differences, has_modes)
