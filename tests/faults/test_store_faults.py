"""The result store under attack: mistyped URLs, servers that refuse, hang or reject the
password, damaged store files, passwords in every URL form, and workers killed before every
single store write."""

from __future__ import annotations

import multiprocessing
import os
import socket
import sqlite3
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from dcgan import faults, runner, store
from dcgan.runner import Paths, run_ablation
from dcgan.specs import load_spec
from tests.faults.conftest import run_python
from tests.faults.helpers import fake_execute, tiny_spec
from tests.pg import postgres  # noqa: F401  (fixture)

SECRET = "Tr0ub4dor-s3cret"

# ---- redaction (issue 17, item 5) ----------------------------------------------------------
REDACT = [
    ("userinfo", f"postgresql://u:{SECRET}@h/db"),
    ("userinfo with port", f"postgresql://u:{SECRET}@h:5432/db"),
    ("driver in the scheme", f"postgresql+psycopg2://u:{SECRET}@h/db"),
    ("query password", f"postgresql://u@h/db?password={SECRET}"),
    ("query password after others", f"postgresql://u@h/db?sslmode=require&password={SECRET}"),
    ("query in mixed case", f"postgresql://u@h/db?PassWord={SECRET}"),
    ("sslpassword", f"postgresql://u@h/db?sslpassword={SECRET}"),
    ("both forms", f"postgresql://u:{SECRET}@h/db?password={SECRET}"),
    ("libpq keywords", f"host=h dbname=db user=u password={SECRET}"),
    ("libpq quoted", f"host=h password='{SECRET} x' dbname=db"),
    ("empty user", f"postgresql://:{SECRET}@h/db"),
    ("password with a colon", f"postgresql://u:{SECRET}:x@h/db"),
    ("an unencoded @ in the password", f"postgresql://u:{SECRET}@x@h/db"),
    ("inside an error message", f"could not connect to postgresql://u:{SECRET}@h/db: refused"),
    ("two URLs in one text", f"a postgresql://u:{SECRET}@h/a and mysql://v:{SECRET}@g/b"),
]


@pytest.mark.fault("security")
@pytest.mark.parametrize("form,url", REDACT, ids=[r[0] for r in REDACT])
def test_passwords_are_redacted_in_every_url_form(form, url):
    shown = store.redact(url)
    assert SECRET not in shown and "***" in shown, shown


@pytest.mark.fault("security", n=2)
def test_redaction_keeps_what_identifies_the_store():
    assert store.redact("sqlite:///results/store.db") == "sqlite:///results/store.db"
    shown = store.redact(f"postgresql://user:{SECRET}@db-host:5433/dcgan?sslmode=require")
    assert shown == "postgresql://user:***@db-host:5433/dcgan?sslmode=require"


# ---- bad URLs and broken stores: one line naming the store (items 8 and storage errors) -----------
BAD_URLS = [
    ("postgres scheme", f"postgres://u:{SECRET}@h/db", "did you mean postgresql://"),
    ("two slashes", "sqlite://results/store.db", "three slashes"),
    ("a bare path", "results/store.db", "not a storage URL"),
    ("in memory", "sqlite:///:memory:", "in-memory"),
    ("http", f"http://u:{SECRET}@h/x", "unsupported scheme"),
    ("no driver", f"mysql://u:{SECRET}@h/db", "driver"),
    ("closed port", f"postgresql://u:{SECRET}@127.0.0.1:1/db", "Connection refused"),
]


@pytest.mark.fault("store")
@pytest.mark.parametrize("name,url,words", BAD_URLS, ids=[b[0] for b in BAD_URLS])
def test_a_bad_storage_url_is_one_redacted_line(tmp_path, monkeypatch, name, url, words):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(store.StoreError) as err:
        store.open_storage(url)
    message = str(err.value)
    assert words in message and "\n" not in message and SECRET not in message, message
    assert not (tmp_path / "results").exists() or name == "two slashes"


def _corrupt(path: Path) -> None:
    path.write_bytes(b"this is not a SQLite database " * 200)


