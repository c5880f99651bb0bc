"""The one worker engine: claim -> heartbeat -> execute -> tell, for ablations and tuning alike.

`dcgan ablate` (runner.work) and `dcgan tune` (tune_trial.work) are thin uses of `serve`: each
gives it an `execute(trial) -> Outcome` and a named `Retry` policy, and `serve` claims waiting
trials from the store (store.claim_next: one compare-and-set, so no two workers take the same
trial) until none is left, beating the trial's heartbeat while it executes, telling the store
the outcome, and recording a failure on its trial without stopping the worker.

Also here, because every run is executed the same way whoever planned it:
- `run_folder`: a config's content-addressed folder (results/runs/<config hash>), locked
  (dcgan/rundir.py: RunDir.lock) so that two workers (two ablations, or an ablation and a
  tuning study) never train or score the same run at once, its damaged files quarantined first
  (dcgan/integrity.py);
- `spawn_workers`, `default_workers`, `plan_layout`: how many worker processes, each on how
  many torch threads;

Layering: this module imports the store, faults and (lazily) rundir, integrity and torch; it
never imports the runner or the tuner, which import it.
"""

from __future__ import annotations

import enum
import multiprocessing
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from . import store
from .faults import crash_point
from .locations import Paths


# ---- the loop --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """What one execution of a trial told the store: COMPLETE with its values, or PRUNED."""

    state: TrialState
    values: float | list[float] | None
    summary: str  # one line for the worker's log


class Retry(enum.Enum):
    """What becomes of a trial whose `execute` raised. Either way the failure is recorded on
    the trial (its `failure` attribute) and the worker goes on to the next trial; what differs
    is who, if anyone, runs that work again.

    A trial whose worker *died* is another matter, the same for both: the store fails it once
    its worker is seen dead and re-enqueues it with the same attributes (store.reap_dead_workers,
    Optuna's RetryHeartbeatStaleTrialCallback, at most store.MAX_RETRY times)."""

    # Ablation runs: a planned run has one identity (arm, seed, config hash), and a failure may
    # be transient (a full disk, a lost store): the next `dcgan ablate` enqueues every planned
    # run that has no complete, waiting or running trial (store.enqueue_missing), this one too.
    NEXT_LAUNCH = "the next launch retries it"
    # Tuning trials: parameters that failed would fail the same way again; a failed trial leaves
    # the study's budget (tune_study.BUDGETED), so the next top-up enqueues new parameters.
    NEVER = "not retried; its budget slot goes to new parameters"


def serve(
    study: optuna.Study,
    storage,
    execute: Callable[[optuna.Trial], Outcome],
    *,
    retry: Retry,
    worker: int = 0,
    label: Callable[[optuna.Trial], str] = lambda t: f"trial {t.number}",
    after_each: Callable[[], str] | None = None,
    may_take: Callable[[FrozenTrial], bool] = lambda t: True,
    log=print,
) -> int:
    """Claim and execute trials until none is waiting that `may_take` lets it take; returns how
    many this worker finished (complete, pruned or failed). Logs `[wN] <label>: <summary>` per
    trial, then `after_each()` when given (the tuner's "best so far" line)."""
    ran = 0
    while True:
        if orphaned():
            log(
                f"[w{worker}] the process that started this worker is gone: stopping, the queue keeps the rest"
            )
            return ran
        store.reap_dead_workers(study, storage)  # a dead worker's trial goes back to the queue
        trial = store.claim_next(study, storage, may_take)
        if trial is None:
            return ran
        name = label(trial)
        with store.heartbeat(storage, trial._trial_id):
            try:
                outcome = execute(trial)
                crash_point("store_tell")
                study.tell(trial, outcome.values, state=outcome.state)
            except optuna.exceptions.UpdateFinishedTrialError:
                # failed as stale while this worker was stalled; its retry is someone else's now
                log(f"[w{worker}] {name}: given up (another worker retries it)")
                continue
            except Exception as err:  # recorded on the trial; `retry` says what happens next
                reason = f"{type(err).__name__}: {err}"
                store.record_failure(study, trial, reason)
                outcome = Outcome(TrialState.FAIL, None, f"FAILED: {reason} ({retry.value})")
        ran += 1
        log(f"[w{worker}] {name}: {outcome.summary}")
        if after_each is not None:
            log(f"[w{worker}] {after_each()}")


# ---- processes and threads -------------------------------------------------------------------
def orphaned() -> bool:
    """A spawned worker whose `dcgan ablate` / `tune` was killed (SIGTERM to it alone) would go
    on claiming runs nobody waits for, beside the workers of the next launch (session 9: two such
    workers trained for 20 min). It finishes the run it holds, then stops."""
    parent = multiprocessing.parent_process()
    return parent is not None and not parent.is_alive()


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


MAX_AUTO_WORKERS = 8
WORKER_OVERHEAD_BYTES = 1 << 30  # torch, models, optimiser state, scoring batches


def available_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not limit


def default_workers(queued: int, data_bytes: int = 0, free_memory: int | None = None) -> int:
    """One single-threaded worker per core on CPU, as many as the free memory holds; one on a GPU.

    These nets are small: measured here, two 1-thread runs side by side train at 1,731 img/s
    together against 1,502 img/s for one 2-thread run, and the 18 `activation` runs took 8.4 min
    (see README, "The CPU default"). Each worker holds its own copy of the decoded data.
    `free_memory`: bytes free (default: measured now).
    """
    import torch

    if torch.cuda.is_available():
        return 1
    free = available_memory() if free_memory is None else free_memory
    by_memory = free // (data_bytes + WORKER_OVERHEAD_BYTES)
    return max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS, queued, by_memory))


def plan_layout(
    study, requested: int | None, queued: int, data_bytes: int, log=print, free_memory=None
):
    """(workers, torch threads per worker) for this launch of an ablation.

    The thread count changes a run's numbers (oneDNN splits reductions by thread), so it is
    fixed at the ablation's first launch (the study's `layout` attribute) and re-used by every
    resume, whatever the queue or --workers say then. Workers are capped, with a warning even
    when given explicitly, by the queued runs, the cores (at that thread count) and the free
    memory (each worker holds its own copy of the decoded data; `free_memory`: bytes free,
    default measured now)."""
    cores = os.cpu_count() or 1
    free = available_memory() if free_memory is None else free_memory
    recorded = study.user_attrs.get("layout")
    wanted = default_workers(queued, data_bytes, free) if requested is None else requested
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
    by_memory = max(1, free // (data_bytes + WORKER_OVERHEAD_BYTES))
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


# ---- one run's folder ------------------------------------------------------------------------
@contextmanager
def run_folder(cfg, paths: Paths, trial: optuna.Trial) -> Iterator[Path]:
    """The config's content-addressed folder (paths.runs / cfg.hash()), held under its lock,
    with its damaged files quarantined first (each repair noted on the trial as `repaired`).
    Whoever planned the config, the same folder: a run trained once is re-used, a run stopped
    early (killed, pruned) resumes from its checkpoint."""
    from . import integrity  # imports torch: lazily, so importing the engine stays light
    from .rundir import RunDir

    run = RunDir(paths.runs / cfg.hash())
    with run.lock():  # two workers never train or score the same run at once
        for message in integrity.repair_run_dir(run, cfg):
            trial.set_user_attr("repaired", message)
        yield run.path
