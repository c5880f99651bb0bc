"""The result store: Optuna's storage, used as a work queue and a results database.

One engine for everything: each (arm, seed) of an ablation is an enqueued Optuna trial; a
worker claims a WAITING trial with one compare-and-set transaction (WAITING -> RUNNING, its
owner and its first heartbeat written together), so no two workers take the same run and no
kill can leave a claimed run without an owner; metrics live in trial attributes and sample
grids/curves as Optuna artifacts; `optuna-dashboard` shows all of it. Embedded by default
(SQLite under results/), PostgreSQL (`postgresql://...`) when several machines share the work.

A worker that dies leaves its trial RUNNING. Self-healing, in `reap_dead_workers` (every worker
runs it before each claim, and `ablate` before it enqueues):
- an owner on this host whose process is gone (or whose pid now belongs to another process)
  is noticed at once;
- a RUNNING trial with no owner (only a store written by an older version can hold one: it
  claimed in two writes) is failed and retried;
- an owner on another host is failed once its heartbeat is older than the grace period
  (RDBStorage's own heartbeats, and Optuna's RetryHeartbeatStaleTrialCallback re-enqueues
  the run with the same attributes), or once it never beat at all for as long.
tests/faults/test_store_faults.py kills a worker before every store write in turn and checks
that the next `ablate` finishes every run exactly once.

Errors opening or writing the store come out as one `StoreError` line naming the store (its
password redacted in every URL form) and what to do; PostgreSQL connections time out after
DCGAN_CONNECT_TIMEOUT seconds (default 10) instead of hanging on a server that never answers.

Over 400 lines on purpose: claim, heartbeat, reaping and redaction must agree on the store's
states, so they stay together.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from .config import ConfigError
from .faults import crash_point

DEFAULT_STORAGE = "sqlite:///results/store.db"
DEFAULT_ARTIFACTS = Path("results/artifacts")
HEARTBEAT_S = 10
GRACE_S = 60
MAX_RETRY = 3
CONNECT_TIMEOUT_S = 10
SECRET_KEYS = ("password", "passwd", "pwd", "pass", "sslpassword", "secret", "token", "apikey")

optuna.logging.set_verbosity(optuna.logging.WARNING)
# Heartbeats are "experimental" in Optuna 5 but are its documented way to fail dead trials.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class StoreError(ConfigError):
    """The store cannot be opened or written: one line naming it (redacted) and what to do."""


def storage_url(url: str | None) -> str:
    """`url`, or the default store when a caller gives none (commands resolve --storage and
    $DCGAN_STORAGE once, in locations.storage_url, and pass the result down)."""
    return url or DEFAULT_STORAGE


# ---- redaction -----------------------------------------------------------------------------
_SECRET = "|".join(SECRET_KEYS)
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s?#]*):(?P<pw>[^\s/?#]*)@")
_KEYVALUE = re.compile(
    rf"(?P<key>\b(?:{_SECRET})\b\s*[=:]\s*)(?P<value>'[^']*'|\"[^\"]*\"|[^\s&;,'\"]+)",
    re.IGNORECASE,
)


def redact(url: str) -> str:
    """A storage URL (or any text holding URLs or key=value secrets) safe to print, log or put
    in a report: the password of `scheme://user:PASSWORD@host`, and the value of any
    `password=`, `sslpassword=`... query parameter or libpq keyword, become `***`."""
    return redact_text(url)


def redact_text(text: str) -> str:
    """Every `scheme://user:PASSWORD@` and `password=VALUE` in free text, redacted."""
    text = _USERINFO.sub(lambda m: f"{m.group('head')}:***@", str(text))
    return _KEYVALUE.sub(lambda m: f"{m.group('key')}***", text)


# ---- opening the store -----------------------------------------------------------------------
def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :].split("?", 1)[0]
        return None if path in ("", ":memory:") else Path(path)
    return None


def _check_url(url: str) -> str:
    """The URL SQLAlchemy should open, or a StoreError saying what a valid one looks like."""
    valid = "use sqlite:///RELATIVE/PATH.db, sqlite:////ABSOLUTE/PATH.db or postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE"
    if "://" not in url:
        raise StoreError(f"store {redact(url)!r} is not a storage URL; {valid}")
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("postgres", "pg", "psql"):
        raise StoreError(
            f"store {redact(url)}: unknown scheme {scheme!r}; did you mean postgresql://? ({valid})"
        )
    if scheme == "postgresql":  # SQLAlchemy 2.1 picks psycopg 3 here; we ship psycopg2
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    if scheme == "sqlite":
        if url.startswith("sqlite:///"):
            if url[len("sqlite:///") :].split("?", 1)[0] in ("", ":memory:"):
                raise StoreError(
                    f"store {redact(url)}: an in-memory store is lost when the command ends and "
                    f"workers cannot share it; {valid}"
                )
        else:
            raise StoreError(f"store {redact(url)}: a SQLite URL needs three slashes; {valid}")
    elif not scheme.startswith("postgresql") and not scheme.startswith("mysql"):
        raise StoreError(f"store {redact(url)}: unsupported scheme {scheme!r}; {valid}")
    return url


def describe_store_error(url: str, err: BaseException) -> str:
    """One line: which store, what went wrong (the driver's own first line) and what to do."""
    cause = err
    while getattr(cause, "orig", None) is not None or (
        cause.__cause__ is not None and isinstance(cause, optuna.exceptions.StorageInternalError)
    ):
        cause = getattr(cause, "orig", None) or cause.__cause__
    text = str(cause).strip().splitlines()
    first = text[0] if text else type(cause).__name__
    low = " ".join(text).lower()
    path = _sqlite_path(url)
    hint = ""
    if "file is not a database" in low or "malformed" in low or "not a database" in low:
        hint = (
            f"the file is not a readable SQLite database: move it aside (mv {path} {path}.damaged) "
            "to start a new store, or restore it from a backup"
        )
    elif "readonly" in low or "read-only" in low:
        hint = (
            f"the store is read-only: make {path} and its folder writable, or use another --storage"
        )
    elif "unable to open database file" in low or "is a directory" in low:
        hint = f"cannot open {path}: check that it is a file in a folder you can write"
    elif "password authentication failed" in low or "authentication failed" in low:
        hint = "check the user name and password"
    elif "does not exist" in low and "database" in low:
        hint = "create the database first (createdb), or check its name"
    elif "connection refused" in low:
        hint = "is the database server running, and on that host and port?"
    elif "timeout" in low or "timed out" in low:
        hint = f"the server did not answer within {_connect_timeout()} s (DCGAN_CONNECT_TIMEOUT)"
    elif "could not translate host name" in low or "name or service not known" in low:
        hint = "check the host name"
    elif "locked" in low:
        hint = "another process holds the store's write lock; retry when it is done"
    elif isinstance(cause, ImportError):
        hint = "its database driver is not installed; use sqlite:/// or postgresql://"
    message = f"store {redact(url)}: {type(cause).__name__}: {first}"
    return redact_text(message + (f"; {hint}" if hint else ""))


def _connect_timeout() -> int:
    try:
        return max(1, int(os.environ.get("DCGAN_CONNECT_TIMEOUT", CONNECT_TIMEOUT_S)))
    except ValueError:
        return CONNECT_TIMEOUT_S


def open_storage(
    url: str | None = None,
    *,
    heartbeat_s: int = HEARTBEAT_S,
    grace_s: int = GRACE_S,
    must_exist: bool = False,
) -> RDBStorage:
    """The store; tests shorten `heartbeat_s`/`grace_s` to see a dead worker's trial fail fast.

    `must_exist`: a read-only command (report) refuses to create a new, empty SQLite store at
    a mistyped path."""
    url = storage_url(url)
    sqlalchemy_url = _check_url(url)
    engine_kwargs: dict = {}
    path = _sqlite_path(url)
    if path is not None:
        if path.exists() and path.is_dir():
            raise StoreError(f"store {redact(url)}: {path} is a directory, not a SQLite file")
        if must_exist and not path.exists():
            raise StoreError(
                f"store {redact(url)}: no store at {path} (check the path; nothing was created)"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(
                f"store {redact(url)}: cannot create {path.parent}: {err.strerror}"
            ) from None
        engine_kwargs = {"connect_args": {"timeout": 120}}
    elif sqlalchemy_url.startswith("postgresql"):
        query = dict(parse_qsl(urlsplit(url).query))
        # libpq's own timeout: it also covers a server that accepts and never answers
        if "connect_timeout" not in query:
            engine_kwargs = {"connect_args": {"connect_timeout": _connect_timeout()}}
    try:
        storage = DcganStorage(
            sqlalchemy_url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_s,
            grace_period=grace_s,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_RETRY, inherit_intermediate_values=False
            ),
        )
    except StoreError:
        raise
    except Exception as err:  # noqa: BLE001  (SQLAlchemy, the driver and Optuna raise many types)
        raise StoreError(describe_store_error(url, err)) from None
    storage.display_url = redact(url)
    if path is not None:
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


def _optuna_rdb_internals():
    """Optuna's ORM models and session helper, or None if this Optuna has moved them."""
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        _ = (models.TrialModel, models.TrialUserAttributeModel, models.TrialHeartbeatModel)
        return models, _create_scoped_session
    except (ImportError, AttributeError):
        return None


class DcganStorage(RDBStorage):
    """RDBStorage with an atomic claim, a crash point before every write (for the fault
    suite) and every database error turned into one StoreError line naming the store."""

    display_url = ""

    @property
    def atomic_claims(self) -> bool:
        return _optuna_rdb_internals() is not None

    def _write(self, method, *args, **kwargs):
        crash_point("store_write")
        try:
            return method(*args, **kwargs)
        except (sqlalchemy.exc.OperationalError, optuna.exceptions.StorageInternalError) as err:
            raise StoreError(describe_store_error(self.display_url or self.url, err)) from None

    def create_new_study(self, *args, **kwargs):
        return self._write(super().create_new_study, *args, **kwargs)

    def set_study_user_attr(self, *args, **kwargs):
        return self._write(super().set_study_user_attr, *args, **kwargs)

    def set_study_system_attr(self, *args, **kwargs):
        return self._write(super().set_study_system_attr, *args, **kwargs)

    def create_new_trial(self, *args, **kwargs):
        return self._write(super().create_new_trial, *args, **kwargs)

    def set_trial_param(self, *args, **kwargs):
        return self._write(super().set_trial_param, *args, **kwargs)

    def set_trial_state_values(self, *args, **kwargs):
        return self._write(super().set_trial_state_values, *args, **kwargs)

    def set_trial_intermediate_value(self, *args, **kwargs):
        return self._write(super().set_trial_intermediate_value, *args, **kwargs)

    def set_trial_user_attr(self, *args, **kwargs):
        return self._write(super().set_trial_user_attr, *args, **kwargs)

    def set_trial_system_attr(self, *args, **kwargs):
        return self._write(super().set_trial_system_attr, *args, **kwargs)

    def record_heartbeat(self, *args, **kwargs):
        return self._write(super().record_heartbeat, *args, **kwargs)

    def claim_trial(self, trial_id: int, owner: dict) -> bool:
        """WAITING -> RUNNING, the owner and the first heartbeat in ONE transaction.

        Returns False if another worker took the trial first. Falls back to two writes (state,
        then owner) if this Optuna's internals moved; the reaper heals that window."""
        internals = _optuna_rdb_internals()
        if internals is None:
            if not self.set_trial_state_values(trial_id, TrialState.RUNNING):
                return False
            self.set_trial_user_attr(trial_id, "owner", owner)
            return True
        models, scoped = internals

        def claim() -> bool:
            with scoped(self.scoped_session) as session:
                trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
                if trial.state != TrialState.WAITING:
                    return False
                trial.state = TrialState.RUNNING
                trial.datetime_start = datetime.now()
                self._set_trial_attr_without_commit(
                    session, models.TrialUserAttributeModel, trial_id, "owner", owner
                )
                beat = models.TrialHeartbeatModel.where_trial_id(trial_id, session, True)
                if beat is None:
                    session.add(models.TrialHeartbeatModel(trial_id=trial_id))
                else:
                    beat.heartbeat = session.execute(sqlalchemy.func.now()).scalar_one()
            return True

        try:
            return self._write(claim)
        except sqlalchemy.exc.IntegrityError:
            return False

    def trials_without_heartbeat(self, study_id: int, trial_ids: list[int]) -> set[int] | None:
        """Which of these trials never recorded a heartbeat (None: cannot tell)."""
        internals = _optuna_rdb_internals()
        if internals is None or not trial_ids:
            return None if internals is None else set()
        models, scoped = internals
        with scoped(self.scoped_session) as session:
            rows = (
                session.query(models.TrialHeartbeatModel.trial_id)
                .filter(models.TrialHeartbeatModel.trial_id.in_(trial_ids))
                .all()
            )
        return set(trial_ids) - {r[0] for r in rows}


def artifact_store(directory: Path | str | None = None) -> optuna.artifacts.FileSystemArtifactStore:
    """Grids and curves attached to trials: RESULTS/artifacts (locations.Paths.artifacts), which
    every command passes; there is no separate setting for it."""
    directory = Path(directory or DEFAULT_ARTIFACTS)
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
def _process_start(pid: int) -> str | None:
    """The kernel's start time of a process (clock ticks since boot): tells a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner() -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": _process_start(pid)}


def _pid_alive(pid: int, started: str | None = None) -> bool:
    """A zombie (killed, not yet reaped by its parent) counts as dead, and so does a pid that
    now belongs to a process started at another time (the pid was reused)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return True
    if fields[0] == "Z":
        return False
    return started is None or fields[19] == started


def _orphan_reason(
    t: FrozenTrial, host: str, atomic: bool, never_beat: set[int] | None, grace_s: float
) -> str | None:
    owner = t.user_attrs.get("owner")
    age = (datetime.now() - t.datetime_start).total_seconds() if t.datetime_start else 1e9
    if not isinstance(owner, dict) or not owner:
        # Claims are atomic, so a live worker never leaves a RUNNING trial without its owner;
        # without atomic claims a live worker writes it within milliseconds of the claim.
        if atomic or age > grace_s:
            return "claimed, but its worker died before recording itself (no owner)"
        return None
    if owner.get("host") == host:
        try:
            pid = int(owner.get("pid", -1))
        except (TypeError, ValueError):
            pid = -1
        return None if _pid_alive(pid, owner.get("started")) else "worker died"
    if never_beat is not None and t._trial_id in never_beat and age > grace_s:
        return f"worker on {owner.get('host')} never sent a heartbeat"
    return None  # another host's worker: its heartbeat going stale fails it (fail_stale_trials)


def reap_dead_workers(study: optuna.Study, storage: RDBStorage) -> int:
    """Fail RUNNING trials whose worker is gone, and re-enqueue them (same attributes).

    Stale heartbeats catch workers on any machine (after the grace period); a dead pid on this
    host, and a trial claimed without an owner, are caught at once, so a re-run right after a
    kill does not wait for the grace period.
    """
    callback = storage.get_heartbeat_stale_trial_callback()
    host, reaped = socket.gethostname(), 0
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    atomic = bool(getattr(storage, "atomic_claims", False))
    never_beat = None
    if running and hasattr(storage, "trials_without_heartbeat"):
        never_beat = storage.trials_without_heartbeat(
            study._study_id, [t._trial_id for t in running]
        )
    grace = float(storage.grace_period or GRACE_S)
    for t in running:
        reason = _orphan_reason(t, host, atomic, never_beat, grace)
        if reason is None:
            continue
        try:
            frozen = storage.get_trial(t._trial_id)  # the retry copies these attributes
            storage.set_trial_user_attr(t._trial_id, "failure", reason)
            if storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                if callback is not None:  # Optuna's retry: same attributes, WAITING again
                    callback(study, frozen)
                reaped += 1
        except (optuna.exceptions.UpdateFinishedTrialError, KeyError, ValueError):
            continue  # another worker reaped it first
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


def supersede_waiting(study: optuna.Study, storage: RDBStorage, planned: list[RunKey]) -> int:
    """Fail each WAITING run that the plan replaces: its arm x seed is now planned with another
    config (the spec or profile changed since it was queued), or its arm is no longer in the
    spec. Left queued, a worker would train it for nothing (session 9: 21 runs of the old 64x64
    `recipes` profile were picked up before the new plan's). Seeds outside the plan stay
    queued: `--seeds` and sequential seeds extend a plan without replacing it."""
    wanted: dict[tuple[str, int], set[str]] = defaultdict(set)  # a replicate shares arm x seed
    for arm, seed, config_hash in planned:
        wanted[(arm, seed)].add(config_hash)
    arms = {arm for arm, _, _ in planned}
    superseded = 0
    for t in waiting(study):
        if (key := run_key(t)) is None:
            continue
        arm, seed, config_hash = key
        if arm in arms and config_hash in wanted.get((arm, seed), {config_hash}):
            continue
        reason = (
            "its arm is no longer in the spec"
            if arm not in arms
            else f"arm {arm!r} seed {seed} is now planned as config {', '.join(sorted(wanted[(arm, seed)]))}"
        )
        try:
            storage.set_trial_user_attr(t._trial_id, "superseded", reason)
            superseded += bool(storage.set_trial_state_values(t._trial_id, TrialState.FAIL))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # finished meanwhile: nothing left to supersede
    return superseded


def waiting(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.WAITING,))