STORE_FILES = [
    ("corrupt store.db", _corrupt, "not a readable SQLite database"),
    ("a directory as store.db", lambda p: p.mkdir(), "is a directory"),
    ("a zero-byte store.db", lambda p: p.write_bytes(b""), None),  # SQLite treats it as new
]


@pytest.mark.fault("store")
@pytest.mark.parametrize("name,make,words", STORE_FILES, ids=[s[0] for s in STORE_FILES])
def test_a_damaged_store_file_is_one_line(tmp_path, name, make, words):
    path = tmp_path / "store.db"
    make(path)
    url = f"sqlite:///{path}"
    if words is None:
        optuna.create_study(storage=store.open_storage(url), study_name="fine")
        return
    with pytest.raises(store.StoreError) as err:
        store.open_storage(url)
    assert words in str(err.value) and str(path) in str(err.value)


@pytest.mark.fault("store")
def test_a_store_under_a_file_is_one_line(tmp_path):
    (tmp_path / "plain").write_text("x")
    with pytest.raises(store.StoreError, match="cannot create"):
        store.open_storage(f"sqlite:///{tmp_path / 'plain' / 'store.db'}")


@pytest.mark.fault("store")
def test_a_read_only_store_is_one_line(tmp_path):
    path = tmp_path / "store.db"
    optuna.create_study(storage=store.open_storage(f"sqlite:///{path}"), study_name="a")
    storage = store.open_storage(f"sqlite:///{path}")
    # the store's file made read-only underneath the open storage (root ignores chmod, so the
    # connection itself is switched to read-only, as a read-only mount would make it)
    storage.engine.dispose()
    sqlalchemy = pytest.importorskip("sqlalchemy")

    @sqlalchemy.event.listens_for(storage.engine, "connect")
    def _read_only(dbapi_connection, _record):
        dbapi_connection.execute("PRAGMA query_only = ON")

    with pytest.raises(store.StoreError) as err:
        optuna.create_study(storage=storage, study_name="b")
    assert "read-only" in str(err.value) or "readonly" in str(err.value), str(err.value)
    assert str(path) in str(err.value)


@pytest.mark.fault("store")
def test_a_server_that_accepts_and_never_answers_times_out(tmp_path):
    """Issue 17, item 8: `ablate` hung for > 90 s, silently, on such a server."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # the kernel completes the handshake; nobody ever answers
    port = server.getsockname()[1]
    url = f"postgresql://u:{SECRET}@127.0.0.1:{port}/db"
    code = (
        "from dcgan import store\n"
        f"try:\n    store.open_storage({url!r})\n"
        "except store.StoreError as err:\n    print('STOREERROR', err)\n"
    )
    try:
        rc, out = run_python(code, timeout=60, env={"DCGAN_CONNECT_TIMEOUT": "2"})
    finally:
        server.close()
    assert rc == 0 and "STOREERROR" in out, f"hung (rc {rc}): {out[-800:]}"
    assert f"127.0.0.1:{port}" in out and SECRET not in out and "did not answer" in out, out


@pytest.mark.fault("store", n=2)
@pytest.mark.postgres
def test_a_wrong_password_or_database_is_one_redacted_line(postgres):  # noqa: F811
    good = postgres
    user_pw, host = good.split("://", 1)[1].split("@", 1)
    user = user_pw.split(":", 1)[0]
    wrong = f"postgresql://{user}:{SECRET}@{host}"
    with pytest.raises(store.StoreError) as err:
        store.open_storage(wrong)
    assert "password authentication failed" in str(err.value) and SECRET not in str(err.value)
    missing_db = good.rsplit("/", 1)[0] + "/no_such_db"
    with pytest.raises(store.StoreError, match="does not exist"):
        store.open_storage(missing_db)


@pytest.mark.fault("security")
@pytest.mark.postgres
def test_a_query_password_never_reaches_the_log_the_table_or_the_report(
    postgres,  # noqa: F811
    tmp_path,
):
    """Issue 17, item 5: a password given as ?password= was printed and put in the HTML."""
    base, _, db = postgres.rpartition("/")
    scheme_user_pw, host = base.split("@")
    scheme, user_pw = scheme_user_pw.split("://")
    user, password = user_pw.split(":", 1)
    url = f"{scheme}://{user}@{host}/{db}?password={password}"
    spec = tiny_spec(tmp_path / "specs")
    paths = Paths(tmp_path / "results", tmp_path / "reports")
    lines: list[str] = []
    run_ablation(str(spec), "tiny", storage_url=url, paths=paths, log=lines.append)
    assert all(password not in line for line in lines), [x for x in lines if password in x]
    assert any("password=***" in line for line in lines)
    for folder in (paths.results, paths.reports):
        for file in folder.rglob("*"):
            if file.is_file():
                assert password.encode() not in file.read_bytes(), file


# ---- claims and the reaper (issue 17, item 7) -------------------------------------------------
def _queue(tmp_path, n_runs=2):
    """A tiny spec's study, its runs enqueued as `ablate` does; returns (spec, url, study)."""
    spec_path = tiny_spec(tmp_path / "specs")
    seeds = list(range(n_runs))
    spec = load_spec(spec_path)
    planned = spec.plan("tiny", seeds=seeds)
    url = f"sqlite:///{tmp_path / 'results' / 'store.db'}"
    storage = store.open_storage(url)
    study = optuna.create_study(
        study_name=runner.study_name(spec, "tiny", None), storage=storage, direction="minimize"
    )
    store.enqueue_missing(
        study, storage, [((r.arm, r.seed, r.config.hash()), r.config.to_dict()) for r in planned]
    )
    return spec_path, seeds, storage, study


