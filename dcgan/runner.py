"""`dcgan ablate NAME`: spec -> enqueued runs -> workers train and score -> table -> report.

Every step is re-entrant. Runs are content-addressed (results/runs/<config hash>), so a run
finished for one ablation is re-used by any other that plans the same config (the baseline
of most CPU ablations is the same three runs); a killed run resumes from its checkpoint; a
finished ablation re-runs in seconds and trains nothing.
"""

from __future__ import annotations

import fcntl
import json
import math
import multiprocessing
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
import torch

from . import dashboard, integrity, preflight, progress, scores, store
from .config import ConfigError, RunConfig
from .data import ImageSet, load_images
from .faults import crash_point
from .locations import Paths, spec_name, study_name  # noqa: F401 (re-exported)
from .specs import AblationSpec, load_spec
from .train import read_metrics, train

CURVE_POINTS = 200  # loss curves are averaged down to at most this many points per run


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
    url = (
        store.storage_url(storage_url)
        if storage_url or os.environ.get("DCGAN_STORAGE")
        else paths.default_storage
    )
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
    added = store.enqueue_missing(
        study, storage, [((r.arm, r.seed, r.config.hash()), r.config.to_dict()) for r in planned]
    )
    log(
        f"{spec.name} [{profile}]: {len(planned)} runs planned, {added} newly queued, store {store.redact(url)}"
    )
    dashboard.set_trial_params(study, storage, planned, log)  # factors: importance, slice plots

    workers, threads = plan_layout(study, workers, len(store.waiting(study)), data_bytes, log)
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
        storage_url=url, paths=paths, extractor=prof.extractor, n_fake=prof.n_fake,
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


MAX_AUTO_WORKERS = 8
WORKER_OVERHEAD_BYTES = 1 << 30  # torch, models, optimiser state, scoring batches


def default_workers(queued: int, data_bytes: int = 0) -> int:
    """One single-threaded worker per core on CPU, as many as the free memory holds; one on a GPU.

    These nets are small: measured here, two 1-thread runs side by side train at 1,731 img/s
    together against 1,502 img/s for one 2-thread run, and the 18 `activation` runs took 8.4 min
    (see README, "The CPU default"). Each worker holds its own copy of the decoded data.
    """
    if torch.cuda.is_available():
        return 1
    by_memory = _available_memory() // (data_bytes + WORKER_OVERHEAD_BYTES)
    return max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS, queued, by_memory))


