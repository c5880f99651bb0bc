"""One self-contained HTML page per ablation, and an index linking them.

Pages embed every image as a data URI and need no JavaScript, so a page opens from disk (or an
e-mail attachment) with no external requests. Autoescaping is on: arm names, notes and spec
text are user input and always render as text.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from urllib.parse import quote

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from dcgan.atomic import atomic_write_text
from dcgan.report import fmt, plots, stats, trajectory, verdicts
from dcgan.results import AblationResults

TEMPLATES = Path(__file__).with_name("templates")
INDEX = "index.html"


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["data_uri"] = _data_uri
    env.globals |= {"fmt": fmt, "METRIC_LABEL": fmt.METRIC_LABEL, "MISSING": fmt.MISSING}
    return env


def page_name(name: str) -> str:
    """'<name>.html'; refuses names that would write outside out_dir, hide, or hit the index."""
    if (
        not name
        or name != Path(name).name
        or name.startswith(".")
        or "\\" in name
        or f"{name}.html" == INDEX
    ):
        raise ValueError(
            f"ablation name {name!r} cannot be a file name: it must not be empty, contain '/' "
            f"or '\\', start with '.', or be 'index'"
        )
    return f"{name}.html"


def _samples(results: AblationResults, arm: stats.ArmSummary) -> dict | None:
    """Final grid and progression for the arm's lowest finished seed that has grids."""
    runs = results.runs.set_index(["arm", "seed"])
    for seed in arm.done_seeds:
        frames = results.grids.get((arm.arm, seed))
        if frames:
            final_step, final_path = max(frames)
            run = runs.loc[(arm.arm, seed)]
            return {
                "seed": seed,
                "step": final_step,
                "fid": float(run["fid"]),
                "diverged": run["status"] == "diverged",
                "final": plots.sample_grid(final_path),
                "frames": plots.progression(frames),
            }
    return None


def _figures(
    results: AblationResults, arms: list[str], trajectories: dict
) -> dict[str, bytes | None]:
    curves = plots.finished_curves(results.curves, results.runs)
    return {
        "budget_ratios": plots.budget_ratios(trajectories, arms, plots.arm_palette(arms)),
        "final_scores": plots.final_scores(results.runs, arms, results.floor),
        "training_scores": plots.training_scores(curves, arms, plots.arm_palette(arms)),
        "losses": plots.losses(curves, results.runs, arms),
        "discriminator": plots.discriminator_outputs(curves, arms),
    }


def budget_verdicts(
    results: AblationResults, analysis: stats.Analysis, trajectories: dict, sequential=None
) -> dict[str, verdicts.ArmVerdict]:
    """The statistical verdict at the end of the budget, downgraded by the trained-enough gate
    and the stability rule (dcgan.report.trajectory): only a trained, stable difference is final."""
    out = {}
    base = trajectories.get(results.baseline)
    for arm, v in verdicts.arm_verdicts(analysis, sequential).items():
        if base is None or arm not in trajectories:
            out[arm] = v
            continue
        label, why = trajectory.qualify(v.label, trajectories[arm], base, results.conclusive)
        sentence = v.sentence + (f" Against the budget: {why}." if why else "")
        label, sentence = _second_space(results, arm, label, sentence)
        sentence += _ood_warning(results, arm)
        out[arm] = verdicts.ArmVerdict(label, sentence, v.statistics or v.label)
    return out


