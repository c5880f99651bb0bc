"""`dcgan ablate NAME`: spec -> enqueued runs -> workers train and score -> table -> report.

Every step is re-entrant. Runs are content-addressed (results/runs/<config hash>), so a run
finished for one ablation is re-used by any other that plans the same config (the baseline
of most CPU ablations is the same three runs); a killed run resumes from its checkpoint; a
finished ablation re-runs in seconds and trains nothing.
"""

from __future__ import annotations

import math
import os  # noqa: F401 (tests/faults patch runner.os.cpu_count; the layout is worker.py's)
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
import torch
from optuna.trial import TrialState

from . import dashboard, locations, plan, preflight, progress, scores, store
from .config import ConfigError, RunConfig
from .data import ImageSet, load_images
from .faults import crash_point
from .locations import Paths, spec_name, study_name  # noqa: F401 (re-exported)
from .rundir import RunDir
from .specs import AblationSpec, load_spec
from .train import read_metrics, train
from .worker import (  # noqa: F401 (default_workers: re-exported)
    Outcome,
    Retry,
    default_workers,
    plan_layout,
    run_folder,
    serve,
    spawn_workers,
)
from .worker import available_memory as _available_memory

CURVE_POINTS = 200  # loss curves are averaged down to at most this many points per run
# A trial's fid_curve / kid_curve are [[images seen, value]] (trials stored before this attribute
# existed keyed an ablation's curve by step).
CURVE_UNIT = "images"


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker process needs; plain data so it pickles across `spawn`."""

    study_name: str
    storage_url: str
    paths: Paths
    extractors: tuple[str, ...]  # every feature space scored; the first is the primary one
    n_fake: int
    threads: int
    worker: int = 0


def run_ablation(
    name: str,
    profile: str = "cpu",
    *,
    seeds: list[int] | None = None,
    data: str | None = None,
    workers: int | None = 1,
    storage_url: str | None = None,
    paths: Paths = Paths(),  # noqa: B008 (frozen dataclass)
    report: bool = True,
    log=print,
    show_progress: bool | None = None,
) -> Path | None:
    """Train, score and report every arm x seed of an ablation; returns the report path.

    `workers=None`: `default_workers` (what the command line does when --workers is not given).
    `show_progress`: None: a bar on a terminal, else a line per finished run (dcgan/progress.py),
    and the report re-rendered as runs finish; False: neither.
    """
    spec = load_spec(name)
    planned = spec.plan(profile, seeds, data)
    prof = spec.profile(profile)
    data_bytes = _check_inputs(spec, planned, prof.extractors or (prof.extractor,), prof.n_fake)
    url = locations.storage_url(storage_url, paths)
    storage = store.open_storage(url)
    study = optuna.create_study(
        study_name=study_name(spec, profile, data),
        storage=storage,
        direction="minimize",
        load_if_exists=True,
    )
    study.set_user_attr("ablation", spec.name)
    study.set_user_attr("question", spec.question)
    study.set_user_attr("profile", profile)
    keyed = [((r.arm, r.seed, r.config.hash()), r.config.to_dict()) for r in planned]
    if superseded := store.supersede_waiting(study, storage, [key for key, _ in keyed]):
        log(f"{superseded} queued run(s) superseded: the spec now plans their arm x seed otherwise")
    added = store.enqueue_missing(study, storage, keyed)
    log(
        f"{spec.name} [{profile}]: {len(planned)} runs planned, {added} newly queued, store {store.redact(url)}"
    )
    dashboard.set_trial_params(study, storage, planned, log)  # factors: importance, slice plots

    workers, threads = plan_layout(
        study, workers, len(store.waiting(study)), data_bytes, log, _available_memory()
    )
    log(f"{workers} worker(s) x {threads} thread(s)")
    jobs = [
        WorkerJob(
            study.study_name,
            url,
            paths,
            prof.extractors or (prof.extractor,),
            prof.n_fake,
            threads,
            i,
        )  # fmt: skip
        for i in range(workers)
    ]
    started = time.perf_counter()
    monitor = progress.for_ablation(
        spec=spec, profile=profile, planned=planned, study_name=study.study_name, storage=storage,
        storage_url=url, paths=paths, extractors=jobs[0].extractors, n_fake=prof.n_fake,
        workers=workers, log=log, show=show_progress, report=report, seeds=seeds, data=data,
    )  # fmt: skip
    if monitor is not None:
        monitor.start()
        log = monitor.log  # in-process workers print above the bar
    try:
        if workers <= 1:
            work(jobs[0], log)
        else:
            spawn_workers(work, jobs, "dcgan-worker", log)
            if store.reap_dead_workers(study, storage):  # a worker died after the others finished
                work(jobs[0], log)
    finally:
        if monitor is not None:
            monitor.stop()
            log = monitor._log
    log(f"{spec.name} [{profile}]: workers done in {time.perf_counter() - started:.0f} s")
    split = plan.time_split(study)
    if split is not None:
        log(split.describe())

    from .collect import collect_results, export_table

    results = collect_results(spec, profile, study, storage, paths, seeds=seeds, data=data)
    table = export_table(results, paths)
    log(f"table: {table}")
    failed = preflight.failed_runs(study, planned)
    page = None
    if report:
        from .report import render_report

        crash_point("report")
        page = render_report(results, paths.reports)
        dashboard.attach_report(study, page, paths.artifacts, log)
        _refresh_index(paths, storage)
    if failed:  # the table and report hold everything that finished; the command still fails
        raise preflight.RunsFailed(spec.name, profile, len(planned), failed, page)
    return page


def _refresh_index(paths: Paths, storage) -> None:
    from .collect import summaries
    from .report import render_index

    render_index(summaries(storage, paths), paths.reports)


def _check_inputs(
    spec: AblationSpec, planned, extractors: tuple[str, ...], n_fake: int | None = None
) -> int:
    """Fail before training: data that can't be loaded, a batch larger than the data, an
    extractor that can't be built. Returns the bytes of decoded data a worker will hold."""
    sizes: dict[tuple, tuple[int, int]] = {}  # (images, bytes)
    for run in planned:
        key = (run.config.data, run.config.image_size, run.config.channels)
        if key not in sizes:
            images = load_images(*key).images
            sizes[key] = (len(images), images.numel() * images.element_size())
        if run.config.batch_size > sizes[key][0]:
            raise ConfigError(
                f"{spec.path}: arms.{run.arm}: batch_size={run.config.batch_size} is larger than "
                f"the dataset {run.config.data!r} ({sizes[key][0]} images)"
            )
        preflight.check_run(spec, run, sizes[key][0], n_fake)
    preflight.check_plan(spec, planned)  # arms a profile makes identical: said, not refused
    from .metrics.extractors import get_extractor

    for extractor in extractors:  # builds/verifies weights or says what to install
        _ = get_extractor(extractor).weights_sha256
    return sum(n_bytes for _, n_bytes in sizes.values())


