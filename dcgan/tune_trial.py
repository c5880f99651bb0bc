"""One tuning trial: its parameters become a planned run, trained and scored like an ablation's.

The run lives where every run does, results/runs/<config hash>, and trains under the same lock
(worker.run_folder): a tuned config equal to an ablation's run, or to an earlier trial's, re-uses
that run, and a run that a trial stopped early resumes from its checkpoint when a later trial
or an ablation needs it further.

Scores: at each of the trial's snapshots the saved generator is scored by `score_run`, as an
ablation scores it, so the records appended to the run's scores.jsonl are the ones an ablation
would write (same protocol id, same names), and an ablation re-using the run finds them there.

Pruning is a hook on each scored snapshot (`train(..., on_snapshot=...)`): the value is
reported to Optuna, and when the pruner says stop, training stops at the next log flush
(`on_log`), after train() has saved the checkpoint at that snapshot. The folder is then exactly
a run killed there: nothing past the checkpoint is kept (no snapshot, grid or score beyond it),
and train() resumes from it.

A trial's curve (`fid_curve` or `kid_curve`, as ablation trials have them: runner.image_curve)
is [[images seen, value]], on the study's shared grid of `scores_per_trial` points of
budget / scores_per_trial images each, so the pruner compares trials of different batch sizes
at the same point of the budget.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from . import store
from .config import RunConfig
from .data import ImageSet, load_images
from .locations import Paths
from .rundir import RunDir
from .train import train
from .tune_space import Objective, SearchSpace, budget_images, load_space
from .tune_study import best_so_far, format_params, open_study
from .worker import Outcome, Retry, run_folder, serve

CURVE_UNIT = "images"  # the key of a trial's curve, as for ablation trials (runner.CURVE_UNIT)


@dataclass(frozen=True)
class TuneJob:
    """Everything a worker process needs; plain data so it pickles across `spawn`."""

    space: str
    profile: str
    storage_url: str
    paths: Paths
    threads: int
    worker: int = 0


def work(job: TuneJob, log=print, images: dict[tuple, ImageSet] | None = None) -> int:
    """Claim waiting trials until none is left (the one engine: worker.serve); returns how
    many this worker ran. A failed trial is recorded, not retried (Retry.NEVER)."""
    torch.set_num_threads(job.threads)
    space = load_space(job.space)
    storage = store.open_storage(job.storage_url)
    study = open_study(space, job.profile, storage, worker=job.worker)
    artifacts = store.artifact_store(job.paths.artifacts)
    images = {} if images is None else images  # datasets, decoded once per worker
    return serve(
        study, storage, lambda trial: run_trial(trial, space, job, artifacts, images),
        retry=Retry.NEVER, worker=job.worker, after_each=lambda: best_so_far(study), log=log,
    )  # fmt: skip


class _Stop(Exception):
    """Raised at a log flush to end training that should not go on (pruned, or a broken score)."""


class _Scores:
    """A trial's scores at its snapshots: written to the run's scores.jsonl, reported to the
    pruner, and the reason to stop, if any."""

    def __init__(self, trial: optuna.Trial, cfg: RunConfig, obj: Objective, protocol, run_dir):
        self.trial, self.cfg, self.obj, self.protocol = trial, cfg, obj, protocol
        self.run_dir = run_dir
        self.metric = protocol.metric_name(obj.metric)
        self.multi = len(obj.directions) > 1
        self.budget = budget_images(cfg)
        self.curve: dict[int, float] = {}  # images seen (on the study's grid) -> value
        self.latest: dict[str, float] = {}  # every feature metric at the last scored snapshot
        self.stop: str | None = None
        self.stop_step: int | None = None
        self.reached = 0  # the last step training was seen at
        self.seconds = 0.0  # spent scoring

    def wanted(self, step: int) -> bool:
        """A snapshot this trial scores: its grid (every snapshot_every steps and the last), or
        the last one only when nothing is pruned (several objectives)."""
        total = self.cfg.total_steps
        if self.multi:
            return step == total
        return step == total or (0 < step < total and step % self.cfg.snapshot_every == 0)

    def at(self, step: int) -> int:
        """Images seen at `step`, on a grid every trial shares whatever its batch size."""
        per = self.obj.scores_per_trial
        return round(round(step * per / self.cfg.total_steps) * self.budget / per)

    def score(self, step: int, prune: bool) -> None:
        from .metrics.fidelity import score_run

        started = time.perf_counter()
        records = score_run(
            self.run_dir, extractor=self.obj.extractor, n_fake=self.obj.n_fake, steps=[step]
        )
        self.seconds += time.perf_counter() - started
        mine = [
            r
            for r in records
            if r["protocol_id"] == self.protocol.id and r["step"] == step
            and r["kind"] == "generator"
        ]  # fmt: skip
        self.latest = {r["name"]: r["value"] for r in mine}
        value, at = float(self.latest[self.metric]), self.at(step)
        reported = at in self.curve
        self.curve[at] = value
        if not math.isfinite(value):
            reason = next((r["reason"] for r in mine if r.get("reason")), "")
            self.stop_at(step, f"non-finite {self.metric} at {at} images: {reason}")
        elif not self.multi and not reported:
            self.trial.report(value, at)
            if prune and self.trial.should_prune():
                self.stop_at(step, f"{self.metric} {value:.2f} at {at} images: worse than the median there")  # fmt: skip

    def stop_at(self, step: int, reason: str) -> None:
        if self.stop is None:
            self.stop, self.stop_step = reason, step

    # ---- train()'s hooks --------------------------------------------------------------------
    def on_snapshot(self, step: int, _generator) -> None:
        """Scores the snapshot train() has just saved; the checkpoint follows it."""
        self.reached = step
        if self.stop is None and self.wanted(step):
            self.score(step, prune=True)

    def on_log(self, step: int, _row: dict) -> None:
        """The first log flush after a stop ends training: the checkpoint is at the stop."""
        self.reached = step
        if self.stop is not None:
            raise _Stop(self.stop)


def _resume_step(run_dir: Path) -> int:
    """The step train() starts from in this folder: its result's, its checkpoint's, or 0."""
    run = RunDir(run_dir)
    try:
        result = run.read_result()
        if result is not None:
            return int(result["steps_done"])
        if run.checkpoint.exists():
            state = torch.load(run.checkpoint, map_location="cpu", weights_only=True)
            return int(state["step"])
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        pass  # train() says what is wrong with the folder
    return 0


def run_trial(
    trial: optuna.Trial, space: SearchSpace, job: TuneJob, artifacts, images: dict
) -> Outcome:
    """Train and score one trial in its run's folder; the Outcome for study.tell."""
    from .metrics.fidelity import snapshot_steps

    obj = space.profile(job.profile).objective
    params = {name: p.suggest(trial) for name, p in space.params.items()}
    cfg = space.config(job.profile, params)
    key = (cfg.data, cfg.image_size, cfg.channels)
    if key not in images:
        images[key] = load_images(*key)
    protocol = obj.protocol(images[key])
    trial.set_user_attr("run_dir", str(job.paths.runs / cfg.hash()))
    trial.set_user_attr("config", cfg.to_dict())
    result: dict | None = None
    with run_folder(cfg, job.paths, trial) as run_dir:
        scores = _Scores(trial, cfg, obj, protocol, run_dir)
        for step in sorted(s for s in snapshot_steps(run_dir) if scores.wanted(s)):
            scores.score(step, prune=False)  # scored before (a re-used or resumed run): read back
        start_step = _resume_step(run_dir)
        scored_before, started = scores.seconds, time.perf_counter()
        torch.set_num_threads(cfg.threads or job.threads)
        try:
            result = train(
                cfg, run_dir, images=images[key], on_snapshot=scores.on_snapshot,
                on_log=scores.on_log,
            )  # fmt: skip
        except _Stop:
            pass
        finally:
            torch.set_num_threads(job.threads)
        train_s = time.perf_counter() - started - (scores.seconds - scored_before)
    status, reason = "completed", None
    if scores.stop is not None:
        status, reason, steps_done = "pruned", scores.stop, scores.stop_step
    else:
        assert result is not None  # only a stop ends train() early
        steps_done = result["steps_done"]
        if result["status"] == "diverged":
            status, reason = "diverged", f"at step {steps_done}: {result['divergence_reason']}"
    reached = result["steps_done"] if result is not None else scores.reached
    trained = max(0, reached - start_step)
    if trained and train_s > 0:
        images_per_s = trained * cfg.batch_size / train_s
    else:  # nothing trained here: the run was finished before; its own record of its speed
        images_per_s = float((result or {}).get("images_per_s") or 0.0)
    # Training seconds of the run this trial counts, at the speed measured (= train_s for a
    # run trained start to end here; a re-used or resumed run is not free).
    wall_s = steps_done * cfg.batch_size / images_per_s if images_per_s > 0 else train_s
    curve = [[at, value] for at, value in sorted(scores.curve.items())]
    attrs = {
        "status": status,
        "pruned_reason": reason,
        "protocol": protocol.to_dict(),
        "scores": {n: scores.latest[n] for n in protocol.metric_names if n in scores.latest},
        "wall_s": wall_s,
        "score_s": scores.seconds,
        "images_per_s": images_per_s,
        "steps_done": steps_done,
        "resumed_from_step": start_step,
        obj.metric: curve[-1][1] if curve else None,
        f"{obj.metric}_curve": curve,
        "curve_unit": CURVE_UNIT,
    }
    for name, value in attrs.items():
        trial.set_user_attr(name, value)
    grids = [path for step, path in RunDir(run_dir).grids() if step <= steps_done]
    if grids:
        optuna.artifacts.upload_artifact(
            artifact_store=artifacts,
            file_path=str(grids[-1]),
            study_or_trial=trial,
            mimetype="image/png",
        )
    speed = f"{wall_s:.0f} s training, {images_per_s:.0f} img/s"
    if start_step and not trained:
        speed += f"; run {run_dir.name} re-used"
    elif start_step:
        speed += f"; run {run_dir.name} resumed at step {start_step}"
    if reason:
        return Outcome(TrialState.PRUNED, None, f"{status}: {reason} ({speed})")
    if not curve:
        raise RuntimeError(f"{run_dir}: the run finished with no scored snapshot")
    values = [curve[-1][1]] + ([wall_s] if scores.multi else [])
    summary = f"{obj.metric} {values[0]:.1f} ({speed}), {format_params(params)}"
    return Outcome(TrialState.COMPLETE, values, summary)
