"""Verdicts against budget: is each arm trained enough, and does each difference hold to the end?

A GAN ablation read at one stopping step can say the opposite of the same ablation read a little
later (measured: Spearman -0.94 between the arm rankings at steps 250 and 625 of the old `cpu`
budget). So every score is kept at every snapshot, and three declared rules decide what a final
score may be used for. The rules are stated once, here, and printed in the report:

STABILITY   A difference is *final* only when its direction (the paired 95% t-interval of the
            log FID ratio, arm / baseline, over seeds, excludes 1) is the same at each of the
            last >= 3 scored snapshots and those snapshots span >= 30% of the budget. Otherwise
            it is "budget-sensitive: changed at N kimg" (the last snapshot where it differed).
            Arms are paired with the baseline at equal kimg; an arm whose budget is another
            number of images (batch 512 for as many steps as batch 128) at the same fraction of
            its budget -- the same step -- with kimg read on the baseline's axis.
GATE        An arm is *undertrained* (no verdict) while its best-so-far FID (geometric mean
            over seeds) still fell by 50% or more over the last quarter of the budget -- the
            fast early phase, where arms that merely start later look worse -- or (when
            precision is scored) its final precision is below 10% of the real-vs-real precision.
            Below 50% it is trained enough for a verdict; below 10% it is also *converged*.
            When the baseline is undertrained, no arm gets a verdict.
            Why 50% and not the 10% first declared: the activation pilot (docs/pilot.md) showed
            the baseline's FID falling as a power law (~kimg^-1.1, 25-30% per quarter at every
            budget up to 320 kimg, 64 epochs) with precision and recall already flat; a 10%
            rule is never met by such a decay, so it separates nothing. 10% is kept as the
            "converged" label; the stability rule guards verdicts in the slow phase.
SPEED       Beside final quality: final FID, best FID over training, and kimg until FID first
            reaches twice the baseline's final FID (geometric means with seed t-intervals).

Everything here is a pure function of per-snapshot scores, so it is tested on synthetic curves.

Over 400 lines on purpose: the trained-enough rules (stability, gate, speed) share one interval
type and curve handling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

LEVEL = 0.95
STABLE_MIN_SNAPSHOTS = 3
STABLE_MIN_SPAN = 0.30  # of the budget (kimg)
GATE_WINDOW = 0.25  # the last quarter of the budget
GATE_MAX_IMPROVEMENT = 0.50  # falling this much over the window: still the fast early phase
CONVERGED_IMPROVEMENT = 0.10  # falling less than this over the window: converged
GATE_MIN_PRECISION_OF_REAL = 0.10  # final precision >= this x the real-vs-real precision
SPEED_THRESHOLD_X_BASELINE = 2.0  # "reaches quality" = FID <= 2 x the baseline's final FID
NAN = float("nan")

RULES = {
    "stability": (
        f"a difference is final only if its direction (paired {LEVEL:.0%} t-interval of the log "
        f"FID ratio excludes 0) is the same at each of the last >= {STABLE_MIN_SNAPSHOTS} "
        f"scored snapshots, spanning >= {STABLE_MIN_SPAN:.0%} of the budget"
    ),
    "gate": (
        f"an arm is trained enough for a verdict when its best-so-far FID (geometric mean over "
        f"seeds) fell by less than {GATE_MAX_IMPROVEMENT:.0%} over the last {GATE_WINDOW:.0%} "
        f"of the budget (converged: less than {CONVERGED_IMPROVEMENT:.0%}) and its final "
        f"precision is >= {GATE_MIN_PRECISION_OF_REAL:.0%} of real-vs-real"
    ),
    "speed": (
        f"kimg until FID first reaches {SPEED_THRESHOLD_X_BASELINE:g}x the baseline's final FID"
    ),
}


@dataclass(frozen=True)
class LogInterval:
    """A geometric mean (or ratio) with a t-interval computed on the log scale."""

    value: float
    lo: float
    hi: float
    n: int

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    @property
    def direction(self) -> str | None:
        """For ratios: 'better' (< 1), 'worse' (> 1) when the interval excludes 1."""
        if not self.has_ci:
            return None
        if self.hi < 1:
            return "better"
        if self.lo > 1:
            return "worse"
        return None


def log_t_interval(values) -> LogInterval:
    """Geometric mean of positive values with a Student-t interval on their logs."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x) & (x > 0)]
    if x.size == 0:
        return LogInterval(NAN, NAN, NAN, 0)
    logs = np.log(x)
    centre = float(logs.mean())
    if x.size < 2:
        return LogInterval(math.exp(centre), NAN, NAN, 1)
    half = float(
        scipy_stats.t.ppf(0.5 + LEVEL / 2, x.size - 1) * logs.std(ddof=1) / math.sqrt(x.size)
    )
    return LogInterval(math.exp(centre), math.exp(centre - half), math.exp(centre + half), x.size)


