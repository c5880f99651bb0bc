"""Per-arm estimates and arm-vs-baseline comparisons, with the certainty 3-10 seeds allow.

Methods (docs/statistics.md gives each with its simulated coverage or error rate):

- Per arm: FID as a geometric mean with a Student-t interval on log FID (KID, modes, KL: a
  t-interval on the raw values, since KID can be <= 0). Every interval carries its method and n.
- Arm vs baseline: per-seed paired log ratios log(arm / baseline), a t-interval on their mean,
  read back as a ratio ("0.29x the baseline [0.21, 0.40]"); the paired t-test on the same logs;
  the probability of improvement (share of seeds where the arm scored lower, ties half).
- Families: the primary family is every non-baseline arm vs the baseline on FID of the
  profile's extractor; its p-values are Holm-adjusted. KID is secondary: descriptive only.
- "No difference" needs evidence: TOST equivalence on the log ratio against a declared margin
  (ratio within [1/(1+m), 1+m]), Holm-adjusted within the same family.
- Failures count: a failed or diverged run, or a completed run without a score, takes the worst
  score any run of the ablation reached, in every paired and unpaired comparison; each arm's
  failure rate is shown with a Clopper-Pearson interval.
- Nondeterminism: re-executions of the same (arm, seed) under another thread count (rows with
  `execution` != 0) give the execution spread; a difference no larger is not resolved.

Lower is better for FID and KID.

Over 400 lines on purpose: one function per statistical method with its rule in its docstring,
each tested by simulation.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special as scipy_special
from scipy import stats as scipy_stats

from dcgan.results import AblationResults

LEVEL = 0.95
ALPHA = 0.05
DEFAULT_MARGIN = 0.10  # equivalence: ratio within [1/1.1, 1.1] unless the spec declares one
PRIMARY_METRIC = "fid"
METRICS = ("fid", "kid")
SCORED_STATUSES = ("completed", "diverged")  # runs with a score (diverged: last good snapshot)
FINISHED_STATUSES = ("completed", "diverged", "failed")  # runs that will not change any more
FAILURE_STATUSES = ("diverged", "failed")
PRIMARY, SECONDARY, CLAIMS = "primary", "secondary", "claims"
FAMILY_DESCRIPTION = {
    PRIMARY: "primary family: every arm vs the baseline on FID, Holm-adjusted",
    SECONDARY: "secondary metric: descriptive only, no decision",
    CLAIMS: "claims family: the spec's tested claims, Holm-adjusted",
}
FAILURE_RULE = (
    "a failed or diverged run, or a finished run without a score, takes the worst score any run "
    "of this ablation reached"
)
NAN = float("nan")

# Decisions (also the arm verdict labels that come from the statistics alone)
BETTER, WORSE, EQUIVALENT, CANT_TELL = "better", "worse", "equivalent", "can't tell"
TOO_FEW, DESCRIPTIVE = "too few seeds", "descriptive"
BASELINE, DIVERGED, NO_DATA = "baseline", "diverged", "no data"


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a labelled interval; lo/hi are NaN when n is too small."""

    center: float
    lo: float
    hi: float
    n: int
    method: str = "t-interval"
    level: float = LEVEL

    @property
    def mean(self) -> float:  # the point estimate, whatever its kind (kept for old callers)
        return self.center

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    @property
    def excludes_zero(self) -> bool:
        return self.has_ci and (self.lo > 0 or self.hi < 0)

    @property
    def label(self) -> str:
        """'95% t-interval on log, n=5'."""
        return f"{round(self.level * 100)}% {self.method}, n={self.n}"


@dataclass(frozen=True)
class ExecutionSpread:
    """How far one run moves when re-executed (same arm and seed, another thread count)."""

    n: int  # pairs
    rms: float  # root mean square of log(second / first)
    max_abs: float  # largest |log(second / first)|

    @property
    def factor(self) -> float:
        """exp(rms): '×1.04' means re-executing moves FID by about 4%."""
        return math.exp(self.rms) if math.isfinite(self.rms) else NAN


@dataclass(frozen=True)
class Pairs:
    """The values a paired comparison uses, after the failure rule."""

    seeds: tuple[int, ...]
    arm: tuple[float, ...]
    reference: tuple[float, ...]
    imputed: tuple[tuple[str, int, str], ...]  # (arm, seed, status) given the worst score
    worst: float

    @property
    def n(self) -> int:
        return len(self.seeds)