def plan_layout(study, requested: int | None, queued: int, data_bytes: int, log=print):
    """(workers, torch threads per worker) for this launch of an ablation.

    The thread count changes a run's numbers (oneDNN splits reductions by thread), so it is
    fixed at the ablation's first launch (the study's `layout` attribute) and re-used by every
    resume, whatever the queue or --workers say then. Workers are capped, with a warning even
    when given explicitly, by the queued runs, the cores (at that thread count) and the free
    memory (each worker holds its own copy of the decoded data)."""
    cores = os.cpu_count() or 1
    recorded = study.user_attrs.get("layout")
    wanted = default_workers(queued, data_bytes) if requested is None else requested
    if isinstance(recorded, dict) and isinstance(recorded.get("threads"), int):
        threads = max(1, recorded["threads"])
        if requested is not None and max(1, cores // requested) != threads:
            log(
                f"warning: this ablation's runs train on {threads} thread(s) each (fixed at its "
                f"first launch, so resumed runs give the same numbers); --workers {requested} "
                f"keeps {threads} thread(s) per worker"
            )
    else:
        threads = max(1, cores // max(1, wanted))
        study.set_user_attr("layout", {"threads": threads, "workers": wanted, "cores": cores})
    by_memory = max(1, _available_memory() // (data_bytes + WORKER_OVERHEAD_BYTES))
    caps = {
        f"{queued} queued run(s)": max(1, queued),
        f"{cores} core(s) at {threads} thread(s) each": max(1, cores // threads),
        f"free memory for {by_memory}": by_memory,
    }
    workers = min([wanted, *caps.values()])
    if workers < wanted:
        why = ", ".join(k for k, v in caps.items() if v == workers)
        log(f"warning: {wanted} workers capped to {workers} ({why})")
    return workers, threads


def _available_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not limit


def spawn_workers(target, jobs: list, name: str, log=print) -> None:
    """One process per job (spawned: no inherited torch/OpenMP state), joined before return.

    A worker that dies is said out loud; its run goes back to the queue (reap_dead_workers).
    """
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=(job,), name=f"{name}-{job.worker}") for job in jobs]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            log(f"{p.name} died (exit code {p.exitcode}); its run is re-queued")


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


@contextmanager
def run_lock(run_dir: Path):
    """Two ablations planning the same config never train it twice at the same time."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def work(job: WorkerJob, log=progress.worker_log) -> None:
    """Claim runs from the store until none is waiting."""
    torch.set_num_threads(job.threads)
    storage = store.open_storage(job.storage_url)
    study = optuna.load_study(study_name=job.study_name, storage=storage)
    artifacts = store.artifact_store(job.paths.artifacts)
    images: dict[tuple, ImageSet] = {}
    while True:
        store.reap_dead_workers(study, storage)  # a dead worker's run goes back to the queue
        trial = store.claim_next(study, storage)
        if trial is None:
            break
        arm, seed = trial.user_attrs["arm"], trial.user_attrs["seed"]
        with store.heartbeat(storage, trial._trial_id):
            try:
                value, summary = execute_run(trial, job, artifacts, images)
                crash_point("store_tell")
                study.tell(trial, value)
            except optuna.exceptions.UpdateFinishedTrialError:
                # failed as stale while this worker was stalled; its retry is someone else's now
                log(f"[w{job.worker}] {arm} seed {seed}: given up (another worker retries it)")
                continue
            except Exception as err:  # a crash is recorded on the trial; the next ablate retries it
                store.record_failure(study, trial, f"{type(err).__name__}: {err}")
                log(f"[w{job.worker}] {arm} seed {seed}: FAILED: {type(err).__name__}: {err}")
                continue
        log(f"[w{job.worker}] {arm} seed {seed}: {summary}")


def execute_run(trial: optuna.Trial, job: WorkerJob, artifacts, images: dict) -> tuple[float, str]:
    cfg = RunConfig.from_dict(trial.user_attrs["config"], where=f"trial {trial.number} config")
    run_dir = job.paths.runs / cfg.hash()
    preflight.check_identity(
        trial.user_attrs.get("config_hash"), cfg
    )  # data changed since planned?
    key = (cfg.data, cfg.image_size, cfg.channels)
    if key not in images:
        images[key] = load_images(*key)
    with run_lock(run_dir):
        for message in integrity.repair_run_dir(run_dir, cfg):  # damaged files: quarantined
            trial.set_user_attr("repaired", message)
        torch.set_num_threads(cfg.threads or job.threads)  # a replicate trains on its own count
        try:
            result = train(cfg, run_dir, images=images[key])
        finally:
            torch.set_num_threads(job.threads)
    from .metrics.fidelity import score_run

    crash_point("score")
    extractors = [job.extractors] if isinstance(job.extractors, str) else list(job.extractors)
    summary_ = scores.summarise(
        score_run(run_dir, extractor=extractors, n_fake=job.n_fake), extractors
    )
    final, rows = summary_["final"], summary_["rows"]
    attrs = {
        "run_dir": str(run_dir),
        "status": result["status"],
        "result": result,
        "scores": final,
        "score_rows": rows,  # every snapshot, every metric, every feature space
        "fid_curve": scores.curve(rows, "fid", extractors[0]),
        "kid_curve": scores.curve(rows, "kid", extractors[0]),
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


def _upload_artifacts(trial: optuna.Trial, run_dir: Path, artifacts) -> None:
    for grid in sorted((run_dir / "grids").glob("step_*.png")):
        optuna.artifacts.upload_artifact(
            artifact_store=artifacts,
            file_path=str(grid),
            study_or_trial=trial,
            mimetype="image/png",
        )
    curves = run_dir / "curves.json"
    curves.write_text(json.dumps(downsample_curves(read_metrics(run_dir))))
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