# ---- curves on a common kimg grid ---------------------------------------------------------
def _per_seed(curve: pd.DataFrame) -> dict[int, pd.Series]:
    """{seed: Series(value, index=kimg)} with finite positive values only, sorted by kimg."""
    out = {}
    for seed, rows in curve.groupby("seed"):
        rows = rows[np.isfinite(rows["value"]) & (rows["value"] > 0)].sort_values("kimg")
        if len(rows):
            out[int(seed)] = pd.Series(
                rows["value"].to_numpy(float), index=rows["kimg"].to_numpy(float)
            )
    return out


def _at(series: pd.Series, kimg: float) -> float:
    """The value at kimg, log-linearly interpolated between snapshots; NaN outside the run."""
    xs = series.index.to_numpy(float)
    if kimg < xs[0] - 1e-9 or kimg > xs[-1] + 1e-9:
        return NAN
    return float(np.exp(np.interp(kimg, xs, np.log(series.to_numpy(float)))))


@dataclass(frozen=True)
class SnapshotDelta:
    kimg: float
    ratio: LogInterval  # arm / baseline, paired by seed


def seed_ratios(
    curve_arm: pd.DataFrame, curve_base: pd.DataFrame, arm_scale: float = 1.0
) -> dict[float, dict[int, float]]:
    """{kimg: {seed: arm / baseline FID}} at every baseline snapshot, paired by seed (columns
    seed, kimg, value); a seed appears where both its runs reach that kimg.

    arm_scale: the arm's budget over the baseline's. An arm trained on a different number of
    images (batch_size's batch 512 for as many steps as batch 128: 4x) is paired at the same
    fraction of its budget -- the same step -- and keyed by the baseline's kimg; pairing it at
    equal kimg would compare its first quarter with the baseline's whole run."""
    arm, base = _per_seed(curve_arm), _per_seed(curve_base)
    seeds = sorted(set(arm) & set(base))
    grid = sorted(set().union(*(base[s].index for s in seeds))) if seeds else []
    out = {}
    for kimg in grid:
        ratios = {s: _at(arm[s], kimg * arm_scale) / _at(base[s], kimg) for s in seeds}
        ratios = {s: r for s, r in ratios.items() if math.isfinite(r)}
        if ratios:
            out[float(kimg)] = ratios
    return out


def paired_ratios(
    curve_arm: pd.DataFrame, curve_base: pd.DataFrame, arm_scale: float = 1.0
) -> list[SnapshotDelta]:
    """arm / baseline FID at every baseline snapshot, paired by seed (columns seed, kimg, value;
    arm_scale as in seed_ratios)."""
    return [
        SnapshotDelta(kimg, log_t_interval(list(ratios.values())))
        for kimg, ratios in seed_ratios(curve_arm, curve_base, arm_scale).items()
    ]