@dataclass(frozen=True)
class Comparison:
    """arm vs reference on one metric, paired by seed.

    scale 'log' (FID): effect is the ratio arm / reference (geometric mean of per-seed ratios);
    scale 'raw' (KID): effect is the mean difference arm − reference.
    """

    arm: str
    reference: str
    metric: str
    family: str  # PRIMARY | SECONDARY | CLAIMS
    scale: str
    pairs: Pairs
    effect: Estimate
    mean_difference: float  # arm − reference in the metric's units, over the pairs
    p: float  # paired t-test on the analysed scale, unadjusted
    d_z: float  # mean / sd of the per-seed differences on the analysed scale
    prob_improvement: float  # share of seeds where arm < reference, ties half
    unpaired: Estimate  # Welch interval, arms' seeds taken independently
    margin: float = NAN  # equivalence margin on the ratio scale (0.10 = ±10%)
    tost_p: float = NAN
    p_adjusted: float = NAN  # Holm within the family; NaN when descriptive
    tost_p_adjusted: float = NAN
    execution_spread: float = NAN  # rms log ratio between executions; NaN if not measured
    alpha: float = ALPHA

    @property
    def n(self) -> int:
        return self.pairs.n

    @property
    def log_effect(self) -> float:
        return math.log(self.effect.center) if self.scale == "log" else NAN

    @property
    def within_execution_spread(self) -> bool:
        return (
            self.scale == "log"
            and math.isfinite(self.execution_spread)
            and abs(self.log_effect) <= self.execution_spread
        )

    @property
    def significant(self) -> bool:
        return math.isfinite(self.p_adjusted) and self.p_adjusted < self.alpha

    @property
    def equivalent(self) -> bool:
        return math.isfinite(self.tost_p_adjusted) and self.tost_p_adjusted < self.alpha

    @property
    def decision(self) -> str:
        """better | worse | equivalent | can't tell | too few seeds | descriptive."""
        if self.n < 2:
            return TOO_FEW
        if self.family == SECONDARY:
            return DESCRIPTIVE
        if self.significant and not self.within_execution_spread:
            return BETTER if self.mean_log_or_difference < 0 else WORSE
        if self.equivalent:
            return EQUIVALENT
        return CANT_TELL

    @property
    def mean_log_or_difference(self) -> float:
        return self.log_effect if self.scale == "log" else self.effect.center

    # Compatibility with callers of the old Difference
    @property
    def resolved(self) -> bool:
        return self.decision in (BETTER, WORSE)

    @property
    def direction(self) -> str | None:
        return self.decision if self.resolved else None


@dataclass(frozen=True)
class SeedScore:
    seed: int
    status: str
    fid: float
    kid: float


@dataclass(frozen=True)
class ArmSummary:
    arm: str
    is_baseline: bool
    overrides: dict
    expected: int  # runs the spec asks for
    done_seeds: tuple[int, ...]  # completed or diverged
    unfinished: tuple[tuple[int, str], ...]  # (seed, status) not completed or diverged
    diverged: int
    diverged_at_median: float
    fid: Estimate  # geometric mean of completed runs, t-interval on log
    kid: Estimate  # mean of completed runs, t-interval
    modes: Estimate | None  # None unless the data has modes (stacked MNIST)
    kl: Estimate | None
    d_loss: float
    g_loss: float
    wall_s: float
    images_per_s: float
    per_seed: tuple[SeedScore, ...] = ()  # every run the spec asks for, in seed order
    finished: int = 0  # completed, diverged or failed
    failures: int = 0  # diverged, failed, or completed without a score
    failure_rate: Estimate = field(default_factory=lambda: Estimate(NAN, NAN, NAN, 0))


@dataclass(frozen=True)
class Analysis:
    arms: list[ArmSummary]
    differences: dict[str, dict[str, Comparison]]  # arm -> metric -> arm vs baseline
    has_modes: bool
    baseline: str = ""
    margin: float = DEFAULT_MARGIN
    family: tuple[str, ...] = ()  # arms in the primary family
    execution: ExecutionSpread | None = None
    seed_spread: float = NAN  # pooled sd of the primary paired log ratios
    alpha: float = ALPHA


# ---------------------------------------------------------------------------------------------
# Building blocks, each a pure function of arrays


