"""Store -> AblationResults (what a report renders) and -> a tidy CSV per ablation.

This is the only place that reads ablation results out of Optuna, so `dcgan report`
re-renders any ablation, finished or part done, without training anything.

Provenance: each finished run's own record of where it trained (its result's `provenance`,
from the store or, failing that, its run folder's result.json) goes into
`setup["provenance"]` as the set of environments across runs (`environment.summarise`); runs
that recorded none count as not recorded. The machine collecting the results is stamped
apart, as the one that rendered the report.

Over 400 lines on purpose: the one join of trials, score files, replicates and provenance into
AblationResults.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from . import environment, scores, store
from .atomic import atomic_write_bytes
from .results import CURVE_COLUMNS, RUN_COLUMNS, AblationResults
from .rundir import CURVES, RunDir, grid_step
from .specs import AblationSpec, load_spec


def collect_results(
    spec: AblationSpec,
    profile: str,
    study: optuna.Study,
    storage,
    paths,
    seeds: list[int] | None = None,
    data: str | None = None,
) -> AblationResults:
    planned = spec.plan(profile, seeds, data)
    prof = spec.profile(profile)
    grouped = store.trials_by_key(study)
    artifact_dir = Path(paths.artifacts)
    runs, curves, grids = [], [], {}
    provenance: list[dict | None] = []  # one per finished run: where it trained, if recorded
    protocol: dict = {}
    floor: dict | None = None
    replicates = [r for r in planned if r.execution]
    planned = [r for r in planned if not r.execution]
    for run in planned:
        trials = grouped.get((run.arm, run.seed, run.config.hash()), [])
        done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.number)
        row = dict.fromkeys(RUN_COLUMNS)
        row.update(
            arm=run.arm, seed=run.seed, is_baseline=run.arm == spec.baseline, status=store.live_status(trials),
            config_hash=run.config.hash(), total_steps=run.config.total_steps,
            dtype="bf16" if run.config.amp == "bf16" else "fp32", batch_size=run.config.batch_size,
            total_kimg=run.config.total_kimg,
        )  # fmt: skip
        if done:
            trial = done[0]
            result = trial.user_attrs.get("result", {})
            run_dir = RunDir(Path(paths.runs) / run.config.hash())
            provenance.append(run_provenance(result, run_dir))
            rescored = _rescored(run_dir, prof)
            scores = rescored["final"] if rescored else trial.user_attrs.get("scores", {})
            row.update(
                status=result.get("status", "completed"),
                diverged_at_step=result.get("diverged_at_step"),
                divergence_reason=result.get("divergence_reason"),
                steps_done=result.get("steps_done"), wall_s=result.get("wall_s"),
                images_per_s=result.get("images_per_s"),
                final_d_loss=result.get("final_d_loss"), final_g_loss=result.get("final_g_loss"),
                final_d_real=result.get("final_d_real"), final_d_fake=result.get("final_d_fake"),
                **{k: scores.get(k) for k in ("fid", "kid", "kid_std", "modes", "fid_metric", "kid_metric", "protocol_id", "scored_step")},
                kl=scores.get("modes_kl", scores.get("kl")),
            )  # fmt: skip
            row.update(  # every other score: <metric>_<extractor> columns (dcgan.scores)
                {k: v for k, v in scores.items() if k not in row and k != "protocol"}
            )
            protocol = protocol or scores.get("protocol") or {}
            floor = floor or (rescored or {}).get("floor") or trial.user_attrs.get("floor") or None
            curves += _curve_rows(run, trial, storage, artifact_dir, rescored)
            grids[(run.arm, run.seed)] = _grid_files(trial, storage, artifact_dir)
        runs.append(row)
    score_columns = sorted({k for r in runs for k in r} - set(RUN_COLUMNS))
    runs_frame = pd.DataFrame(runs, columns=RUN_COLUMNS + score_columns)
    runs_frame = add_factor_columns(runs_frame, planned)
    executions = _executions(replicates, grouped, runs_frame)
    numeric = ("fid", "kid", "kid_std", "modes", "kl", "wall_s", "images_per_s")
    for col in (*numeric, "diverged_at_step", "steps_done", *score_columns):
        runs_frame[col] = pd.to_numeric(runs_frame[col], errors="coerce")
    baseline_cfg = planned[0].config
    notes = list(spec.notes)
    setup = {
        "data": baseline_cfg.data,
        "image size": f"{baseline_cfg.image_size}x{baseline_cfg.image_size}x{baseline_cfg.channels}",
        "profile": f"{profile}: {prof.description}",
        "seeds": ", ".join(str(s) for s in sorted({r.seed for r in planned})),
        "budget": _budget(planned),
        "base recipe": spec.base_recipe,
        "provenance": environment.summarise(provenance),  # where the runs trained
        "store": store.redact(str(getattr(storage, "url", ""))),
        **rendered_on(),
    }
    if study.user_attrs.get("hardware"):
        setup["hardware (recorded on the study)"] = study.user_attrs["hardware"]
    return AblationResults(
        name=page_name(spec.name, profile), question=spec.question, profile=profile, baseline=spec.baseline,
        arms={name: {**arm.overrides, **({"recipe": arm.recipe} if arm.recipe else {})} for name, arm in spec.arms.items()},
        sources=spec.sources, claims=spec.claims, runs=runs_frame,
        curves=pd.DataFrame(curves, columns=CURVE_COLUMNS), grids=grids, protocol=protocol,
        floor=floor, setup=setup, notes=notes, spec_path=str(spec.path), conclusive=prof.conclusive, executions=executions,
    )  # fmt: skip


def _executions(replicates, grouped, runs: pd.DataFrame) -> pd.DataFrame:
    """Per execution replicate: the main run's final primary FID beside the replicate's (same
    arm, seed and config but another torch thread count): what execution alone moves."""
    rows = []
    for rep in replicates:
        trials = grouped.get((rep.arm, rep.seed, rep.config.hash()), [])
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        main = runs[(runs["arm"] == rep.arm) & (runs["seed"] == rep.seed)]
        rows.append(
            {
                "arm": rep.arm,
                "seed": rep.seed,
                "threads": rep.config.threads,
                "fid_main": main["fid"].iloc[0] if len(main) else None,  # None: not scored yet
                "fid_replicate": (
                    done[0].user_attrs.get("scores", {}).get("fid") if done else None
                ),
                "status": store.live_status(trials),
            }
        )
    frame = pd.DataFrame(
        rows, columns=["arm", "seed", "threads", "fid_main", "fid_replicate", "status"]
    )
    for column in ("fid_main", "fid_replicate"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def page_name(ablation: str, profile: str) -> str:
    """reports/activation.html is the cpu profile (the default); others are suffixed."""
    return ablation if profile == "cpu" else f"{ablation}-{profile}"


def _budget(planned) -> str:
    by_arm = {}
    for run in planned:
        by_arm.setdefault(run.arm, run.config)
    parts = {
        f"{c.total_steps} steps x batch {c.batch_size} ({c.total_kimg:g} kimg)"
        for c in by_arm.values()
    }
    return "; ".join(sorted(parts))


def run_provenance(result: dict, run_dir: RunDir | Path | None = None) -> dict | None:
    """Where a finished run trained, as it recorded it: its stored result's provenance, else
    the one in its folder's result.json (when the folder is on this machine); None if neither
    (a run trained before runs recorded it). Never filled in from the machine reading it."""
    recorded = (result or {}).get("provenance")
    if recorded is None and run_dir is not None:
        recorded = RunDir.of(run_dir).provenance()
    return recorded if isinstance(recorded, dict) else None


def rendered_on() -> dict[str, str]:
    """The machine collecting the results now (the report's renderer), labelled as such: not
    where the runs trained (that is setup['provenance'])."""
    packages = ", ".join(f"{k} {v}" for k, v in environment.package_versions().items())
    return {
        "rendered on (this machine, not the runs')": environment.hardware(),
        "rendered with packages": packages,
        "rendered at git commit": environment.git_commit(),
    }


def _rescored(run_dir: Path | RunDir, prof) -> dict | None:
    """Scores re-read from the run folder, when it is on this machine and holds current-protocol
    records in every feature space of the profile: re-running evaluation alone (`dcgan score
    RUN_DIR --extractor ...`) updates the table and report without touching the store."""
    run_dir = RunDir.of(run_dir)
    if not run_dir.scores.exists():
        return None
    from .metrics.fidelity import read_scores, select

    extractors = list(prof.extractors or (prof.extractor,))
    records = [
        r
        for r in select(read_scores(run_dir))
        if r["metric"].startswith("modes")
        or prof.n_fake in (r["protocol"].get("n_fake"), r["protocol"].get("n"))
    ]
    if not all(
        any(r["metric"] == "fid" and r["extractor"] == e for r in records) for e in extractors
    ):
        return None
    return scores.summarise(records, extractors)


def _curve_rows(
    run, trial, storage, artifact_dir: Path, rescored: dict | None = None
) -> list[dict]:
    arm, seed, per_kimg = run.arm, run.seed, run.config.batch_size / 1000
    rows = []
    final = rescored["final"] if rescored else trial.user_attrs.get("scores") or {}
    primary = final.get("protocol", {}).get("extractor")
    score_rows = rescored["rows"] if rescored else trial.user_attrs.get("score_rows", [])
    for step, kimg, metric, extractor, value in score_rows:
        names = [f"{metric}_{extractor}"] + ([metric] if extractor == primary else [])
        rows += [
            {"arm": arm, "seed": seed, "step": step, "kimg": kimg, "metric": m, "value": value}
            for m in names
        ]
    legacy = ("fid", "kid") if not rows else ()  # runs scored before the one score record
    for metric in legacy:
        for step, value in trial.user_attrs.get(f"{metric}_curve", []):
            rows.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "step": step,
                    "kimg": step * per_kimg,
                    "metric": metric,
                    "value": value,
                }
            )
    path = _artifact_path(trial, storage, artifact_dir, CURVES)
    if path is not None:
        curves = json.loads(path.read_text())
        steps = curves.get("step", [])
        for metric, values in curves.items():
            if metric == "step":
                continue
            rows += [
                {
                    "arm": arm,
                    "seed": seed,
                    "step": s,
                    "kimg": s * per_kimg,
                    "metric": metric,
                    "value": v,
                }
                for s, v in zip(steps, values, strict=True)
            ]
    return rows


def _artifact_path(trial, storage, artifact_dir: Path, filename: str) -> Path | None:
    for meta in optuna.artifacts.get_all_artifact_meta(trial, storage=storage):
        if meta.filename == filename and (artifact_dir / meta.artifact_id).exists():
            return artifact_dir / meta.artifact_id
    return None


def _grid_files(trial, storage, artifact_dir: Path) -> list[tuple[int, Path]]:
    """FileSystemArtifactStore keeps each artifact as a file named by its id: link, don't copy."""
    grids = []
    for meta in optuna.artifacts.get_all_artifact_meta(trial, storage=storage):
        step = grid_step(meta.filename)  # artifacts keep the run folder's file name
        if step is not None:
            path = artifact_dir / meta.artifact_id
            if path.exists():
                grids.append((step, path))
    return sorted(grids)


def export_table(results: AblationResults, paths) -> Path:
    """One row per run, every column the report uses: for pandas, R or a spreadsheet."""
    out = (
        Path(paths.tables)
        / f"{results.name.removesuffix('-' + results.profile)}-{results.profile}.csv"
    )
    from .spec_checks import csv_safe

    frame = csv_safe(results.runs)  # no text cell can run as a spreadsheet formula
    frame.insert(0, "ablation", results.name)
    frame.insert(1, "profile", results.profile)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    atomic_write_bytes(out, buffer.getvalue().encode())
    write_run_index(results, paths)
    return out


def summaries(storage, paths) -> list[dict]:
    """One summary per ablation study in the store, for the index page."""
    from .report import summary

    out = []
    for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
        parts = s.study_name.split("/")
        if parts[0] != "ablate" or len(parts) < 3:
            continue
        try:
            spec = load_spec(parts[1])
            study = optuna.load_study(study_name=s.study_name, storage=storage)
            data = "/".join(parts[3:]) or None
            results = collect_results(spec, parts[2], study, storage, paths, data=data)
            out.append(summary(results))
        except Exception as err:  # listed with the reason, never silently dropped from the index
            out.append(
                {
                    "name": page_name(parts[1], parts[2]),
                    "question": f"study {s.study_name!r} in the store",
                    "verdict": f"not shown: {type(err).__name__}: {err}",
                    "runs_done": 0,
                    "runs_expected": 0,
                    "profile": parts[2],
                }
            )
    return out


def render_from_store(
    names: list[str], profile: str, storage_url: str | None, paths=None
) -> list[Path]:
    from .locations import Paths, study_name
    from .locations import storage_url as resolve_storage
    from .report import render_index, render_report

    paths = paths or Paths()
    url = resolve_storage(storage_url, paths)
    storage = store.open_storage(url, must_exist=True)  # a mistyped path creates nothing
    known = {
        s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
    }
    if not any(n.startswith("ablate/") for n in known):  # never rewrite the index as empty
        raise store_error(names[0] if names else "NAME", profile, url, known)
    if not names:
        names = sorted(
            {
                n.split("/")[1]
                for n in known
                if n.startswith("ablate/") and n.split("/")[2] == profile
            }
        )
    pages = []
    for name in names:
        spec = load_spec(name)
        sname = study_name(spec, profile, None)
        if sname not in known:
            raise store_error(name, profile, url, known)
        study = optuna.load_study(study_name=sname, storage=storage)
        results = collect_results(spec, profile, study, storage, paths)
        pages.append(render_report(results, paths.reports))
    render_index(summaries(storage, paths), paths.reports)
    return pages


def store_error(name: str, profile: str, url: str, known: set[str]):
    from .config import ConfigError

    have = sorted(n for n in known if n.startswith("ablate/"))
    return ConfigError(
        f"no results for ablation {name!r} profile {profile!r} in {store.redact(url)}; "
        f"the store holds: {', '.join(have) or 'nothing yet'} (run `nox -s ablate -- {name}` first)"
    )


# ---- factors and the run-folder index -------------------------------------------------------
# the seed, where and how a run executes, and its cadences: never what an ablation compares
NOT_FACTORS = {"seed", "device", "threads"} | {
    "log_every", "grid_every", "snapshot_every", "checkpoint_every",
}  # fmt: skip
INDEX_COLUMNS = ["ablation", "profile", "arm", "seed", "status", "fid", "config_hash", "run_dir"]


def factor_values(planned) -> dict[str, list]:
    """The RunConfig fields whose value differs between the planned runs other than by seed
    (the spec's factors, e.g. g_activation and d_activation), each with its values in plan order."""
    configs = [run.config.to_dict() for run in planned]
    out: dict[str, list] = {}
    for key in configs[0] if configs else {}:
        if key in NOT_FACTORS:
            continue
        values: list = []
        for config in configs:
            if config.get(key) not in values:
                values.append(config.get(key))
        if len(values) > 1:
            out[key] = values
    return out


def add_factor_columns(runs: pd.DataFrame, planned) -> pd.DataFrame:
    """One column per factor (named after its RunConfig field), so no one parses arm names."""
    factors = [f for f in factor_values(planned) if f not in runs.columns]
    if not factors or runs.empty:
        return runs
    by_key = {(run.arm, run.seed): run.config.to_dict() for run in planned}
    values = pd.DataFrame(
        [[by_key.get((a, s), {}).get(f) for f in factors] for a, s in zip(runs["arm"], runs["seed"], strict=True)],
        columns=factors, index=runs.index,
    )  # fmt: skip
    return pd.concat([runs, values], axis=1)


def write_run_index(results: AblationResults, paths) -> Path:
    """results/runs/INDEX.csv: which folder holds which (ablation, profile, arm, seed).

    Run folders are named by config hash and shared between ablations, so one folder can have
    several rows. Rows of other ablations are kept; the file is rewritten atomically under a lock."""
    import fcntl

    runs_dir = Path(paths.runs)
    runs_dir.mkdir(parents=True, exist_ok=True)
    out = runs_dir / "INDEX.csv"
    ablation = results.name.removesuffix("-" + results.profile)
    mine = pd.DataFrame(
        {
            "ablation": ablation, "profile": results.profile, "arm": results.runs["arm"],
            "seed": results.runs["seed"], "status": results.runs["status"], "fid": results.runs["fid"],
            "config_hash": results.runs["config_hash"],
            "run_dir": [str(runs_dir / h) for h in results.runs["config_hash"]],
        },
        columns=INDEX_COLUMNS,
    )  # fmt: skip
    with open(runs_dir / ".INDEX.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            old = pd.read_csv(out) if out.exists() else pd.DataFrame(columns=INDEX_COLUMNS)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            old = pd.DataFrame(columns=INDEX_COLUMNS)
        keep = old[~((old["ablation"] == ablation) & (old["profile"] == results.profile))]
        frame = pd.concat([keep, mine] if not keep.empty else [mine], ignore_index=True)
        frame = frame.sort_values(["ablation", "profile", "arm", "seed"], kind="stable")
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False, float_format="%.2f")
        atomic_write_bytes(out, buffer.getvalue().encode())
    return out