def _complete_once(study, expected: int) -> None:
    trials = study.get_trials(deepcopy=False)
    done = [store.run_key(t) for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == expected and len(set(done)) == expected, done
    left = [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert not left, f"trials left RUNNING/WAITING: {left}"


@pytest.mark.fault("kill/resume/concurrency")
def test_a_run_claimed_without_an_owner_is_healed_by_the_next_ablate(tmp_path, monkeypatch):
    """The state a kill between the two store writes of the old claim left (RUNNING, no owner,
    no heartbeat): every re-run said '0 newly queued' and the run stayed 'running' for ever."""
    spec_path, seeds, storage, study = _queue(tmp_path)
    first = study.get_trials(deepcopy=False)[0]
    assert RDBStorage.set_trial_state_values(storage, first._trial_id, TrialState.RUNNING)
    monkeypatch.setattr(runner, "execute_run", fake_execute())
    paths = Paths(tmp_path / "results", tmp_path / "reports")
    run_ablation(str(spec_path), "tiny", seeds=seeds, paths=paths, report=False, log=lambda s: None)
    _complete_once(study, 2 * len(seeds))


def _owner_case(tmp_path, monkeypatch, owner: dict, expect_reaped: bool, grace_s: int):
    spec_path, seeds, storage, study = _queue(tmp_path, n_runs=1)
    first = study.get_trials(deepcopy=False)[0]
    storage.claim_trial(first._trial_id, owner)
    reaper_storage = store.open_storage(storage.url, grace_s=grace_s)
    reaped = store.reap_dead_workers(study, reaper_storage)
    assert reaped == int(expect_reaped)
    state = reaper_storage.get_trial(first._trial_id).state
    assert state == (TrialState.FAIL if expect_reaped else TrialState.RUNNING)


def _dead_pid() -> int:
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=os._exit, args=(0,))
    p.start()
    p.join()
    return p.pid


@pytest.mark.fault("kill/resume/concurrency", n=4)
def test_the_reaper_tells_dead_owners_from_live_ones(tmp_path, monkeypatch):
    host = socket.gethostname()
    me = store._owner()
    # a dead pid on this host: reaped at once
    _owner_case(tmp_path / "a", monkeypatch, {"host": host, "pid": _dead_pid()}, True, 60)
    # our own pid but another start time (the pid was reused): reaped
    _owner_case(tmp_path / "b", monkeypatch, {**me, "started": "1"}, True, 60)
    # a live owner on this host: never reaped
    _owner_case(tmp_path / "c", monkeypatch, me, False, 1)
    # another host, heartbeat within the grace period: left alone
    _owner_case(tmp_path / "d", monkeypatch, {"host": "elsewhere", "pid": 1}, False, 60)


# ---- a kill before every store write, in turn --------------------------------------------------
N_RUNS = 3


def _mini_ablate(url: str, workdir: str, crash: str, counter: str, n_runs: int = N_RUNS) -> None:
    """In a forked child: what `ablate` does with the store (create the study, enqueue, a worker
    claims, heartbeats, records and tells), with a stand-in for training; SIGKILLed by the
    crash point `store_write:N` before the N-th store write."""
    faults.arm(crash)
    calls_file = Path(workdir) / "executions.txt"

    def execute(trial, job, artifacts, images):
        with open(calls_file, "a") as fh:
            fh.write(f"{trial.user_attrs['seed']}\n")
        trial.set_user_attr("result", {"status": "completed"})
        trial.set_user_attr("scores", {"fid": 1.0})
        return 1.0, "stub"

    runner.execute_run = execute
    try:
        storage = store.open_storage(url)
        study = optuna.create_study(
            study_name="crash", storage=storage, direction="minimize", load_if_exists=True
        )
        study.set_user_attr("ablation", "crash")
        store.enqueue_missing(study, storage, [(("arm", s, "h"), {}) for s in range(n_runs)])
        job = runner.WorkerJob(
            "crash",
            url,
            Paths(Path(workdir) / "results", Path(workdir) / "reports"),
            "mnist",
            10,
            1,
        )
        runner.work(job, log=lambda s: None)
    finally:
        Path(counter).write_text(str(faults.passes("store_write")))
        os._exit(0)


def _start_child(url, workdir, crash, n_runs=N_RUNS) -> multiprocessing.Process:
    counter = Path(workdir) / "writes.txt"
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=_mini_ablate, args=(url, str(workdir), crash, str(counter), n_runs))
    p.start()
    return p