def budget_scale(arm_budget: float, base_budget: float) -> float:
    """The arm's budget over the baseline's; 1 when they match or either is unknown."""
    if not (math.isfinite(arm_budget) and math.isfinite(base_budget)) or base_budget <= 0:
        return 1.0
    scale = arm_budget / base_budget
    return 1.0 if abs(scale - 1.0) < 0.01 else scale  # equal-images arms round to whole steps


# ---- stability --------------------------------------------------------------------------
@dataclass(frozen=True)
class Stability:
    final: bool
    direction: str | None  # the direction at the last snapshot
    changed_at_kimg: float  # last snapshot whose direction differs from the final one (NaN: none)
    window_kimg: tuple[float, float]  # the snapshots the rule looked at
    snapshots: int
    arm_scale: float = 1.0  # != 1: kimg are the baseline's, the arm paired at the same step

    @property
    def sentence(self) -> str:
        return self._sentence() + self._pairing()

    def _sentence(self) -> str:
        if self.snapshots < STABLE_MIN_SNAPSHOTS:
            return f"not final: only {self.snapshots} scored snapshots"
        lo, hi = self.window_kimg
        if self.final and self.direction is None:
            return f"unresolved at every snapshot from {lo:g} to {hi:g} kimg"
        if self.final:
            return f"{self.direction} at every snapshot from {lo:g} to {hi:g} kimg"
        return f"budget-sensitive: changed at {self.changed_at_kimg:g} kimg"

    def _pairing(self) -> str:
        if self.arm_scale == 1.0 or self.snapshots < STABLE_MIN_SNAPSHOTS:
            return ""
        return (
            f" of the baseline's (paired at the same fraction of the budget, where this arm has "
            f"seen {self.arm_scale:g}x the images)"
        )


def stability(deltas: list[SnapshotDelta], budget_kimg: float, arm_scale: float = 1.0) -> Stability:
    """Does the last snapshot's direction hold over the last >= 3 snapshots spanning >= 30%?"""
    if not deltas:
        return Stability(False, None, NAN, (NAN, NAN), 0, arm_scale)
    last = deltas[-1]
    direction = last.ratio.direction
    # the shortest run of last snapshots that spans the 30%: it starts at the last snapshot at or
    # before the span's start (the snapshot grid need not land on it: 20 snapshots of 176 kimg)
    start = last.kimg - STABLE_MIN_SPAN * budget_kimg
    before = [i for i, d in enumerate(deltas) if d.kimg <= start + 1e-9]
    window = deltas[before[-1] if before else 0 :]
    if len(window) < STABLE_MIN_SNAPSHOTS:
        window = deltas[-STABLE_MIN_SNAPSHOTS:]
    differing = [d.kimg for d in deltas if d.ratio.direction != direction]
    changed_at = max(differing) if differing else NAN
    span_ok = last.kimg - window[0].kimg >= STABLE_MIN_SPAN * budget_kimg - 1e-9
    final = (
        len(window) >= STABLE_MIN_SNAPSHOTS
        and span_ok
        and all(d.ratio.direction == direction for d in window)
    )
    window_kimg = (window[0].kimg, last.kimg)
    return Stability(final, direction, changed_at, window_kimg, len(deltas), arm_scale)


# ---- trained-enough gate ----------------------------------------------------------------
@dataclass(frozen=True)
class Gate:
    trained: bool | None  # None: not enough snapshots to tell
    improvement: float  # relative fall of the best-so-far FID over the window
    final_precision: float  # geometric... arithmetic mean over seeds; NaN when not scored
    reason: str


def best_so_far_curve(curve: pd.DataFrame) -> pd.Series:
    """Geometric mean over seeds of each seed's best-so-far FID, on the union of snapshots."""
    seeds = _per_seed(curve)
    if not seeds:
        return pd.Series(dtype=float)
    grid = sorted(set().union(*(s.index for s in seeds.values())))
    values = []
    for kimg in grid:
        logs = []
        for series in seeds.values():
            seen = series[series.index <= kimg + 1e-9]
            if len(seen) and kimg <= series.index[-1] + 1e-9:
                logs.append(math.log(seen.min()))
        values.append(math.exp(np.mean(logs)) if logs else NAN)
    return pd.Series(values, index=grid)


