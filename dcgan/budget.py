"""Choose a profile's training budget from a long pilot, by a rule declared before looking.

The pilot (`dcgan ablate SPEC --profile pilot`: every arm at 320 kimg, 2 seeds, a scored
snapshot every 16 kimg) is read back from the store and cut at every snapshot B. A budget B
qualifies when

  TRAINED    the baseline passes the trained-enough gate of dcgan.report.trajectory at B and
             at every later pilot snapshot: its best-so-far FID (geometric mean over seeds)
             fell by less than 50% over the last quarter (past the fast early phase), and
             its precision (mean over seeds, where the pilot scored it) is at least 10% of
             the real-vs-real precision (a baseline that never trains has a flat FID too);
  STABLE     every arm-vs-baseline difference the pilot resolves at B (paired 95% t-interval on
             the log FID ratio excludes 1) has the same sign at the pilot's full budget.

The chosen budget is the smallest qualifying B. A pilot cut at B is the run a budget of B
would train only when nothing depends on the total length (constant learning rates): specs
whose arms decay the learning rate over the budget get the caveat printed beside their table.
If no B qualifies, the command says so; a profile must then not pretend to be trained.

`python -m dcgan choose-budget SPEC` prints the table and writes docs/pilot/SPEC.md and
docs/img/pilot-SPEC.png (FID against kimg per arm, every seed).

Over 400 lines on purpose: the rule, the pilot it reads and the page it writes stay in one
module, so the page states exactly the rule the code applied.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from .config import planned_kimg
from .report import trajectory as tr

CONVERGED_MAX_IMPROVEMENT = tr.GATE_MAX_IMPROVEMENT
WINDOW = tr.GATE_WINDOW
RULE = (
    f"the smallest pilot snapshot B at which (1) the baseline's best-so-far FID (geometric mean "
    f"over seeds) fell by less than {CONVERGED_MAX_IMPROVEMENT:.0%} over the last "
    f"{WINDOW:.0%} of B and its precision (mean over seeds) is at least "
    f"{tr.GATE_MIN_PRECISION_OF_REAL:.0%} of the real-vs-real precision, at B and every later "
    f"budget, and (2) every arm-vs-baseline difference resolved at B (paired 95% "
    f"t-interval on the log FID ratio excludes 1) has the same sign at the pilot's full budget"
)


@dataclass(frozen=True)
class Candidate:
    kimg: float
    baseline_fid: float  # best-so-far, geometric mean over seeds
    improvement: float  # over the last quarter of this budget
    resolved: list[tuple[str, str]]  # (arm, direction) resolved at this budget
    flipped: list[str]  # arms resolved here whose sign differs at the full budget
    precision: float = math.nan  # the baseline's, mean over seeds (NaN: not scored)
    min_precision: float = math.nan  # the gate's floor: 10% of real-vs-real

    @property
    def converged(self) -> bool:
        return math.isfinite(self.improvement) and self.improvement < CONVERGED_MAX_IMPROVEMENT

    @property
    def on_manifold(self) -> bool:
        """The gate's precision half; unknown (not scored) passes, as in the report's gate."""
        return not (math.isfinite(self.precision) and self.precision < self.min_precision)

    @property
    def trained(self) -> bool:
        return self.converged and self.on_manifold

    @property
    def qualifies(self) -> bool:
        return self.trained and not self.flipped


def _scale(
    fid: pd.DataFrame, arm: str, baseline: str, budgets: dict[str, float] | None = None
) -> float:
    """The arm's budget over the baseline's: an arm planned for more images (batch 512 at equal
    steps) is paired at the same step, as in the report (trajectory). budgets: each arm's
    planned kimg (a diverged run stops early, so the curves' last snapshots are a fallback)."""
    planned = budgets or {}

    def budget(name: str) -> float:
        return planned.get(name, float(fid[fid["arm"] == name]["kimg"].max()))

    return tr.budget_scale(budget(arm), budget(baseline))


def candidates(
    fid: pd.DataFrame,
    arms: list[str],
    baseline: str,
    precision: pd.DataFrame | None = None,
    real_precision: float = math.nan,
    budgets: dict[str, float] | None = None,
) -> list[Candidate]:
    """fid (and precision): long form arm, seed, kimg, value (every snapshot of the pilot)."""
    floor = tr.precision_floor(real_precision)
    base_precision = (
        precision[precision["arm"] == baseline].groupby("kimg")["value"].mean()
        if precision is not None and len(precision)
        else pd.Series(dtype=float)
    )
    base = fid[fid["arm"] == baseline]
    bsf = tr.best_so_far_curve(base).dropna()
    if bsf.empty:
        return []
    deltas = {
        a: {
            d.kimg: d.ratio
            for d in tr.paired_ratios(fid[fid["arm"] == a], base, _scale(fid, a, baseline, budgets))
        }
        for a in arms
        if a != baseline
    }
    full = {a: (d[max(d)] if d else None) for a, d in deltas.items()}
    out = []
    for kimg in bsf.index:
        before = bsf[bsf.index <= kimg * (1 - WINDOW) + 1e-9]
        improvement = 1 - bsf[kimg] / before.iloc[-1] if len(before) else math.nan
        resolved, flipped = [], []
        for arm, by_kimg in deltas.items():
            ratio = by_kimg.get(kimg)
            if ratio is None or ratio.direction is None:
                continue
            resolved.append((arm, ratio.direction))
            end = full[arm]
            if end is None or (ratio.value < 1) != (end.value < 1):
                flipped.append(arm)
        at = base_precision[abs(base_precision.index - kimg) < 1e-6]
        prec = float(at.iloc[0]) if len(at) else math.nan
        out.append(
            Candidate(float(kimg), float(bsf[kimg]), improvement, resolved, flipped, prec, floor)
        )
    return out


@dataclass(frozen=True)
class ArmEnd:
    """An arm against the baseline at the pilot's full budget, and across the whole pilot."""

    arm: str
    kimg: float  # the last baseline snapshot both reach
    fid: dict[int, float]  # per seed, there (log-interpolated between the arm's snapshots)
    baseline_fid: dict[int, float]  # per seed, there
    ratio: tr.LogInterval  # arm / baseline there, paired by seed
    lower_everywhere: int  # snapshots at which the arm is below the baseline in every seed
    higher_everywhere: int  # ... above it in every seed
    snapshots: int


def arms_at_end(
    fid: pd.DataFrame, arms: list[str], baseline: str, budgets: dict[str, float] | None = None
) -> list[ArmEnd]:
    """What a reader asks of a pilot beside its budget: does each arm's sign hold throughout?"""
    base = fid[fid["arm"] == baseline]
    out = []
    for arm in arms:
        if arm == baseline:
            continue
        by_kimg = tr.seed_ratios(fid[fid["arm"] == arm], base, _scale(fid, arm, baseline, budgets))
        if not by_kimg:
            continue
        end = max(by_kimg)
        base_end = {int(r.seed): float(r.value) for r in base.itertuples() if abs(r.kimg - end) < 1e-6}  # fmt: skip
        out.append(
            ArmEnd(
                arm=arm,
                kimg=end,  # the arm's FID there is interpolated when it has no snapshot at `end`
                fid={s: r * base_end[s] for s, r in by_kimg[end].items() if s in base_end},
                baseline_fid=base_end,
                ratio=tr.log_t_interval(list(by_kimg[end].values())),
                lower_everywhere=sum(all(r < 1 for r in v.values()) for v in by_kimg.values()),
                higher_everywhere=sum(all(r > 1 for r in v.values()) for v in by_kimg.values()),
                snapshots=len(by_kimg),
            )
        )
    return out


def _end_table(ends: list[ArmEnd]) -> str:
    lines = [
        "| arm | FID per seed at the end | baseline's | ratio [95% t-interval], n | "
        "below the baseline in every seed | above it in every seed |",
        "|---|---|---|---|---|---|",
    ]
    for e in ends:
        ci = f" [{e.ratio.lo:.2f}, {e.ratio.hi:.2f}]" if e.ratio.has_ci else ""
        lines.append(
            f"| {e.arm} | {', '.join(f'{v:.1f}' for _, v in sorted(e.fid.items())) or 'not scored at the end'}"
            f" | {', '.join(f'{v:.1f}' for _, v in sorted(e.baseline_fid.items()))} | {e.ratio.value:.2f}x{ci}, n = {e.ratio.n} | "
            f"{e.lower_everywhere} of {e.snapshots} snapshots | {e.higher_everywhere} of {e.snapshots} |"
        )  # fmt: skip
    return "\n".join(lines)


def choose(cands: list[Candidate]) -> Candidate | None:
    """The smallest qualifying budget after which the baseline never falls back into the fast
    phase (a noisy single snapshot does not choose the budget)."""
    for i, c in enumerate(cands):
        if c.qualifies and all(later.trained for later in cands[i:]):
            return c
    return None


def _table(cands: list[Candidate], chosen: Candidate | None) -> str:
    lines = [
        "| budget (kimg) | baseline best FID | fall over last quarter | past fast phase | "
        "baseline precision | resolved at B | sign flips by 320 kimg | qualifies |",
        "|---:|---:|---:|:---:|---:|---|---|:---:|",
    ]
    for c in cands:
        mark = " **chosen**" if chosen is not None and c.kimg == chosen.kimg else ""
        resolved = ", ".join(f"{a} {d}" for a, d in c.resolved) or "none"
        lines.append(
            f"| {c.kimg:g}{mark} | {c.baseline_fid:.1f} | "
            + (f"{c.improvement:.1%}" if math.isfinite(c.improvement) else "n/a")
            + f" | {'yes' if c.converged else 'no'} | "
            + (f"{c.precision:.2f}" if math.isfinite(c.precision) else "n/a")
            + ("" if c.on_manifold else " (below the gate)")
            + f" | {resolved} | "
            f"{', '.join(c.flipped) or 'none'} | {'yes' if c.qualifies else 'no'} |"
        )
    return "\n".join(lines)


def _plot(fid: pd.DataFrame, arms: list[str], baseline: str, out: Path) -> None:
    from matplotlib.figure import Figure

    from .report import plots

    palette = plots.arm_palette(arms)
    styles = ["-", "--", "-.", ":"]
    fig = Figure(figsize=(10.5, 4.2))
    ax = fig.subplots()
    for i, arm in enumerate(arms):
        for j, (_seed, rows) in enumerate(fid[fid["arm"] == arm].groupby("seed")):
            rows = rows.sort_values("kimg")
            ax.plot(
                rows["kimg"],
                rows["value"],
                color=palette[arm],
                ls=styles[i % len(styles)],
                lw=2.0 if arm == baseline else 1.2,
                marker="os^vDP"[i % 6],
                ms=3,
                label=f"{arm}" if j == 0 else None,
            )
    ax.set_yscale("log")
    ax.set(xlabel="kimg (thousands of images seen)", ylabel="FID (mnist features, 1k fakes)")
    ax.set_title("Pilot: FID against training, every seed (thick: baseline)")
    ax.legend(fontsize=7, ncol=2, frameon=False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)


class Pilot(NamedTuple):
    spec: object  # AblationSpec
    fid: pd.DataFrame  # arm, seed, kimg, value: the primary FID at every snapshot
    done: pd.DataFrame  # arm, seed, status of every finished run
    precision: pd.DataFrame  # arm, seed, kimg, value (empty where the pilot did not score it)
    real_precision: float  # real-vs-real precision (the gate's reference)
    budgets: dict[str, float]  # each arm's planned kimg


def pilot_fid(name: str, profile: str, storage_url: str | None, paths) -> Pilot:
    """A pilot read from the store: FID and precision at every snapshot, run statuses.

    Read from the trials themselves (arm, seed, config and FID curve are on each), not
    re-planned from the spec, so a pilot stays readable when run identities change later."""
    import optuna
    from optuna.trial import TrialState

    from . import store
    from .locations import storage_url as resolve_storage
    from .locations import study_name
    from .specs import load_spec

    spec = load_spec(name)
    url = resolve_storage(storage_url, paths)
    storage = store.open_storage(url)
    study = optuna.load_study(study_name=study_name(spec, profile, None), storage=storage)
    prof = spec.profile(profile)
    primary = (prof.extractors or (prof.extractor,))[0]
    rows, statuses, precision, real, budgets = [], [], [], [], {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        attrs = trial.user_attrs
        statuses.append({"arm": attrs["arm"], "seed": attrs["seed"], "status": attrs.get("status")})
        rows += [
            {"arm": attrs["arm"], "seed": attrs["seed"], "kimg": kimg, "value": value}
            for kimg, value in fid_points(attrs, primary)
        ]
        precision += [
            {"arm": attrs["arm"], "seed": attrs["seed"], "kimg": kimg, "value": value}
            for _, kimg, metric, extractor, value in attrs.get("score_rows") or []
            if metric == "precision" and extractor == primary and kimg is not None
        ]
        real.append((attrs.get("floor") or {}).get(f"precision_{primary}", math.nan))
        cfg = attrs.get("config") or {}
        if cfg.get("batch_size") and cfg.get("kimg"):
            kimg = planned_kimg(cfg.get("steps"), cfg["kimg"], cfg["batch_size"])
            budgets[attrs["arm"]] = max(budgets.get(attrs["arm"], 0.0), kimg)
    columns = ["arm", "seed", "kimg", "value"]
    return Pilot(
        spec,
        pd.DataFrame(rows, columns=columns).dropna(),
        pd.DataFrame(statuses, columns=["arm", "seed", "status"]),
        pd.DataFrame(precision, columns=columns).dropna(),
        float(pd.Series(real, dtype=float).median()) if real else math.nan,
        budgets,
    )


def fid_points(attrs: dict, extractor: str) -> list[tuple[float, float]]:
    """(kimg, FID) of a stored run: from its score records when it has them (kimg is on each),
    else from `fid_curve`, keyed by images seen (`curve_unit` = "images") or, in trials stored
    before that marker, by step."""
    rows = attrs.get("score_rows") or []
    points = [(k, v) for _, k, m, e, v in rows if m == "fid" and e == extractor and k is not None]
    if points:
        return points
    if attrs.get("curve_unit") == "images":
        per = 1 / 1000
    else:
        per = attrs["config"]["batch_size"] / 1000
    return [(x * per, v) for x, v in attrs.get("fid_curve", []) if x is not None]


def missing_runs(spec, profile: str, done: pd.DataFrame) -> list[tuple[str, int]]:
    """(arm, seed) of the pilot's planned runs that have not finished (execution replicates
    are not part of a pilot's rule)."""
    finished = {(str(a), int(s)) for a, s in zip(done["arm"], done["seed"], strict=True)}
    planned = [(r.arm, r.seed) for r in spec.plan(profile) if r.execution == 0]
    return [key for key in planned if key not in finished]


def _incomplete(spec, profile: str, missing: list, planned: int) -> str:
    runs = ", ".join(f"{arm} seed {seed}" for arm, seed in missing)
    return (
        f"pilot of {spec.name!r} ({profile}) is incomplete: {planned - len(missing)} of {planned} "
        f"planned runs finished; not finished: {runs}. Finish it with `dcgan ablate {spec.name} "
        f"--profile {profile}` (it resumes), or pass --partial to write a page marked partial."
    )


def command_choose_budget(argv: list[str] | None = None) -> int:
    from .cli_args import add_choose_budget_arguments
    from .locations import Paths, results_dir

    parser = argparse.ArgumentParser(
        prog="dcgan choose-budget",
        description="Read a spec's pilot from the store and choose its budget by the declared "
        "rule: " + RULE + ".",
    )
    add_choose_budget_arguments(parser)
    args = parser.parse_args(argv)

    pilot = pilot_fid(args.name, args.profile, args.storage, Paths(results_dir(args.results)))
    spec, fid, done = pilot.spec, pilot.fid, pilot.done
    missing = missing_runs(spec, args.profile, done)
    planned = len(done) + len(missing)
    if missing and not args.partial:
        print(
            f"dcgan choose-budget: {_incomplete(spec, args.profile, missing, planned)}",
            file=sys.stderr,
        )
        return 2
    partial = (
        f"**Partial pilot**: {_incomplete(spec, args.profile, missing, planned)}\n\n"
        if missing
        else ""
    )
    arms = [a for a in spec.arms if a in set(fid["arm"])]
    cands = candidates(
        fid, arms, spec.baseline, pilot.precision, pilot.real_precision, pilot.budgets
    )
    chosen = choose(cands)
    table = _table(cands, chosen)
    decays = sorted(
        {
            a.name
            for a in spec.arms.values()
            if a.overrides.get("lr_schedule", "constant") != "constant"
        }
    )
    caveat = (
        f"\n\nCaveat: {', '.join(decays)} decay the learning rate over the whole budget, so a "
        f"pilot cut at B is not the run a budget of B trains; their rows are indicative only."
        if decays
        else ""
    )
    verdict = (
        f"Chosen budget: **{chosen.kimg:g} kimg**."
        if chosen
        else "**No budget up to the pilot's qualifies**: a profile at any of these budgets is "
        "not trained enough by this rule, and its report must say so."
    )
    ends = arms_at_end(fid, arms, spec.baseline, pilot.budgets)
    ends_kimg = ", ".join(sorted({f"{e.kimg:g} kimg" for e in ends})) or "no arm paired"
    page = (
        f"# Pilot: `{spec.name}`\n\n"
        f"Reproduce: `python -m dcgan ablate {spec.name} --profile {args.profile}` then "
        f"`python -m dcgan choose-budget {spec.name}`.\n\n{partial}"
        f"{len(done)} runs ({len(arms)} arms x seeds {sorted(set(done['seed']))}), "
        f"{len(fid)} scored snapshots under `fid_mnist_1k`. Rule: {RULE}.\n\n"
        f"{verdict}{caveat}\n\n{table}\n\n"
        f"At the pilot's end ({ends_kimg}), every arm against the baseline (`{spec.baseline}`), "
        f"paired by seed; the last two columns count the pilot's snapshots at which the arm is "
        f"below (above) the baseline in every seed:\n\n{_end_table(ends)}\n\n"
        f"![FID against kimg](../img/pilot-{spec.name}.png)\n"
    )
    out = args.docs / "pilot" / f"{spec.name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    _plot(fid, arms, spec.baseline, args.docs / "img" / f"pilot-{spec.name}.png")
    print(page)
    print(f"wrote {out}")
    return 0
