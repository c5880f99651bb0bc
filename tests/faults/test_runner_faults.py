"""`ablate` as an adversarial user drives it: absurd --workers, resumes that would change the
thread count, a spec kept outside ablations/ under a built-in's name, runs that fail, mistyped
stores and flags. Training is replaced by a stand-in where the numbers do not matter."""

from __future__ import annotations

import shutil

import optuna
import pytest

from dcgan import runner, store
from dcgan.cli import main
from dcgan.runner import Paths, run_ablation, study_name
from dcgan.specs import ABLATIONS_DIR, load_spec
from tests.faults.helpers import fake_execute, tiny_spec

GB = 1 << 30


@pytest.fixture
def stub(monkeypatch):
    """Training replaced; spawned workers run in this process, one after another, recorded."""
    calls, jobs = [], []

    def spawn(target, worker_jobs, name, log=print):
        jobs.append(list(worker_jobs))
        target(worker_jobs[0], log)  # one of them does the work: enough for a stand-in

    monkeypatch.setattr(runner, "execute_run", fake_execute(calls))
    monkeypatch.setattr(runner, "spawn_workers", spawn)
    return calls, jobs


def _ablate(tmp_path, spec, seeds=(0,), workers=None, lines=None):
    paths = Paths(tmp_path / "results", tmp_path / "reports")
    run_ablation(
        str(spec), "tiny", seeds=list(seeds), workers=workers, paths=paths, report=False,
        log=(lines.append if lines is not None else lambda s: None),
    )  # fmt: skip
    return paths


# ---- resources (issue 17, item 9) ----------------------------------------------------------------
@pytest.mark.fault("resources")
def test_workers_1000_is_capped_by_the_runs_with_a_warning(tmp_path, stub, monkeypatch):
    """`--workers 1000` spawned 1,000 torch processes for 4 runs."""
    _, jobs = stub
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 64)
    lines: list[str] = []
    _ablate(tmp_path, tiny_spec(tmp_path / "s"), seeds=(0, 1), workers=1000, lines=lines)
    spawned = len(jobs[0]) if jobs else 1
    assert spawned == 4, spawned
    assert any("1000 workers capped to 4" in x and "queued" in x for x in lines), lines


@pytest.mark.fault("resources")
def test_explicit_workers_are_capped_by_the_cores(tmp_path, stub, monkeypatch):
    _, jobs = stub
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 2)
    lines: list[str] = []
    _ablate(tmp_path, tiny_spec(tmp_path / "s"), seeds=(0, 1, 2), workers=6, lines=lines)
    assert len(jobs[0]) == 2 and any("capped to 2" in x and "core" in x for x in lines), lines


@pytest.mark.fault("resources")
def test_explicit_workers_are_capped_by_free_memory(tmp_path, stub, monkeypatch):
    _, jobs = stub
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 16)
    monkeypatch.setattr(runner, "_available_memory", lambda: int(2.5 * GB))
    lines: list[str] = []
    _ablate(tmp_path, tiny_spec(tmp_path / "s"), seeds=(0, 1, 2), workers=8, lines=lines)
    assert len(jobs[0]) == 2 and any("free memory" in x for x in lines), lines


# ---- the thread count is fixed for an ablation's lifetime (item 2) ---------------------------------
@pytest.mark.fault("resources", n=2)
def test_a_resumed_ablation_keeps_its_thread_count(tmp_path, monkeypatch):
    """Killed with one run left, the re-run's default picked 1 worker x 2 threads instead of
    2 x 1, and that run's FID came out 702.6 instead of 583.2, silently."""
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 2)
    calls: list = []
    execute = fake_execute(calls)
    state = {"fail": True}

    def first_launch_loses_one(trial, job, artifacts, images):
        if state["fail"] and trial.user_attrs["arm"] == "b" and trial.user_attrs["seed"] == 1:
            raise RuntimeError("killed")  # the run left over
        return execute(trial, job, artifacts, images)

    def spawn(target, worker_jobs, name, log=print):
        calls.append(("spawned", len(worker_jobs), worker_jobs[0].threads))
        target(worker_jobs[0], log)

    monkeypatch.setattr(runner, "execute_run", first_launch_loses_one)
    monkeypatch.setattr(runner, "spawn_workers", spawn)
    spec = tiny_spec(tmp_path / "s")
    try:  # 4 runs: 2 workers x 1 thread; one run fails (whether `ablate` fails is tested below)
        _ablate(tmp_path, spec, seeds=(0, 1))
    except Exception as err:  # noqa: BLE001
        assert "did not complete" in str(err)
    assert ("spawned", 2, 1) in calls
    state["fail"] = False
    calls.clear()
    lines: list[str] = []
    _ablate(tmp_path, spec, seeds=(0, 1), lines=lines)  # one run left: 1 worker, still 1 thread
    assert [c for c in calls if c[0] != "spawned"] == [("b", 1, 1)], calls
    assert any("1 worker(s) x 1 thread(s)" in x for x in lines), lines
    calls.clear()
    lines.clear()
    _ablate(tmp_path, spec, seeds=(0, 1, 2), workers=1, lines=lines)  # an explicit 1 worker
    assert all(c[2] == 1 for c in calls if c[0] != "spawned"), calls
    assert any("keeps 1 thread(s)" in x for x in lines), lines