def precision_floor(real_precision: float) -> float:
    """The gate's lowest precision for a trained arm: 10% of real-vs-real (of 1 if unknown)."""
    return GATE_MIN_PRECISION_OF_REAL * (real_precision if math.isfinite(real_precision) else 1.0)


def gate(
    curve: pd.DataFrame,
    budget_kimg: float,
    final_precision: float = NAN,
    real_precision: float = NAN,
) -> Gate:
    """Trained enough at this budget? (See GATE in the module docstring.)"""
    bsf = best_so_far_curve(curve).dropna()
    if len(bsf) < 2:
        return Gate(None, NAN, final_precision, "too few snapshots to tell")
    end = float(bsf.index[-1])
    before = bsf[bsf.index <= end - GATE_WINDOW * budget_kimg + 1e-9]
    if before.empty:
        return Gate(None, NAN, final_precision, "no snapshot before the last quarter")
    improvement = 1.0 - float(bsf.iloc[-1]) / float(before.iloc[-1])
    if improvement >= GATE_MAX_IMPROVEMENT:
        return Gate(
            False,
            improvement,
            final_precision,
            f"best FID still fell {improvement:.0%} over the last {GATE_WINDOW:.0%} of the budget",
        )
    if math.isfinite(final_precision) and final_precision < precision_floor(real_precision):
        return Gate(
            False,
            improvement,
            final_precision,
            f"precision {final_precision:.2f}: almost no fake lies on the data manifold",
        )
    phase = "converged" if improvement < CONVERGED_IMPROVEMENT else "still improving"
    return Gate(
        True,
        improvement,
        final_precision,
        f"{phase}: best FID fell {max(improvement, 0):.0%} over the last {GATE_WINDOW:.0%}",
    )


# ---- learning speed ---------------------------------------------------------------------
@dataclass(frozen=True)
class Speed:
    final: LogInterval
    best: LogInterval
    threshold: float  # FID the arm must reach
    kimg_to_threshold: LogInterval  # over the seeds that reached it
    reached: int
    seeds: int


def speed(curve: pd.DataFrame, threshold: float) -> Speed:
    seeds = _per_seed(curve)
    finals = [s.iloc[-1] for s in seeds.values()]
    bests = [s.min() for s in seeds.values()]
    reached = []
    for series in seeds.values():
        hit = series[series <= threshold]
        if len(hit):
            reached.append(float(hit.index[0]))
    return Speed(
        log_t_interval(finals),
        log_t_interval(bests),
        threshold,
        log_t_interval(reached),
        len(reached),
        len(seeds),
    )


def paired_speed(
    curve_arm: pd.DataFrame, curve_base: pd.DataFrame, threshold: float
) -> LogInterval:
    """kimg-to-threshold ratio arm / baseline, paired by seed; a seed that never reaches the
    threshold counts as reaching it just after its last snapshot (a lower bound on slowness)."""

    def first_hit(series: pd.Series) -> float:
        hit = series[series <= threshold]
        return float(hit.index[0]) if len(hit) else float(series.index[-1]) * 1.0001

    arm, base = _per_seed(curve_arm), _per_seed(curve_base)
    common = sorted(set(arm) & set(base))
    return log_t_interval([first_hit(arm[s]) / first_hit(base[s]) for s in common])


# ---- one arm's verdict against the budget --------------------------------------------------
@dataclass(frozen=True)
class ArmTrajectory:
    arm: str
    gate: Gate
    deltas: list[SnapshotDelta]  # empty for the baseline
    stability: Stability | None
    speed: Speed
    speed_ratio: LogInterval | None  # kimg-to-threshold arm / baseline


