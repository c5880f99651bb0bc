"""The result store: Optuna's storage, used as a work queue and a results database.

One engine for everything: each (arm, seed) of an ablation is an enqueued Optuna trial; a
worker claims a WAITING trial with the storage's own compare-and-set (WAITING -> RUNNING), so
no two workers take the same run; metrics live in trial attributes and sample grids/curves
as Optuna artifacts; `optuna-dashboard` shows all of it. Embedded by default (SQLite under
results/), PostgreSQL (`postgresql://...`) when several machines share the work.

A worker that dies leaves its trial RUNNING. Heartbeats (RDBStorage's own) let any other
worker fail it once stale and Optuna's RetryHeartbeatStaleTrialCallback re-enqueues it with the same
attributes; on the same host a dead worker's pid is noticed at once.
"""

from __future__ import annotations

import os
import socket
import threading
import warnings
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

DEFAULT_STORAGE = "sqlite:///results/store.db"
DEFAULT_ARTIFACTS = Path("results/artifacts")
HEARTBEAT_S = 10
GRACE_S = 60
MAX_RETRY = 3

optuna.logging.set_verbosity(optuna.logging.WARNING)
# Heartbeats are "experimental" in Optuna 5 but are its documented way to fail dead trials.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def storage_url(url: str | None) -> str:
    return url or os.environ.get("DCGAN_STORAGE") or DEFAULT_STORAGE


def redact(url: str) -> str:
    """A storage URL safe to print, log or write into a report: the password is removed."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def open_storage(
    url: str | None = None, *, heartbeat_s: int = HEARTBEAT_S, grace_s: int = GRACE_S
) -> RDBStorage:
    """The store; tests shorten `heartbeat_s`/`grace_s` to see a dead worker's trial fail fast."""
    url = storage_url(url)
    engine_kwargs = {}
    if url.startswith("postgresql://"):  # SQLAlchemy 2.1 picks psycopg 3 here; we ship psycopg2
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 120}}
    storage = RDBStorage(
        url,
        engine_kwargs=engine_kwargs,
        heartbeat_interval=heartbeat_s,
        grace_period=grace_s,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
            max_retry=MAX_RETRY, inherit_intermediate_values=False
        ),
    )
    if url.startswith("sqlite:///"):
        _serialize_sqlite(storage.engine)
    return storage


def _serialize_sqlite(engine: sqlalchemy.engine.Engine) -> None:
    """Make each SQLite transaction take the write lock when it begins (BEGIN IMMEDIATE).

    Python's sqlite3 runs a SELECT outside any transaction, so Optuna's read-check-write
    WAITING -> RUNNING is not atomic there: two workers both read WAITING and both claim the
    run (measured: 69 claims of 60 runs by 4 processes; optuna/optuna#4621). This is
    SQLAlchemy's documented pysqlite recipe; PostgreSQL needs nothing (SELECT ... FOR UPDATE).
    """

    @sqlalchemy.event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners existed are dropped


def artifact_store(directory: Path | str | None = None) -> optuna.artifacts.FileSystemArtifactStore:
    directory = Path(directory or os.environ.get("DCGAN_ARTIFACTS") or DEFAULT_ARTIFACTS)
    directory.mkdir(parents=True, exist_ok=True)
    return optuna.artifacts.FileSystemArtifactStore(str(directory))


RunKey = tuple[str, int, str]  # (arm, seed, config hash): a changed spec makes a new run


def run_key(trial: FrozenTrial) -> RunKey | None:
    attrs = trial.user_attrs
    if not all(k in attrs for k in ("arm", "seed", "config_hash")):
        return None
    return attrs["arm"], int(attrs["seed"]), attrs["config_hash"]


def trials_by_key(study: optuna.Study) -> dict[RunKey, list[FrozenTrial]]:
    grouped: dict[RunKey, list[FrozenTrial]] = defaultdict(list)
    for t in study.get_trials(deepcopy=False):
        key = run_key(t)
        if key is not None:
            grouped[key].append(t)
    return grouped