def _join_child(p, crash, timeout=60) -> int:
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join()
        raise AssertionError(f"the worker hung with DCGAN_CRASH_AT={crash}")
    return p.exitcode


def _child(url, workdir, crash, timeout=60, n_runs=N_RUNS) -> int:
    """Run _mini_ablate in a forked child; returns its exit code (-9: killed at the point)."""
    return _join_child(_start_child(url, workdir, crash, n_runs), crash, timeout)


def _end_state(url, n_runs=N_RUNS) -> None:
    study = optuna.load_study(study_name="crash", storage=store.open_storage(url))
    _complete_once(study, n_runs)


def _count_writes(tmp_path) -> int:
    work = tmp_path / "count"
    work.mkdir()
    url = f"sqlite:///{work / 'store.db'}"
    assert _child(url, work, "store_write:0") == 0
    _end_state(url)
    return int((work / "writes.txt").read_text())


def _kill_then_rerun(tmp_path, k: int) -> None:
    work = tmp_path / f"k{k}"
    work.mkdir()
    url = f"sqlite:///{work / 'store.db'}"
    assert _child(url, work, f"store_write:{k}") == -9, f"no kill at store write {k}"
    assert _child(url, work, "") == 0  # the re-run
    _end_state(url)


@pytest.mark.fault("kill/resume/concurrency")
def test_kills_before_store_writes_fast_subset(tmp_path, case):
    """A kill before the first, the claim's, a middle and the last store write (the full sweep
    below is slow): after one re-run every run is complete exactly once, none left running."""
    writes = _count_writes(tmp_path)
    assert writes >= 4 * N_RUNS
    picks = sorted({1, 4, 5, 6, writes // 2, writes})
    case("kill/resume/concurrency", len(picks) - 1)  # counted before: a failure shows as unhandled
    for k in picks:
        _kill_then_rerun(tmp_path, k)


@pytest.mark.slow
def test_a_kill_before_every_store_write_then_a_rerun_finishes_every_run(tmp_path, case):
    """Issue 17, item 7 proved: SIGKILL before each store write in turn (the study's creation,
    every enqueue, every claim, heartbeat, attribute and tell), then re-run: every run complete
    exactly once, nothing RUNNING or WAITING."""
    writes = _count_writes(tmp_path)
    case("kill/resume/concurrency", writes)  # counted before: a failure shows as unhandled
    for k in range(1, writes + 1):
        _kill_then_rerun(tmp_path, k)


@pytest.mark.slow
def test_a_sequence_of_kills_at_every_write_then_a_rerun_finishes(tmp_path, case):
    """One store, killed again and again (before write 1 of the first attempt, write 2 of the
    next, ...): the damage of every kill adds up, and one clean re-run still finishes."""
    writes = _count_writes(tmp_path)
    work = tmp_path / "sequence"
    work.mkdir()
    url = f"sqlite:///{work / 'store.db'}"
    case("kill/resume/concurrency", writes)  # one kill attempted before each write
    kills = 0
    for k in range(1, writes + 1):
        kills += _child(url, work, f"store_write:{k}") == -9
    assert kills >= writes // 2
    assert _child(url, work, "") == 0
    _end_state(url)


@pytest.mark.fault("kill/resume/concurrency")
def test_two_workers_one_killed_holding_a_claim_lose_and_duplicate_nothing(tmp_path):
    """Two workers race for 8 queued runs; one is killed right after its first claim (before
    its first heartbeat); the other reaps that run and, with one re-run, every run finishes
    exactly once."""
    work = tmp_path / "race"
    work.mkdir()
    url = f"sqlite:///{work / 'store.db'}"
    storage = store.open_storage(url)  # the study and its queue exist before the race
    study = optuna.create_study(study_name="crash", storage=storage, direction="minimize")
    store.enqueue_missing(study, storage, [(("arm", s, "h"), {}) for s in range(8)])
    crashing = _start_child(url, work, "store_write:4", n_runs=8)
    # The second worker starts once the first holds its claim (store state, bounded wait):
    # started together, a fast second worker could drain the queue before the first claims
    # anything, and then nobody is killed holding a claim (CI saw exactly that on a loaded
    # host). Both are forked from this thread: a fork beside a thread inside the store can
    # inherit its locks held.
    deadline = time.monotonic() + 60
    while crashing.is_alive() and time.monotonic() < deadline:
        if any(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False)):
            break
        time.sleep(0.01)
    other = _start_child(url, work, "", n_runs=8)
    results = [_join_child(crashing, "store_write:4", 120), _join_child(other, "", 120)]
    assert sorted(results) == [-9, 0], results
    assert _child(url, work, "", n_runs=8) == 0
    _end_state(url, n_runs=8)
    failures = [
        t.user_attrs.get("failure") for t in study.get_trials() if t.state == TrialState.FAIL
    ]
    assert failures in ([], ["worker died"]), failures


@pytest.mark.fault("kill/resume/concurrency")
def test_sqlite_claims_stay_exclusive_under_a_busy_store(tmp_path):
    """Many claimers against one SQLite file: each run claimed once (BEGIN IMMEDIATE)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    storage = store.open_storage(url)
    study = optuna.create_study(study_name="race", storage=storage)
    store.enqueue_missing(study, storage, [(("arm", i, "h"), {}) for i in range(12)])
    claimed, lock = [], threading.Lock()

    def claim_all():
        s = store.open_storage(url)
        st = optuna.load_study(study_name="race", storage=s)
        while (trial := store.claim_next(st, s)) is not None:
            with lock:
                claimed.append(trial.number)

    threads = [threading.Thread(target=claim_all) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(claimed) == list(range(12))
    with sqlite3.connect(tmp_path / "store.db") as db:  # the store file is a sound database
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