def work(job: WorkerJob, log=progress.worker_log) -> None:
    """Claim runs from the store until none is waiting (the one engine: worker.serve)."""
    torch.set_num_threads(job.threads)
    storage = store.open_storage(job.storage_url)
    study = optuna.load_study(study_name=job.study_name, storage=storage)
    artifacts = store.artifact_store(job.paths.artifacts)
    images: dict[tuple, ImageSet] = {}

    def execute(trial: optuna.Trial) -> Outcome:
        value, summary = execute_run(trial, job, artifacts, images)  # looked up now: tests stub it
        return Outcome(TrialState.COMPLETE, value, summary)

    serve(
        study, storage, execute, retry=Retry.NEXT_LAUNCH, worker=job.worker,
        may_take=alone_if_wider(study, job.threads),
        label=lambda t: f"{t.user_attrs['arm']} seed {t.user_attrs['seed']}", log=log,
    )  # fmt: skip


def alone_if_wider(study: optuna.Study, threads: int):
    """A run on more threads than the worker's share (an execution replicate) runs alone on this
    host: beside another worker its threads wait at every OpenMP barrier for a descheduled
    partner (205 vs 520 img/s in a fresh `activation`, docs/performance.md). A worker that may
    not take it exits; the host's last worker trains it with the cores to itself."""

    def may_take(t) -> bool:
        wants = (t.user_attrs.get("config") or {}).get("threads") or threads
        return wants <= threads or not store.busy_here(study)

    return may_take