# ---- a study per spec file (item 3) ----------------------------------------------------------------
@pytest.mark.fault("security", n=2)
def test_a_spec_outside_ablations_never_takes_over_the_builtins_study(tmp_path, stub):
    """`ablate path/to/loss.toml` overwrote reports/loss-smoke.html, the CSV and the study's
    question of the built-in `loss`."""
    outside = tmp_path / "elsewhere" / "loss.toml"
    outside.parent.mkdir()
    text = (ABLATIONS_DIR / "loss.toml").read_text().replace("Does Sigmoid", "Does NOT Sigmoid")
    outside.write_text(text + "\n[profiles.tiny]\nseeds = [0]\nn_fake = 20\n")
    paths = Paths(tmp_path / "results", tmp_path / "reports")
    run_ablation(str(outside), "tiny", paths=paths, report=False, log=lambda s: None)
    names = {
        s.study_name
        for s in optuna.get_all_study_summaries(store.open_storage(paths.default_storage))
    }
    assert "ablate/loss/tiny" not in names and len(names) == 1, names
    (name,) = names
    assert name.startswith("ablate/loss-") and len(name.split("/")[1]) == len("loss-") + 8
    assert not (paths.tables / "loss-tiny.csv").exists()
    assert list(paths.tables.glob("loss-*-tiny.csv"))
    # the built-in, by name or by its own path, keeps its plain name
    assert study_name(load_spec("loss"), "smoke", None) == "ablate/loss/smoke"
    assert study_name(load_spec(ABLATIONS_DIR / "loss.toml"), "smoke", None) == "ablate/loss/smoke"


@pytest.mark.fault("security")
def test_two_outside_specs_with_one_name_get_two_studies(tmp_path):
    a, b = tiny_spec(tmp_path / "a", "same"), tiny_spec(tmp_path / "b", "same")
    assert study_name(load_spec(a), "tiny", None) != study_name(load_spec(b), "tiny", None)


# ---- failed runs fail the command ----------------------------------------------------------------
def _cli(tmp_path, monkeypatch, capsys, *argv):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DCGAN_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("DCGAN_REPORTS", str(tmp_path / "reports"))
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


@pytest.mark.fault("cli", n=2)
def test_ablate_exits_non_zero_when_a_planned_run_failed(tmp_path, monkeypatch, capsys):
    """The command exited 0 although runs FAILED."""

    def boom(trial, job, artifacts, images):
        if trial.user_attrs["arm"] == "b":
            raise RuntimeError("out of luck")
        return fake_execute()(trial, job, artifacts, images)

    monkeypatch.setattr(runner, "execute_run", boom)
    spec = tiny_spec(tmp_path / "s")
    rc, out = _cli(tmp_path, monkeypatch, capsys, "ablate", str(spec), "--profile", "tiny",
                   "--workers", "1", "--no-report", "--no-progress")  # fmt: skip
    assert rc == 1, out
    assert (
        "1 of 2 planned runs did not complete" in out
        and "b seed 0: RuntimeError: out of luck" in out
    )
    assert "Traceback" not in out
    monkeypatch.setattr(runner, "execute_run", fake_execute())
    rc, out = _cli(tmp_path, monkeypatch, capsys, "ablate", str(spec), "--profile", "tiny",
                   "--workers", "1", "--no-report", "--no-progress")  # fmt: skip
    assert rc == 0, out  # the re-run retried it