def _finite(values) -> np.ndarray:
    try:
        x = np.asarray(values, float)
    except (TypeError, ValueError):  # strings or None among the values: coerce them to NaN
        x = np.asarray(pd.to_numeric(pd.Series(values, dtype=object), errors="coerce"), float)
    x = x.ravel()
    return x[np.isfinite(x)]


@lru_cache(maxsize=1024)
def t_quantile(q: float, df: float) -> float:
    return float(scipy_stats.t.ppf(q, df))


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with df degrees of freedom (scipy's ufunc: fast in loops)."""
    return float(scipy_special.stdtr(df, -t))


def t_interval(values, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, lo, hi): Student-t interval for the mean; lo/hi NaN below 2 values."""
    x = np.asarray(values, float)
    if x.size == 0:
        return NAN, NAN, NAN
    mean = float(x.mean())
    if x.size < 2:
        return mean, NAN, NAN
    half = t_quantile(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return mean, float(mean - half), float(mean + half)


def mean_ci(values, level: float = LEVEL) -> Estimate:
    """Mean with a Student-t interval (raw scale)."""
    x = _finite(values)
    mean, lo, hi = t_interval(x, level)
    return Estimate(mean, lo, hi, int(x.size), "t-interval", level)


def geometric_ci(values, level: float = LEVEL) -> Estimate:
    """Geometric mean with a Student-t interval on log values, read back on the raw scale.

    Falls back to the raw t-interval if any value is <= 0 (a log is then undefined).
    """
    x = _finite(values)
    if x.size and np.any(x <= 0):
        return mean_ci(x, level)
    mean, lo, hi = t_interval(np.log(x), level)
    return Estimate(*(math.exp(v) if math.isfinite(v) else NAN for v in (mean, lo, hi)),
                    int(x.size), "t-interval on log", level)  # fmt: skip


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> Estimate:
    """k of n with the exact (Clopper-Pearson) binomial interval."""
    if n == 0:
        return Estimate(NAN, NAN, NAN, 0, "Clopper-Pearson", level)
    a = 1 - level
    lo = 0.0 if k == 0 else float(scipy_stats.beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(scipy_stats.beta.ppf(1 - a / 2, k + 1, n - k))
    return Estimate(k / n, lo, hi, n, "Clopper-Pearson", level)


def binomial_majority_p(k: int, n: int) -> tuple[float, float]:
    """One-sided exact binomial p-values (more than half, fewer than half) for k of n."""
    if n == 0:
        return NAN, NAN
    more = float(scipy_stats.binom.sf(k - 1, n, 0.5))  # P(X >= k | 1/2)
    fewer = float(scipy_stats.binom.cdf(k, n, 0.5))  # P(X <= k | 1/2)
    return more, fewer


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values; NaN (an untestable member) counts as p = 1."""
    p = np.asarray(pvalues, float)
    p = np.where(np.isfinite(p), p, 1.0)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def paired_t(diffs) -> tuple[float, float]:
    """(two-sided p, d_z) of a one-sample t-test on paired differences."""
    d = np.asarray(diffs, float)
    if d.size < 2:
        return NAN, NAN
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0:
        return (1.0, NAN) if mean == 0 else (0.0, math.copysign(math.inf, mean))
    t = mean / (sd / math.sqrt(d.size))
    return t_sf(abs(t), d.size - 1) * 2, mean / sd


def tost(diffs, bound: float) -> float:
    """TOST p-value that the mean of diffs lies within (-bound, +bound): max of two one-sided p."""
    d = np.asarray(diffs, float)
    if d.size < 2 or not math.isfinite(bound) or bound <= 0:
        return NAN
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0:
        return 0.0 if abs(mean) < bound else 1.0
    se, df = sd / math.sqrt(d.size), d.size - 1
    p_lower = t_sf((mean + bound) / se, df)  # H0: mean <= -bound
    p_upper = t_sf(-(mean - bound) / se, df)  # H0: mean >= +bound
    return float(max(p_lower, p_upper))


def log_margin(margin: float) -> float:
    """A ratio margin m (0.10 = ±10%) as a bound on the log ratio: log(1 + m)."""
    return math.log1p(margin) if math.isfinite(margin) and margin > 0 else NAN


def probability_of_improvement(arm, reference) -> float:
    """Share of paired seeds where arm < reference (lower is better), ties counting half."""
    a, b = np.asarray(arm, float), np.asarray(reference, float)
    if a.size == 0:
        return NAN
    return float(np.mean((a < b) + 0.5 * (a == b)))


def welch_interval(a, b, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean(a) − mean(b), lo, hi), Welch's t with Satterthwaite's degrees of freedom."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 2 or b.size < 2:
        return (float(a.mean() - b.mean()) if a.size and b.size else NAN), NAN, NAN
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    diff = float(a.mean() - b.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = scipy_stats.t.ppf(0.5 + level / 2, df) * se
    return diff, diff - half, diff + half


def execution_spread(first, second) -> ExecutionSpread:
    """Spread between two executions of the same runs (same arm and seed, other thread count).

    first[i] and second[i] are one run's score in each execution (positive, e.g. FID). The
    rule that uses it: a difference between arms whose |log ratio| is no larger than `rms`
    is not resolved, whatever its p-value.
    """
    a, b = np.asarray(first, float), np.asarray(second, float)
    keep = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    if not keep.any():
        return ExecutionSpread(0, NAN, NAN)
    d = np.log(b[keep] / a[keep])
    return ExecutionSpread(int(d.size), float(np.sqrt(np.mean(d**2))), float(np.abs(d).max()))


# ---------------------------------------------------------------------------------------------
# From run rows


def primary_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of the first execution (no `execution` column, or execution 0 / missing)."""
    if "execution" not in runs.columns:
        return runs
    execution = pd.to_numeric(runs["execution"], errors="coerce").fillna(0)
    return runs[execution == 0]


def scored(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"].isin(SCORED_STATUSES)]


def _values(rows: pd.DataFrame, metric: str) -> np.ndarray:
    return pd.to_numeric(rows[metric], errors="coerce").to_numpy(float)


def is_failure(status: str, value: float) -> bool:
    return status in FAILURE_STATUSES or (status == "completed" and not math.isfinite(value))


def worst_score(runs: pd.DataFrame, metric: str) -> float:
    """The failure rule's score: the highest finite score any scored run reached."""
    x = _finite(_values(scored(runs), metric))
    return float(x.max()) if x.size else NAN


def _finished_by_seed(runs: pd.DataFrame, arm: str, metric: str, worst: float) -> dict:
    """seed -> (value after the failure rule, status, imputed?) for the arm's finished runs."""
    rows = runs[(runs["arm"] == arm) & runs["status"].isin(FINISHED_STATUSES)]
    out = {}
    for seed, status, value in zip(
        rows["seed"], rows["status"], _values(rows, metric), strict=True
    ):
        failed = is_failure(str(status), float(value))
        out[int(seed)] = (worst if failed else float(value), str(status), failed)
    return out


def paired_values(runs: pd.DataFrame, arm: str, reference: str, metric: str) -> Pairs:
    """Seeds both arms finished, in seed order, failures given the worst score (no drops)."""
    worst = worst_score(runs, metric)
    a = _finished_by_seed(runs, arm, metric, worst)
    b = _finished_by_seed(runs, reference, metric, worst)
    seeds = tuple(sorted(set(a) & set(b)))
    if not math.isfinite(worst):
        seeds = ()
    imputed = tuple(
        (name, s, by_seed[s][1])
        for s in seeds
        for name, by_seed in ((arm, a), (reference, b))
        if by_seed[s][2]
    )
    return Pairs(
        seeds,
        tuple(a[s][0] for s in seeds),
        tuple(b[s][0] for s in seeds),
        imputed,
        worst,
    )


def compare(
    runs: pd.DataFrame,
    arm: str,
    reference: str,
    metric: str,
    *,
    family: str = PRIMARY,
    margin: float = DEFAULT_MARGIN,
    level: float = LEVEL,
) -> Comparison:
    """arm vs reference on metric, paired by seed, as a family of one (`adjust_family` adjusts).

    FID is analysed on the log scale (a ratio); KID on the raw scale (it can be <= 0).
    """
    runs = primary_runs(runs)
    pairs = paired_values(runs, arm, reference, metric)
    a, b = np.asarray(pairs.arm, float), np.asarray(pairs.reference, float)
    scale = "log" if metric == "fid" and np.all(a > 0) and np.all(b > 0) else "raw"
    worst = pairs.worst
    arm_all = np.array([v for v, _, _ in _finished_by_seed(runs, arm, metric, worst).values()])
    ref_all = np.array(
        [v for v, _, _ in _finished_by_seed(runs, reference, metric, worst).values()]
    )
    if scale == "log":
        diffs = np.log(a) - np.log(b)
        mean, lo, hi = t_interval(diffs, level)
        effect = Estimate(*(math.exp(v) if math.isfinite(v) else NAN for v in (mean, lo, hi)),
                          pairs.n, "t-interval on log ratio", level)  # fmt: skip
        u = welch_interval(np.log(arm_all), np.log(ref_all), level) if arm_all.size else (NAN,) * 3
        unpaired = Estimate(*(math.exp(v) if math.isfinite(v) else NAN for v in u),
                            min(arm_all.size, ref_all.size), "Welch interval on log ratio", level)  # fmt: skip
        bound = log_margin(margin)
    else:
        diffs = a - b
        effect = Estimate(*t_interval(diffs, level), pairs.n, "t-interval", level)
        u = welch_interval(arm_all, ref_all, level) if arm_all.size else (NAN,) * 3
        unpaired = Estimate(*u, min(arm_all.size, ref_all.size), "Welch interval", level)
        bound = NAN
    p, d_z = paired_t(diffs)
    tested = family != SECONDARY
    tost_p = tost(diffs, bound) if tested else NAN
    return Comparison(
        arm=arm,
        reference=reference,
        metric=metric,
        family=family,
        scale=scale,
        pairs=pairs,
        effect=effect,
        mean_difference=float((a - b).mean()) if pairs.n else NAN,
        p=p,
        d_z=d_z,
        prob_improvement=probability_of_improvement(a, b),
        unpaired=unpaired,
        margin=margin if tested and scale == "log" else NAN,
        tost_p=tost_p,
        p_adjusted=p if tested else NAN,  # a family of one until adjust_family
        tost_p_adjusted=tost_p,
    )


def adjust_family(comparisons: list[Comparison], spread: float = NAN) -> list[Comparison]:
    """Holm-adjust the difference and the equivalence p-values across one family."""
    if not comparisons:
        return []
    p = holm([c.p for c in comparisons])
    q = holm([c.tost_p for c in comparisons])
    return [
        _replace(c, p_adjusted=float(pa), tost_p_adjusted=float(qa), execution_spread=spread)
        for c, pa, qa in zip(comparisons, p, q, strict=True)
    ]


def _replace(c: Comparison, **changes) -> Comparison:
    from dataclasses import replace

    return replace(c, **changes)


def execution_pairs(
    runs: pd.DataFrame, executions: pd.DataFrame | None = None, metric: str = PRIMARY_METRIC
) -> tuple[np.ndarray, np.ndarray]:
    """(first, second): each re-executed run's score in its first execution and in another.

    Two sources, both optional: `executions` (AblationResults.executions: fid_main,
    fid_replicate per replicate) and rows of `runs` with `execution` != 0, matched to the
    (arm, seed) row of execution 0.
    """
    a: list[float] = []
    b: list[float] = []
    if (
        executions is not None
        and len(executions)
        and {"fid_main", "fid_replicate"} <= set(executions.columns)
    ):
        a += list(pd.to_numeric(executions["fid_main"], errors="coerce").to_numpy(float))
        b += list(pd.to_numeric(executions["fid_replicate"], errors="coerce").to_numpy(float))
    if "execution" in runs.columns:
        execution = pd.to_numeric(runs["execution"], errors="coerce").fillna(0)
        done = runs["status"] == "completed"
        first = runs[(execution == 0) & done].set_index(["arm", "seed"])[metric]
        first = pd.to_numeric(first, errors="coerce")
        first = first[~first.index.duplicated()]
        others = runs[(execution != 0) & done]
        for arm, seed, value in zip(
            others["arm"], others["seed"], _values(others, metric), strict=True
        ):
            if (arm, seed) in first.index:
                a.append(float(first[(arm, seed)]))
                b.append(float(value))
    return np.array(a, float), np.array(b, float)


def _mean(values) -> float:
    x = _finite(values)
    return float(x.mean()) if x.size else NAN


def summarize_arm(results: AblationResults, arm: str) -> ArmSummary:
    rows = primary_runs(results.runs)
    rows = rows[rows["arm"] == arm]
    done = scored(rows)
    completed = rows[rows["status"] == "completed"]
    unfinished = rows[~rows["status"].isin(SCORED_STATUSES)]
    diverged = done[done["status"] == "diverged"]
    diverged_at = _finite(diverged["diverged_at_step"])
    finished = rows[rows["status"].isin(FINISHED_STATUSES)]
    failures = sum(
        is_failure(str(s), float(v))
        for s, v in zip(finished["status"], _values(finished, "fid"), strict=True)
    )
    modes, kl = mean_ci(completed["modes"]), mean_ci(completed["kl"])
    per_seed = tuple(
        SeedScore(int(s), str(st), float(f), float(k))
        for s, st, f, k in sorted(
            zip(
                rows["seed"],
                rows["status"],
                _values(rows, "fid"),
                _values(rows, "kid"),
                strict=True,
            ),
            key=lambda r: r[0],
        )
    )
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
        fid=geometric_ci(completed["fid"]),
        kid=mean_ci(completed["kid"]),
        modes=modes if modes.n else None,
        kl=kl if kl.n else None,
        d_loss=_mean(done["final_d_loss"]),
        g_loss=_mean(done["final_g_loss"]),
        wall_s=_mean(done["wall_s"]),
        images_per_s=_mean(done["images_per_s"]),
        per_seed=per_seed,
        finished=len(finished),
        failures=int(failures),
        failure_rate=clopper_pearson(int(failures), len(finished)),
    )


def arm_names(results: AblationResults) -> list[str]:
    """Spec order, then any arm the store has that the spec no longer lists."""
    names = list(results.arms)
    return names + [a for a in dict.fromkeys(results.runs["arm"]) if a not in results.arms]


def declared_margin(results: AblationResults) -> float:
    """The spec's `equivalence_margin` (ratio scale), else DEFAULT_MARGIN.

    Read from `results.equivalence_margin` when the collector sets it, else from the spec file
    named in `results.spec_path` (its top-level key only), else the default.
    """
    value = getattr(results, "equivalence_margin", None)
    if value is None and results.spec_path:
        try:
            value = tomllib.loads(Path(results.spec_path).read_text()).get("equivalence_margin")
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            value = None
    if isinstance(value, int | float) and math.isfinite(value) and 0 < value < 1:
        return float(value)
    return DEFAULT_MARGIN


def analyse(results: AblationResults, margin: float | None = None) -> Analysis:
    """Per-arm summaries and every arm vs the baseline, families adjusted."""
    margin = declared_margin(results) if margin is None else margin
    runs = primary_runs(results.runs)
    arms = [summarize_arm(results, name) for name in arm_names(results)]
    first, second = execution_pairs(results.runs, getattr(results, "executions", None))
    execution = execution_spread(first, second) if first.size else None
    execution = execution if execution and execution.n else None
    spread = execution.rms if execution else NAN
    family = tuple(a.arm for a in arms if not a.is_baseline)
    primary = adjust_family(
        [compare(runs, arm, results.baseline, PRIMARY_METRIC, margin=margin) for arm in family],
        spread,
    )
    differences = {
        arm: {
            PRIMARY_METRIC: p,
            **{
                m: compare(runs, arm, results.baseline, m, family=SECONDARY, margin=margin)
                for m in METRICS
                if m != PRIMARY_METRIC
            },
        }
        for arm, p in zip(family, primary, strict=True)
    }
    logs = [np.log(np.asarray(c.pairs.arm) / np.asarray(c.pairs.reference))
            for c in primary if c.scale == "log" and c.n >= 2]  # fmt: skip
    seed_spread = float(math.sqrt(np.mean([x.var(ddof=1) for x in logs]))) if logs else NAN
    has_modes = any(a.modes is not None for a in arms)
    return Analysis(
        arms, differences, has_modes, results.baseline, margin, family, execution, seed_spread
    )


def arm_decisions(analysis: Analysis) -> dict[str, str]:
    """Each arm's label from the statistics alone, before any other module downgrades it:
    baseline | better | worse | equivalent | can't tell | diverged | no data."""
    out = {}
    for a in analysis.arms:
        if a.is_baseline:
            out[a.arm] = BASELINE
        elif a.finished == 0:
            out[a.arm] = NO_DATA
        elif a.failures == a.finished:
            out[a.arm] = DIVERGED
        else:
            c = analysis.differences.get(a.arm, {}).get(PRIMARY_METRIC)
            decision = c.decision if c else CANT_TELL
            out[a.arm] = CANT_TELL if decision == TOO_FEW else decision
    return out