def execute_run(trial: optuna.Trial, job: WorkerJob, artifacts, images: dict) -> tuple[float, str]:
    cfg = RunConfig.from_dict(trial.user_attrs["config"], where=f"trial {trial.number} config")
    preflight.check_identity(
        trial.user_attrs.get("config_hash"), cfg
    )  # data changed since planned?
    key = (cfg.data, cfg.image_size, cfg.channels)
    if key not in images:
        images[key] = load_images(*key)
    from .metrics.fidelity import score_run

    extractors = [job.extractors] if isinstance(job.extractors, str) else list(job.extractors)
    # Trained and scored under the folder's lock: a tuning trial of the same config writes the
    # same scores.jsonl (damaged files were quarantined when the lock was taken).
    with run_folder(cfg, job.paths, trial) as run_dir:
        torch.set_num_threads(cfg.threads or job.threads)  # a replicate trains on its own count
        try:
            result = train(cfg, run_dir, images=images[key])
        finally:
            torch.set_num_threads(job.threads)
        crash_point("score")
        records = score_run(run_dir, extractor=extractors, n_fake=job.n_fake)
    summary_ = scores.summarise(records, extractors)
    final, rows = summary_["final"], summary_["rows"]
    attrs = {
        "run_dir": str(run_dir),
        "status": result["status"],
        "result": result,
        "scores": final,
        "score_rows": rows,  # every snapshot, every metric, every feature space
        "fid_curve": image_curve(rows, "fid", extractors[0]),
        "kid_curve": image_curve(rows, "kid", extractors[0]),
        "curve_unit": CURVE_UNIT,
        "floor": summary_["floor"],
    }
    for name, value in attrs.items():
        trial.set_user_attr(name, value)
    dashboard.record_run(trial, attrs)  # metric name, FID per snapshot, "arm X · seed k" note
    _upload_artifacts(trial, run_dir, artifacts)
    fid = final.get("fid")
    value = fid if fid is not None and math.isfinite(fid) else float("inf")
    said = (
        f"{result['status']}, {result.get('steps_done')} steps in {result['wall_s']:.0f} s "
        f"({result['images_per_s'] or 0:.0f} img/s), {final.get('fid_metric', 'fid')} {fid if fid is None else round(fid, 2)}"
    )
    return value, said


def image_curve(rows: list[list], metric: str, extractor: str) -> list[list]:
    """[[images seen, value]] of one metric in one feature space: the key a tuning trial's
    curve has too (there on its study's shared grid), and the dashboard's step axis."""
    return [
        [None if k is None else round(k * 1000), v]
        for _, k, m, e, v in rows
        if m == metric and e == extractor
    ]


def _upload_artifacts(trial: optuna.Trial, run_dir: Path, artifacts) -> None:
    run = RunDir(run_dir)
    for _, grid in run.grids():
        optuna.artifacts.upload_artifact(
            artifact_store=artifacts,
            file_path=str(grid),
            study_or_trial=trial,
            mimetype="image/png",
        )
    curves = run.write_curves(downsample_curves(read_metrics(run_dir)))
    optuna.artifacts.upload_artifact(
        artifact_store=artifacts,
        file_path=str(curves),
        study_or_trial=trial,
        mimetype="application/json",
    )


def downsample_curves(rows: list[dict], points: int = CURVE_POINTS) -> dict[str, list]:
    """Per-step logs averaged into at most `points` windows: {'step': [...], metric: [...]}."""
    if not rows:
        return {}
    frame = pd.DataFrame(rows)
    window = max(1, math.ceil(len(frame) / points))
    grouped = frame.groupby(frame.index // window)
    out = grouped.mean(numeric_only=True)
    out["step"] = grouped["step"].max()
    return {col: [None if pd.isna(v) else float(v) for v in out[col]] for col in out.columns}