def _second_space(results: AblationResults, arm: str, label: str, sentence: str) -> tuple:
    """Every feature space but the primary: a better/worse verdict must point the same way in
    each, else the arm reads 'spaces disagree' (issue 12: two spaces must agree)."""
    primary = results.protocol.get("extractor")
    others = sorted(
        c.removeprefix("fid_")
        for c in results.runs.columns
        if c.startswith("fid_") and c not in ("fid_metric", f"fid_{primary}")
    )
    for space in others:
        if arm == results.baseline:
            continue
        ratio = trajectory.second_space_ratio(results.runs, arm, results.baseline, f"fid_{space}")
        if ratio.n == 0:
            continue
        ci = f" [{ratio.lo:.2f}, {ratio.hi:.2f}]" if ratio.has_ci else ""
        sentence += (
            f" In the {space} feature space: {ratio.value:.2f}x the baseline{ci}, n={ratio.n}."
        )
        if trajectory.spaces_agree(label, ratio) is False:
            label = "spaces disagree"
            sentence += f" The {space} space points the other way: no verdict."
    return label, sentence


def _ood_warning(results: AblationResults, arm: str) -> str:
    """A final score whose fakes lie outside the real features' norm range measures feature
    inflation, not quality (docs/metrics.md): say so beside the verdict."""
    from dcgan.metrics.ood import OOD_NORM_FRAC_LIMIT

    runs = results.runs
    if "ood_norm_frac" not in runs:
        return ""
    rows = runs[(runs["arm"] == arm) & runs["ood_norm_frac"].notna()]
    flagged = rows[pd.to_numeric(rows["ood_norm_frac"], errors="coerce") > OOD_NORM_FRAC_LIMIT]
    if flagged.empty:
        return ""
    return (
        f" Warning: out of distribution in {len(flagged)} of {len(rows)} seeds (more than "
        f"{OOD_NORM_FRAC_LIMIT:.0%} of fakes have a feature norm above the real 99th percentile):"
        " there FID measures feature inflation, not quality."
    )


SCORE_TABLE_METRICS = (
    "fid", "kid", "precision", "recall", "density", "coverage", "ood_norm_frac",
)  # fmt: skip
CLASS_METRICS = ("classes_covered", "class_kl")


def score_table(results: AblationResults, arms: list[str]) -> dict:
    """Every final score per arm and feature space (mean over scored seeds, with n): the columns
    come from the tidy table (`<metric>_<extractor>`), so a new metric or space shows up here."""
    runs = results.runs[results.runs["status"].isin(("completed", "diverged"))]
    spaces = sorted(
        {c.split("_")[-1] for c in runs.columns if c.startswith("fid_") and c != "fid_metric"}
    )
    columns = [(f"{m} ({e})", f"{m}_{e}") for e in spaces for m in SCORE_TABLE_METRICS]
    columns += [(m.replace("_", " "), m) for m in CLASS_METRICS]
    columns = [(label, c) for label, c in columns if c in runs and runs[c].notna().any()]
    rows = []
    for arm in arms:
        cells = []
        for _, c in columns:
            values = pd.to_numeric(runs[runs["arm"] == arm][c], errors="coerce").dropna()
            cells.append((float(values.mean()), len(values)) if len(values) else (float("nan"), 0))
        rows.append((arm, cells))
    return {"columns": [label for label, _ in columns], "rows": rows}


def _progress(analysis: stats.Analysis) -> tuple[int, int, list[tuple[str, int, str]]]:
    """(runs done, runs expected, [(arm, seed, status)] not done)."""
    unfinished = [(a.arm, seed, status) for a in analysis.arms for seed, status in a.unfinished]
    done = sum(len(a.done_seeds) for a in analysis.arms)
    return done, done + len(unfinished), unfinished


def summary(results: AblationResults) -> dict:
    """What the index shows for one ablation."""
    analysis = stats.analyse(results)
    done, expected, _ = _progress(analysis)
    by_arm = budget_verdicts(results, analysis, trajectory.for_results(results))
    return {
        "name": results.name,
        "question": results.question,
        "verdict": verdicts.overall_verdict(analysis, results.baseline, by_arm),
        "runs_done": done,
        "runs_expected": expected,
        "profile": results.profile,
    }


PROVENANCE_KEY = "provenance"  # setup entry collect fills from the runs' own records