def _claim(storage: RDBStorage, trial_id: int) -> bool:
    if isinstance(storage, DcganStorage):
        return storage.claim_trial(trial_id, _owner())
    if not storage.set_trial_state_values(trial_id, TrialState.RUNNING):
        return False
    storage.set_trial_user_attr(trial_id, "owner", _owner())
    return True


def busy_here(study: optuna.Study) -> bool:
    """Whether a run of this study is RUNNING under a worker on this host (this one included)."""
    host = socket.gethostname()
    return any(
        (t.user_attrs.get("owner") or {}).get("host") == host
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    )


def claim_next(
    study: optuna.Study,
    storage: RDBStorage,
    may_take: Callable[[FrozenTrial], bool] = lambda t: True,
) -> optuna.Trial | None:
    """Take one WAITING run for this worker, or None when nothing is left that it may take
    (`may_take` passes over runs this worker should leave to another, or to later).

    The WAITING -> RUNNING transition is one compare-and-set transaction that also records the
    owner: exactly one worker wins it. A run enqueued twice (two machines syncing at once) is
    trained once: the lowest-numbered live trial of a key wins, later ones are failed as
    duplicates.
    """
    for _ in range(100_000):  # bounded: each pass claims or fails a trial, or returns
        queue = [t for t in waiting(study) if may_take(t)]
        if not queue:
            return None
        for t in sorted(queue, key=lambda t: t.number):
            if not _claim(storage, t._trial_id):
                continue
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
    return None


def record_failure(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """Fail a run with its reason, unless the trial was already finished elsewhere."""
    try:
        trial.set_user_attr("failure", redact_text(reason))
        study.tell(trial, state=TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
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
