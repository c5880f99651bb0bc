"""The one worker engine (dcgan/worker.py): claim -> heartbeat -> execute -> tell, its retry
policies, and the layering it sits in. No training: `execute` is a stand-in."""

import ast
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from dcgan import store
from dcgan.worker import Outcome, Retry, serve

ROOT = Path(__file__).resolve().parent.parent


def _study(tmp_path, n: int, directions=("minimize",)) -> tuple[optuna.Study, object]:
    storage = store.open_storage(f"sqlite:///{tmp_path / 'store.db'}")
    study = optuna.create_study(study_name="w", storage=storage, directions=list(directions))
    for i in range(n):
        study.enqueue_trial({}, user_attrs={"i": i}, skip_if_exists=False)
    return study, storage


def test_serve_runs_every_waiting_trial_once_and_tells_each_outcome(tmp_path):
    study, storage = _study(tmp_path, 3)
    seen, lines = [], []

    def execute(trial):
        i = trial.user_attrs["i"]
        seen.append(i)
        if i == 1:
            return Outcome(TrialState.PRUNED, None, "pruned: worse than the median")
        return Outcome(TrialState.COMPLETE, float(i), f"fid {i}")

    ran = serve(
        study, storage, execute, retry=Retry.NEVER, worker=3,
        label=lambda t: f"trial {t.number}", after_each=lambda: "best so far", log=lines.append,
    )  # fmt: skip
    assert ran == 3 and sorted(seen) == [0, 1, 2]
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    assert [t.value for t in study.get_trials()] == [0.0, None, 2.0]
    assert lines == [
        "[w3] trial 0: fid 0", "[w3] best so far",
        "[w3] trial 1: pruned: worse than the median", "[w3] best so far",
        "[w3] trial 2: fid 2", "[w3] best so far",
    ]  # fmt: skip
    assert all("owner" in t.user_attrs for t in study.get_trials())  # claimed, not asked


def test_a_worker_whose_parent_died_finishes_its_run_and_claims_no_more(tmp_path, monkeypatch):
    study, storage = _study(tmp_path, 3)
    parent = {"alive": True}

    class Parent:
        def is_alive(self):
            return parent["alive"]

    monkeypatch.setattr("multiprocessing.parent_process", lambda: Parent())

    def execute(trial):
        parent["alive"] = False  # `dcgan ablate` killed while this run trains
        return Outcome(TrialState.COMPLETE, 1.0, "done")

    lines = []
    assert serve(study, storage, execute, retry=Retry.NEVER, log=lines.append) == 1
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.WAITING, TrialState.WAITING]
    assert "gone" in lines[-1]


@pytest.mark.parametrize("retry", list(Retry))
def test_a_failure_is_recorded_with_its_policy_and_the_worker_goes_on(tmp_path, retry):
    study, storage = _study(tmp_path, 2)
    lines = []

    def execute(trial):
        if trial.user_attrs["i"] == 0:
            raise RuntimeError("disk full")
        return Outcome(TrialState.COMPLETE, [1.0], "ok")

    assert serve(study, storage, execute, retry=retry, log=lines.append) == 2
    failed, done = study.get_trials()
    assert (
        failed.state == TrialState.FAIL
        and failed.user_attrs["failure"] == "RuntimeError: disk full"
    )
    assert done.state == TrialState.COMPLETE and done.value == 1.0
    assert lines[0] == f"[w0] trial 0: FAILED: RuntimeError: disk full ({retry.value})"
    assert not store.waiting(study)  # neither policy re-enqueues in the worker


def test_a_trial_finished_elsewhere_is_given_up_not_failed(tmp_path):
    """A stalled worker whose trial the store failed as stale (and retried) says so and goes on."""
    study, storage = _study(tmp_path, 1)
    lines = []

    def execute(trial):
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)  # what the reaper does
        trial.set_user_attr("scores", {"fid": 1.0})  # the stalled worker writes its results
        return Outcome(TrialState.COMPLETE, 1.0, "late")

    assert serve(study, storage, execute, retry=Retry.NEXT_LAUNCH, log=lines.append) == 0
    assert lines == ["[w0] trial 0: given up (another worker retries it)"]
    assert study.get_trials()[0].state == TrialState.FAIL


# ---- layering ------------------------------------------------------------------------------
# Each module imports only from modules below it (module-level and function-level imports).
LOWER_ONLY = {
    "worker": {"runner", "tune", "tune_trial", "tune_study", "tune_space", "dashboard", "cli"},
    "tune_space": {"tune", "tune_trial", "tune_study", "runner", "worker", "dashboard"},
    "tune_study": {"tune", "tune_trial", "runner", "worker", "dashboard"},
    "tune_trial": {"tune", "runner", "dashboard"},
    "tune": {"runner", "dashboard"},
    "runner": {"tune", "tune_trial", "tune_study", "tune_space"},
    "dashboard": {"runner", "tune", "tune_trial", "tune_study", "tune_space"},
}


def _dcgan_imports(module: str) -> set[str]:
    tree = ast.parse((ROOT / "dcgan" / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dcgan."):
            found.add(node.module.split(".")[1])
    return found


@pytest.mark.parametrize("module", sorted(LOWER_ONLY))
def test_modules_import_only_from_lower_layers(module):
    assert not _dcgan_imports(module) & LOWER_ONLY[module]


def test_no_module_of_the_engine_or_the_tuner_is_over_400_lines():
    for module in ("worker", "runner", "tune", "tune_space", "tune_study", "tune_trial"):
        lines = len((ROOT / "dcgan" / f"{module}.py").read_text().splitlines())
        assert lines <= 400, (module, lines)


def test_importing_the_worker_imports_neither_torch_nor_the_runner_nor_the_tuner():
    probe = (
        "import sys, dcgan.worker; print(sorted(m for m in ('torch', 'dcgan.runner', "
        "'dcgan.tune', 'dcgan.tune_trial') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
