"""The store as a work queue: a run is claimed by exactly one worker, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing

import optuna

from dcgan import store
from tests.pg import postgres  # noqa: F401  (a fixture)

N_RUNS, N_WORKERS = 40, 4


def _claim_all(url: str, start, claimed) -> None:
    storage = store.open_storage(url)
    study = optuna.load_study(study_name="race", storage=storage)
    start.wait()  # every worker hits the queue at the same moment
    got = []
    while (trial := store.claim_next(study, storage)) is not None:
        got.append(trial.number)
    claimed.put(got)


def _race(url: str) -> list[list[int]]:
    storage = store.open_storage(url)
    study = optuna.create_study(study_name="race", storage=storage)
    store.enqueue_missing(study, storage, [(("arm", i, "hash"), {}) for i in range(N_RUNS)])
    ctx = multiprocessing.get_context("spawn")
    start, claimed = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(url, start, claimed)) for _ in range(N_WORKERS)]
    for p in procs:
        p.start()
    start.set()
    got = [claimed.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    return got


def _assert_each_run_claimed_once(got: list[list[int]]) -> None:
    everything = [n for worker in got for n in worker]
    assert sorted(everything) == list(range(N_RUNS)), f"claims per worker: {got}"


def test_racing_workers_claim_each_run_once_on_sqlite(tmp_path):
    _assert_each_run_claimed_once(_race(f"sqlite:///{tmp_path / 'store.db'}"))


def test_racing_workers_claim_each_run_once_on_postgres(postgres):  # noqa: F811
    _assert_each_run_claimed_once(_race(postgres))


def test_a_failure_on_a_trial_finished_elsewhere_is_not_an_error(tmp_path):
    storage = store.open_storage(f"sqlite:///{tmp_path / 'store.db'}")
    study = optuna.create_study(study_name="s", storage=storage)
    store.enqueue_missing(study, storage, [(("arm", 0, "hash"), {})])
    trial = store.claim_next(study, storage)
    storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)  # reaped
    store.record_failure(study, trial, "late")
    assert "failure" not in storage.get_trial(trial._trial_id).user_attrs


def test_a_replanned_arm_supersedes_its_queued_run_and_only_that(tmp_path):
    """A spec edited between launches: the old config of a planned arm x seed and an arm the
    spec dropped are not trained; seeds beyond the plan (`--seeds` extends) stay queued."""
    storage = store.open_storage(f"sqlite:///{tmp_path / 'store.db'}")
    study = optuna.create_study(study_name="s", storage=storage)
    old = [
        ("a", 0, "old"),
        ("a", 1, "same"),
        ("a", 1, "replicate"),
        ("gone", 0, "g"),
        ("a", 7, "extra"),
    ]
    store.enqueue_missing(study, storage, [(key, {}) for key in old])
    plan = [("a", 0, "new"), ("a", 1, "same"), ("a", 1, "replicate")]  # replicate: same arm x seed
    assert store.supersede_waiting(study, storage, plan) == 2
    store.enqueue_missing(study, storage, [(key, {}) for key in plan])
    claimed = []
    while (trial := store.claim_next(study, storage)) is not None:
        claimed.append(store.run_key(study.trials[trial.number]))
        study.tell(trial, 0.0)
    assert sorted(claimed) == [
        ("a", 0, "new"),
        ("a", 1, "replicate"),
        ("a", 1, "same"),
        ("a", 7, "extra"),
    ]
    reasons = {
        store.run_key(t): t.user_attrs["superseded"]
        for t in study.trials
        if "superseded" in t.user_attrs
    }
    assert set(reasons) == {("a", 0, "old"), ("gone", 0, "g")}
    assert "config new" in reasons[("a", 0, "old")]