def speed_word(ratio: LogInterval | None) -> str | None:
    if ratio is None:
        return None
    return {"better": "faster to learn", "worse": "slower to learn"}.get(ratio.direction)


def qualify(
    end_label: str, arm: ArmTrajectory, baseline: ArmTrajectory, conclusive: bool = True
) -> tuple[str, str]:
    """(label, sentence): the end-of-budget verdict, downgraded by the gate and the stability rule.

    end_label is the statistical verdict at the last snapshot ('better', 'worse', 'equivalent',
    "can't tell", ...). A verdict survives only for a trained-enough arm against a trained-enough
    baseline, and 'better'/'worse' only when stable.
    """
    if end_label in ("baseline", "no data", "diverged"):
        return end_label, ""
    if not conclusive:
        return "early only", "this profile ranks early training only: no final verdict"
    if baseline.gate.trained is False:
        return "undertrained", f"no verdict: the baseline is undertrained ({baseline.gate.reason})"
    if arm.gate.trained is False:
        return "undertrained", f"undertrained at this budget: no verdict ({arm.gate.reason})"
    if arm.gate.trained is None:
        return "can't tell", f"no verdict: {arm.gate.reason}"
    speed = speed_word(arm.speed_ratio)
    scale = arm.stability.arm_scale if arm.stability else 1.0
    if speed and scale != 1.0:  # kimg to the threshold counts images, not steps
        speed += f" in images seen (it sees {scale:g}x the baseline's images per step)"
    if end_label in ("better", "worse"):
        stab = arm.stability
        if stab is None or not stab.final or stab.direction != end_label:
            why = arm.stability.sentence if arm.stability else "no snapshots"
            return "budget-sensitive", why
        words = f"{end_label} at the end"
        return end_label, words + (f"; {speed}" if speed else "")
    if end_label == "equivalent":
        # "no difference" is a verdict too: it is final only if no snapshot of the end window
        # resolved a difference (the same rule as better/worse, with "none" as its direction)
        stab = arm.stability
        if stab is None or not stab.final or stab.direction is not None:
            why = stab.sentence if stab else "no snapshots"
            return "budget-sensitive", f"equivalent at the end only; {why}"
        if speed:
            return f"{speed.split()[0]}, same end", f"{speed}, same end"
    return end_label, speed or ""


def analyse_trajectories(
    fid_curves: pd.DataFrame,
    arms: list[str],
    baseline: str,
    budget_kimg: dict[str, float],
    final_precision: dict[str, float] | None = None,
    real_precision: float = NAN,
) -> dict[str, ArmTrajectory]:
    """Every arm's gate, paired ratios per snapshot, stability and learning speed.

    fid_curves: long form with columns arm, seed, kimg, value (the primary FID, every snapshot).
    """
    final_precision = final_precision or {}
    by_arm = {a: fid_curves[fid_curves["arm"] == a] for a in arms}
    base_curve = by_arm.get(baseline, fid_curves.iloc[0:0])
    base_budget = budget_kimg.get(baseline, NAN)
    base_final = log_t_interval([s.iloc[-1] for s in _per_seed(base_curve).values()]).value
    threshold = SPEED_THRESHOLD_X_BASELINE * base_final if math.isfinite(base_final) else NAN
    out = {}
    for arm in arms:
        curve = by_arm[arm]
        budget = budget_kimg.get(arm, NAN)
        g = gate(curve, budget, final_precision.get(arm, NAN), real_precision)
        if arm == baseline:
            deltas, stab, ratio = [], None, None
        else:
            scale = budget_scale(budget, base_budget)
            deltas = paired_ratios(curve, base_curve, scale)
            stab = stability(deltas, budget / scale, scale)
            ratio = paired_speed(curve, base_curve, threshold) if math.isfinite(threshold) else None
        out[arm] = ArmTrajectory(arm, g, deltas, stab, speed(curve, threshold), ratio)
    return out