def provenance(results: AblationResults) -> dict:
    """Where the runs trained, from their own records (`dcgan.environment.summarise`, put in
    setup by collect): a headline that flags a mixture of environments, one line per
    environment with its run count, the torch thread counts, and how many runs recorded none
    (shown as not recorded: never filled in from the machine rendering the page)."""
    summary = results.setup.get(PROVENANCE_KEY)
    if not isinstance(summary, dict):
        return {"mixed": False, "headline": "not recorded", "environments": [], "notes": []}
    envs = summary.get("environments", [])
    recorded = summary.get("runs", 0) - summary.get("not_recorded", 0)
    if not envs:
        headline = "not recorded" + (
            f" by any of the {summary['runs']} finished runs (trained before runs recorded it)"
            if summary.get("runs")
            else " (no finished runs yet)"
        )
    elif summary.get("mixed"):
        headline = f"runs come from {len(envs)} environments"
    else:
        headline = "one environment" + (
            f" for all {recorded} runs that recorded it" if recorded > 1 else ""
        )
    notes = []
    threads = summary.get("threads") or {}
    if threads:
        notes.append(
            "torch threads: "
            + ", ".join(f"{n} ({k} run{'s' * (k != 1)})" for n, k in threads.items())
        )
    if summary.get("not_recorded") and envs:
        n = summary["not_recorded"]
        notes.append(f"not recorded: {n} run{'s' * (n != 1)} (trained before runs recorded it)")
    if summary.get("partly_recorded"):
        n = summary["partly_recorded"]
        notes.append(
            f"partly recorded: {n} run{'s' * (n != 1)} resumed from a checkpoint that did not "
            "record where its earlier steps trained"
        )
    return {"mixed": bool(summary.get("mixed")), "headline": headline, "environments": envs,
            "notes": notes}  # fmt: skip


def _generated() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def render_report(
    results: AblationResults, out_dir: Path, *, in_progress: bool = False, sequential=None
) -> Path:
    """`in_progress`: a live page re-rendered while the ablation runs (it says so and reloads).
    `sequential`: the dcgan.sequential.SequentialOutcome that chose the seeds, if any: its
    decisions replace the fixed-n tests' and the page shows its looks."""
    path = Path(out_dir) / page_name(results.name)
    analysis = stats.analyse(results)
    names = [a.arm for a in analysis.arms]
    done, expected, unfinished = _progress(analysis)
    trajectories = trajectory.for_results(results)
    by_arm = budget_verdicts(results, analysis, trajectories, sequential)
    html = (
        _environment()
        .get_template("report.html.j2")
        .render(
            results=results,
            analysis=analysis,
            overall=verdicts.overall_verdict(analysis, results.baseline, by_arm),
            arm_verdicts=by_arm,
            claims=verdicts.claim_verdicts(results, analysis),
            figures=_figures(results, names, trajectories),
            trajectories=trajectories,
            all_scores=score_table(results, names),
            rules=trajectory.RULES,
            samples={a.arm: _samples(results, a) for a in analysis.arms},
            no_data=[a.arm for a in analysis.arms if not a.done_seeds],
            runs_done=done,
            runs_expected=expected,
            unfinished=unfinished,
            level=int(stats.LEVEL * 100),
            alpha=stats.ALPHA,
            stats=stats,
            sequential=sequential,
            failure_rule=stats.FAILURE_RULE,
            index=INDEX,
            generated=_generated(),
            in_progress=in_progress,
            provenance=provenance(results),
            setup={k: v for k, v in results.setup.items() if k != PROVENANCE_KEY},
        )
    )
    atomic_write_text(path, html)
    return path


def render_index(summaries: list[dict], out_dir: Path) -> Path:
    rows = [s | {"href": quote(page_name(s["name"]))} for s in summaries]
    html = _environment().get_template("index.html.j2").render(rows=rows, generated=_generated())
    path = Path(out_dir) / INDEX
    atomic_write_text(path, html)
    return path