CLI_CASES = [
    ("repeated seeds", ["ablate", "loss", "--seeds", "0,0"], 2, "repeats a seed"),
    ("negative seed", ["ablate", "loss", "--seeds", "-1"], 2, "integers >= 0"),
    ("seeds not numbers", ["ablate", "loss", "--seeds", "a,b"], 2, "integers"),
    ("no seeds", ["ablate", "loss", "--seeds", ","], 2, "integers"),
    ("zero workers", ["ablate", "loss", "--workers", "0"], 2, ">= 1"),
    ("unknown ablation", ["ablate", "no_such_thing", "--profile", "smoke"], 2, "no ablation"),
    ("a directory as spec", ["ablate", "{tmp}/dir.toml"], 2, "is not a file"),
    ("profile escaping", ["ablate", "loss", "--profile", "../../x"], 2, "no profile"),
    (
        "postgres:// scheme",
        ["ablate", "loss", "--profile", "smoke", "--storage", "postgres://u:pw9@h/db"],
        2,
        "postgresql://",
    ),
    (
        "sqlite with two slashes",
        ["ablate", "loss", "--profile", "smoke", "--storage", "sqlite://x.db"],
        2,
        "three slashes",
    ),
    (
        "corrupt store",
        ["ablate", "loss", "--profile", "smoke", "--storage", "sqlite:///{tmp}/bad.db"],
        2,
        "not a readable SQLite",
    ),
    (
        "report from a mistyped store",
        ["report", "loss", "--storage", "sqlite:///{tmp}/typo/store.db"],
        2,
        "no store at",
    ),
    (
        "report from an empty store",
        ["report", "--storage", "sqlite:///{tmp}/empty.db"],
        2,
        "no results",
    ),
    ("unknown command", ["frobnicate"], 2, ""),
]


@pytest.mark.fault("cli")
@pytest.mark.parametrize("name,argv,code,words", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_a_bad_command_line_is_one_line_and_a_non_zero_exit(tmp_path, monkeypatch, capsys, name, argv, code, words):  # fmt: skip
    (tmp_path / "dir.toml").mkdir()
    (tmp_path / "bad.db").write_bytes(b"garbage " * 100)
    if name == "report from an empty store":
        optuna.create_study(storage=store.open_storage(f"sqlite:///{tmp_path}/empty.db"))
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "index.html").write_text("the old index")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    rc, out = _cli(tmp_path, monkeypatch, capsys, *argv)
    assert rc == code, out
    assert words in out and "Traceback" not in out and "pw9" not in out, out
    assert not (tmp_path / "typo").exists()  # nothing created at a mistyped store path
    assert (tmp_path / "reports" / "index.html").read_text() == "the old index"


@pytest.mark.fault("cli", n=3)
def test_an_unexpected_error_is_one_line_unless_a_traceback_is_asked_for(tmp_path, monkeypatch, capsys):  # fmt: skip
    def crash(*args, **kwargs):
        raise RuntimeError("postgresql://u:pw9@h/db went away\nsecond line")

    monkeypatch.setattr(runner, "run_ablation", crash)
    rc, out = _cli(tmp_path, monkeypatch, capsys, "ablate", "loss", "--profile", "smoke")
    assert rc == 1 and "RuntimeError" in out and "second line" not in out and "pw9" not in out
    assert "DCGAN_TRACEBACK=1" in out
    monkeypatch.setenv("DCGAN_TRACEBACK", "1")
    with pytest.raises(RuntimeError):
        main(["ablate", "loss", "--profile", "smoke"])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.delenv("DCGAN_TRACEBACK")
    monkeypatch.setattr(runner, "run_ablation", interrupted)
    rc, out = _cli(tmp_path, monkeypatch, capsys, "ablate", "loss", "--profile", "smoke")
    assert rc == 130 and "re-run" in out


@pytest.mark.fault("cli")
def test_report_of_a_real_store_still_works_after_the_checks(tmp_path, stub, monkeypatch, capsys):
    spec = tiny_spec(tmp_path / "s")
    shutil.copy(spec, tmp_path / "copy.toml")
    _ablate(tmp_path, spec)
    url = f"sqlite:///{tmp_path / 'results' / 'store.db'}"
    storage = store.open_storage(url, must_exist=True)
    assert any(s.study_name.startswith("ablate/") for s in optuna.get_all_study_summaries(storage))