def _carry_diverged_forward(fid: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """A diverged run keeps its last scored FID for the rest of the budget (its generator makes
    no better samples after diverging), so it stays in the pairs instead of silently dropping out
    of the later snapshots."""
    diverged = runs[runs["status"] == "diverged"]
    grid = sorted(fid["kimg"].unique())
    extra = []
    for arm, seed in zip(diverged["arm"], diverged["seed"], strict=True):
        rows = fid[(fid["arm"] == arm) & (fid["seed"] == seed)].sort_values("kimg")
        if rows.empty:
            continue
        last_kimg, last_value = float(rows["kimg"].iloc[-1]), float(rows["value"].iloc[-1])
        arm_grid = sorted(fid[fid["arm"] == arm]["kimg"].unique()) or grid
        extra += [
            {"arm": arm, "seed": seed, "kimg": k, "value": last_value}
            for k in arm_grid
            if k > last_kimg
        ]
    return pd.concat([fid, pd.DataFrame(extra)], ignore_index=True) if extra else fid


def for_results(results) -> dict[str, ArmTrajectory]:
    """The trajectories of an AblationResults (dcgan.results): primary FID at every snapshot."""
    curves = results.curves
    fid = curves[curves["metric"] == "fid"][["arm", "seed", "kimg", "value"]].copy()
    fid["kimg"] = pd.to_numeric(fid["kimg"], errors="coerce")
    fid["value"] = pd.to_numeric(fid["value"], errors="coerce")
    fid = fid.dropna()
    arms = list(dict.fromkeys([*results.arms, *results.runs["arm"]]))
    runs = results.runs
    fid = _carry_diverged_forward(fid, runs)
    budget = {}
    for arm in arms:
        rows = runs[runs["arm"] == arm]
        kimg = (
            pd.to_numeric(rows.get("total_kimg"), errors="coerce") if "total_kimg" in rows else None
        )
        if kimg is not None and kimg.notna().any():
            budget[arm] = float(kimg.max())
        else:  # the furthest snapshot any seed reached
            seen = fid[fid["arm"] == arm]["kimg"]
            budget[arm] = float(seen.max()) if len(seen) else NAN
    precision = curves[curves["metric"] == "precision"]
    final_precision = {}
    for arm in arms:
        rows = precision[precision["arm"] == arm]
        if len(rows):
            last = rows.sort_values("step").groupby("seed")["value"].last()
            final_precision[arm] = float(pd.to_numeric(last, errors="coerce").mean())
    real = (results.floor or {}).get("precision", NAN)
    real = float(real) if real is not None else NAN
    return analyse_trajectories(fid, arms, results.baseline, budget, final_precision, real)


# ---- a second feature space must agree ----------------------------------------------------
def second_space_ratio(runs: pd.DataFrame, arm: str, baseline: str, column: str) -> LogInterval:
    """arm / baseline of a final score in another feature space (e.g. fid_randcnn), paired by
    seed over runs that completed in both arms."""
    done = runs[runs["status"] == "completed"]
    if column not in done:
        return LogInterval(NAN, NAN, NAN, 0)
    a = done[done["arm"] == arm].set_index("seed")[column]
    b = done[done["arm"] == baseline].set_index("seed")[column]
    common = a.index.intersection(b.index)
    ratios = pd.to_numeric(a[common], errors="coerce") / pd.to_numeric(b[common], errors="coerce")
    return log_t_interval(ratios.to_numpy(float))


def spaces_agree(label: str, second: LogInterval) -> bool | None:
    """A better/worse verdict stands only if the second space's ratio points the same way
    (None: the second space was not scored)."""
    if second.n == 0 or not math.isfinite(second.value) or label not in ("better", "worse"):
        return None
    return (second.value < 1) == (label == "better")
