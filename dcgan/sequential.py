"""Sequential seeds: add seeds only while a comparison is undecided, with the error rate controlled.

The rule (`sequential_decision`) is a pure function of the per-seed paired log ratios
log(arm / baseline) of the primary family, in seed order:

- Looks at n = 5, 7, 10 seeds (`SequentialRule.looks`).
- Difference: a group-sequential test of the paired t statistic. Its nominal p-value threshold at
  each look is calibrated by simulation of the t statistics themselves (their joint null
  distribution does not depend on the noise's scale, so the calibration is exact for normal
  log ratios up to Monte Carlo error): Pocock (one threshold for every look) or O'Brien-Fleming
  (thresholds that widen with n). Across the family, Holm's step-down with level recycling
  (Maurer & Bretz 2013): with M hypotheses not yet rejected, each is tested at level alpha / M;
  a rejection frees its share for the others at the same and later looks.
- Equivalence: TOST at every look against the margin, each one-sided test at the one-sided
  group-sequential threshold for alpha / m (Bonferroni over the family's m arms).
- A difference no larger than the execution spread (stats.execution_spread) is not resolved.
- A comparison stops when it is decided (better, worse, equivalent); at the last look the
  undecided ones are "can't tell". The driver stops adding seeds when every one is decided.

`run_sequential` is the driver behind `dcgan ablate NAME --sequential`: it calls
`runner.run_ablation` with growing seed lists. Runs are content-addressed, so seeds added later
with `--seeds` re-use every run the sequential driver trained, and vice versa.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

from dcgan.report.stats import (
    ALPHA,
    BETTER,
    CANT_TELL,
    DEFAULT_MARGIN,
    EQUIVALENT,
    WORSE,
    log_margin,
    t_sf,
)

CONTINUE = "continue"  # undecided, more seeds to come
LOOKS = (5, 7, 10)
KINDS = ("pocock", "obrien_fleming")
N_SIM = 200_000
SIM_SEED = 20_240_614


@dataclass(frozen=True)
class SequentialRule:
    looks: tuple[int, ...] = LOOKS
    alpha: float = ALPHA
    kind: str = "pocock"
    margin: float = DEFAULT_MARGIN  # equivalence margin on the ratio scale

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r}: choose one of {', '.join(KINDS)}")
        if not self.looks or list(self.looks) != sorted(set(self.looks)) or self.looks[0] < 2:
            raise ValueError(f"looks {self.looks!r} must be increasing seed counts >= 2")

    @property
    def max_n(self) -> int:
        return self.looks[-1]

    def describe(self) -> str:
        name = {"pocock": "Pocock", "obrien_fleming": "O'Brien-Fleming"}[self.kind]
        looks = ", ".join(map(str, self.looks))
        return (
            f"{name} group-sequential boundaries on the paired t statistic of log FID ratios, "
            f"looks at n = {looks}, family-wise alpha {self.alpha:g} (Holm step-down with "
            f"recycling); equivalence by TOST within ±{self.margin:.0%} at the one-sided boundary"
        )


@lru_cache(maxsize=8)
def _null_pvalues(looks: tuple[int, ...], sides: int) -> np.ndarray:
    """p-values of the t statistic at each look for N_SIM seeded standard-normal sequences."""
    rng = np.random.default_rng(SIM_SEED)
    x = rng.standard_normal((N_SIM, looks[-1]))
    p = np.empty((N_SIM, len(looks)))
    for k, n in enumerate(looks):
        head = x[:, :n]
        t = head.mean(axis=1) / (head.std(axis=1, ddof=1) / math.sqrt(n))
        p[:, k] = (
            2 * scipy_stats.t.sf(np.abs(t), n - 1) if sides == 2 else scipy_stats.t.sf(t, n - 1)
        )
    p.setflags(write=False)
    return p


@lru_cache(maxsize=256)
def boundaries(
    looks: tuple[int, ...], level: float, kind: str = "pocock", sides: int = 2
) -> tuple[float, ...]:
    """Nominal p-value thresholds per look so that P(any look crosses | H0) = level.

    Two-sided p = 2 P(T > |t|); one-sided p = P(T > t). Calibrated on the simulated t
    statistics of N_SIM seeded standard-normal sequences, so a rule's type-I error is `level`
    for normal data up to Monte Carlo error (about ±2% relative at level 0.01).
    """
    if kind not in KINDS or sides not in (1, 2):
        raise ValueError(f"kind {kind!r}, sides {sides!r}")
    if len(looks) == 1:  # one look: the fixed test, exactly
        return (float(level),)
    p = _null_pvalues(tuple(looks), sides)
    if kind == "pocock":
        threshold = float(np.quantile(p.min(axis=1), level))
        return (threshold,) * len(looks)
    # O'Brien-Fleming: reject at look k when z_k >= C sqrt(n_max / n_k), z_k the normal
    # quantile of the look's p-value; C chosen so the crossing probability is `level`.
    n_max = looks[-1]
    z = scipy_stats.norm.isf(p / sides)
    scaled = z * np.sqrt(np.asarray(looks) / n_max)
    c = float(np.quantile(scaled.max(axis=1), 1 - level))
    return tuple(float(sides * scipy_stats.norm.sf(c * math.sqrt(n_max / n))) for n in looks)


def _t_p(d: np.ndarray, shift: float = 0.0, sides: int = 2, upper: bool = True) -> float:
    n = d.size
    mean, sd = float(d.mean()) - shift, float(d.std(ddof=1))
    if sd == 0:
        if sides == 2:
            return 1.0 if mean == 0 else 0.0
        return (0.0 if mean > 0 else 1.0) if upper else (0.0 if mean < 0 else 1.0)
    t = mean / (sd / math.sqrt(n))
    if sides == 2:
        return 2 * t_sf(abs(t), n - 1)
    return t_sf(t, n - 1) if upper else t_sf(-t, n - 1)


@dataclass(frozen=True)
class LookRecord:
    n: int
    arm: str
    p: float  # two-sided paired t p-value at this look
    threshold: float  # the boundary it was held to (after Holm recycling)
    tost_p: float  # max of the two one-sided p-values
    tost_threshold: float
    decision: str


@dataclass(frozen=True)
class SequentialOutcome:
    rule: SequentialRule
    decisions: dict[str, str]  # arm -> better | worse | equivalent | can't tell | continue
    stopped_at: dict[str, int | None]  # n at which the arm was decided
    history: tuple[LookRecord, ...] = field(default=())
    looks_done: tuple[int, ...] = ()

    @property
    def done(self) -> bool:
        return all(d != CONTINUE for d in self.decisions.values())

    @property
    def next_n(self) -> int | None:
        """The seed count of the next look, or None when no more seeds are needed."""
        if self.done:
            return None
        done = self.looks_done[-1] if self.looks_done else 0
        later = [n for n in self.rule.looks if n > done]
        return later[0] if later else None


def sequential_decision(
    log_ratios: Mapping[str, Sequence[float]],
    rule: SequentialRule = SequentialRule(),
    spread: float = float("nan"),
) -> SequentialOutcome:
    """Replay the rule over the looks the data reach; pure and deterministic.

    log_ratios: arm -> per-seed log(arm / baseline) in seed order (failures already scored by
    the failure rule). Each look uses the first n values. An arm with fewer values than a look
    stays "continue" from that look on. spread: execution spread (rms log ratio); a difference
    no larger is not resolved (NaN: not measured).
    """
    arms = list(log_ratios)
    data = {a: np.asarray(log_ratios[a], float) for a in arms}
    m = len(arms)
    decisions = {a: CONTINUE for a in arms}
    stopped: dict[str, int | None] = {a: None for a in arms}
    history: list[LookRecord] = []
    looks_done: list[int] = []
    rejected = 0
    bound = log_margin(rule.margin)
    eq_threshold = boundaries(rule.looks, rule.alpha / m, rule.kind, 1) if m else ()
    for k, n in enumerate(rule.looks):
        ready = [a for a in arms if decisions[a] == CONTINUE and data[a].size >= n]
        if not ready:  # every arm decided, or none has the seeds this look needs
            break
        looks_done.append(n)
        p = {a: _t_p(data[a][:n]) for a in ready}
        tost_p = {
            a: max(
                _t_p(data[a][:n], -bound, 1, upper=True),  # H0: mean <= -bound
                _t_p(data[a][:n], bound, 1, upper=False),  # H0: mean >= +bound
            )
            if math.isfinite(bound)
            else float("nan")
            for a in ready
        }
        threshold_used: dict[str, float] = {}
        # Holm step-down with recycling: test the smallest p at alpha / (m - rejected) first.
        pending = sorted(ready, key=lambda a: p[a])
        while pending:
            level = rule.alpha / (m - rejected)
            threshold = boundaries(rule.looks, level, rule.kind, 2)[k]
            a = pending[0]
            threshold_used[a] = threshold
            mean = float(data[a][:n].mean())
            resolvable = not (math.isfinite(spread) and abs(mean) <= spread)
            if p[a] <= threshold and resolvable:
                decisions[a] = BETTER if mean < 0 else WORSE
                stopped[a] = n
                rejected += 1
                pending.pop(0)
                continue
            for b in pending:  # step-down stops: the rest are held at the current level
                threshold_used[b] = threshold
            break
        for a in ready:
            if decisions[a] == CONTINUE and tost_p[a] <= eq_threshold[k]:
                decisions[a] = EQUIVALENT
                stopped[a] = n
            if decisions[a] == CONTINUE and n == rule.max_n:
                decisions[a] = CANT_TELL
            history.append(
                LookRecord(
                    n,
                    a,
                    p[a],
                    threshold_used.get(a, float("nan")),
                    tost_p[a],
                    eq_threshold[k],
                    decisions[a],
                )  # fmt: skip
            )
    return SequentialOutcome(rule, decisions, stopped, tuple(history), tuple(looks_done))


def seed_schedule(seeds: Sequence[int], n: int) -> list[int]:
    """The given seeds in order, then the next unused integers, n in all."""
    out = list(dict.fromkeys(int(s) for s in seeds))
    candidate = 0
    while len(out) < n:
        if candidate not in out:
            out.append(candidate)
        candidate += 1
    return out[:n]


def primary_log_ratios(analysis) -> dict[str, list[float]]:
    """arm -> per-seed log(arm / baseline) of the primary family, in seed order."""
    out = {}
    for arm in analysis.family:
        c = analysis.differences[arm]["fid"]
        if c.scale == "log":
            out[arm] = list(np.log(np.asarray(c.pairs.arm) / np.asarray(c.pairs.reference)))
        else:
            out[arm] = []
    return out


def _storage_url(storage_url: str | None, paths) -> str:
    from .locations import storage_url as resolve_storage

    return resolve_storage(storage_url, paths)


def load_results(name: str, profile: str, seeds: list[int], data, storage_url, paths):
    """AblationResults for exactly these seeds, read from the store (trains nothing)."""
    import optuna

    from . import store
    from .collect import collect_results
    from .locations import study_name
    from .specs import load_spec

    spec = load_spec(name)
    storage = store.open_storage(_storage_url(storage_url, paths))
    study = optuna.load_study(study_name=study_name(spec, profile, data), storage=storage)
    return collect_results(spec, profile, study, storage, paths, seeds=seeds, data=data)


def run_sequential(
    name: str,
    profile: str = "cpu",
    *,
    seeds: list[int] | None = None,
    data: str | None = None,
    workers: int | None = None,
    storage_url: str | None = None,
    paths=None,
    rule: SequentialRule | None = None,
    report: bool = True,
    log=print,
    train: Callable | None = None,
    load: Callable | None = None,
) -> tuple[SequentialOutcome, Path | None]:
    """Train looks of growing seed lists until every comparison is decided or the last look.

    `train` and `load` default to runner.run_ablation and load_results (tests replace them).
    """
    from .report.stats import analyse
    from .runner import Paths, run_ablation
    from .specs import load_spec

    paths = paths or Paths()
    train = train or run_ablation
    load = load or load_results
    spec = load_spec(name)
    if rule is None:
        margin = getattr(spec, "equivalence_margin", None)
        rule = SequentialRule(margin=DEFAULT_MARGIN if margin is None else margin)
    pool = seed_schedule(seeds if seeds is not None else spec.profile(profile).seeds, rule.max_n)
    from .preflight import RunsFailed

    outcome = None
    results = None
    incomplete: RunsFailed | None = None
    for n in rule.looks:
        look_seeds = pool[:n]
        log(f"{name} [{profile}] sequential look at n={n}: seeds {look_seeds}")
        try:
            train(name, profile, seeds=look_seeds, data=data, workers=workers,
                  storage_url=storage_url, paths=paths, report=False, log=log)  # fmt: skip
            incomplete = None
        except RunsFailed as err:  # failed runs count (the failure rule); say so at the end
            log(f"  {err}")
            incomplete = err
        results = load(name, profile, look_seeds, data, storage_url, paths)
        analysis = analyse(results, margin=rule.margin)
        spread = analysis.execution.rms if analysis.execution else float("nan")
        outcome = sequential_decision(primary_log_ratios(analysis), rule, spread)
        for arm, decision in outcome.decisions.items():
            at = outcome.stopped_at[arm]
            log(f"  {arm}: {decision}" + (f" (decided at n={at})" if at else ""))
        if outcome.done:
            break
    page = None
    if report and results is not None:
        from .report import render_index, render_report

        page = render_report(results, paths.reports, sequential=outcome)
        try:
            from . import store
            from .collect import summaries

            storage = store.open_storage(_storage_url(storage_url, paths))
            render_index(summaries(storage, paths), paths.reports)
        except Exception as err:  # the index is a convenience; the report is written
            log(f"index not refreshed: {err}")
    if incomplete is not None:  # the command still fails, as `ablate` does, after the report
        incomplete.page = page
        raise incomplete
    return outcome, page