# ---- liveness ------------------------------------------------------------------------------
def _owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _pid_alive(pid: int) -> bool:
    """A zombie (killed, not yet reaped by its parent) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def reap_dead_workers(study: optuna.Study, storage: RDBStorage) -> int:
    """Fail RUNNING trials whose worker is gone, and re-enqueue them (same attributes).

    Stale heartbeats catch workers on any machine (after GRACE_S); a dead pid on this host is
    caught at once, so a re-run right after a kill does not wait for the grace period.
    """
    callback = storage.get_heartbeat_stale_trial_callback()
    host, reaped = socket.gethostname(), 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("owner") or {}
        if owner.get("host") == host and not _pid_alive(int(owner.get("pid", -1))):
            try:
                frozen = storage.get_trial(t._trial_id)  # the retry copies these attributes
                storage.set_trial_user_attr(t._trial_id, "failure", "worker died")
                if storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                    if callback is not None:  # Optuna's retry: same attributes, WAITING again
                        callback(study, frozen)
                    reaped += 1
            except Exception:  # another worker reaped it first
                continue
    optuna.storages.fail_stale_trials(study)
    return reaped


@contextmanager
def heartbeat(storage: RDBStorage, trial_id: int) -> Iterator[None]:
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                storage.record_heartbeat(trial_id)
            except Exception:
                pass

    storage.record_heartbeat(trial_id)
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# ---- the queue -----------------------------------------------------------------------------
def enqueue_missing(
    study: optuna.Study, storage: RDBStorage, runs: list[tuple[RunKey, dict]]
) -> int:
    """Enqueue every planned run that has no completed, waiting or live trial."""
    reap_dead_workers(study, storage)
    existing = trials_by_key(study)
    added = 0
    for (arm, seed, config_hash), config in runs:
        states = {t.state for t in existing.get((arm, seed, config_hash), [])}
        if states & {TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING}:
            continue
        attrs = {"arm": arm, "seed": seed, "config_hash": config_hash, "config": config}
        study.enqueue_trial({}, user_attrs=attrs, skip_if_exists=False)
        added += 1
    return added


def waiting(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.WAITING,))


def claim_next(study: optuna.Study, storage: RDBStorage) -> optuna.Trial | None:
    """Take one WAITING run for this worker, or None when nothing is left to take.

    The WAITING -> RUNNING transition is the storage's compare-and-set: exactly one worker
    wins it. A run enqueued twice (two machines syncing at once) is trained once: the
    lowest-numbered live trial of a key wins, later ones are failed as duplicates.
    """
    while True:
        queue = waiting(study)
        if not queue:
            return None
        for t in sorted(queue, key=lambda t: t.number):
            if not storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):
                continue
            storage.set_trial_user_attr(t._trial_id, "owner", _owner())
            siblings = trials_by_key(study).get(run_key(t), [])
            if any(
                s.number != t.number
                and (
                    s.state == TrialState.COMPLETE
                    or (s.number < t.number and s.state in (TrialState.WAITING, TrialState.RUNNING))
                )
                for s in siblings
            ):
                storage.set_trial_user_attr(t._trial_id, "duplicate", True)
                storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                break  # re-read the queue
            return optuna.Trial(study, t._trial_id)


def record_failure(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """Fail a run with its reason, unless the trial was already finished elsewhere."""
    try:
        trial.set_user_attr("failure", reason)
        study.tell(trial, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass


def finished_runs(study: optuna.Study) -> dict[RunKey, FrozenTrial]:
    """The completed trial of each (arm, seed): the one result that counts."""
    out = {}
    for key, trials in trials_by_key(study).items():
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        if done:
            out[key] = min(done, key=lambda t: t.number)
    return out


def live_status(trials: list[FrozenTrial]) -> str:
    states = {t.state for t in trials}
    for state, name in (
        (TrialState.COMPLETE, "completed"),
        (TrialState.RUNNING, "running"),
        (TrialState.WAITING, "waiting"),
    ):
        if state in states:
            return name
    return "failed" if states else "missing"
