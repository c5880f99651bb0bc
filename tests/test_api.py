"""A smoke ablation run as a user runs it (the command line, --results/--reports), then read
back as a notebook, a run-folder index, optuna-dashboard and a live report would read it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import pandas as pd
import pytest

import dcgan
from dcgan import cli, progress, store
from dcgan.collect import collect_results
from dcgan.config import ConfigError
from dcgan.report import render_report
from dcgan.runner import Paths
from dcgan.specs import load_spec

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- notebook-example -->"


@pytest.fixture(scope="module")
def ablated(tmp_path_factory):
    """`dcgan ablate loss --profile smoke` with explicit locations, one worker."""
    root = tmp_path_factory.mktemp("user")
    results, reports = root / "results", root / "reports"
    argv = ["ablate", "loss", "--profile", "smoke", "--workers", "1", "--results", str(results), "--reports", str(reports)]  # fmt: skip
    assert cli.main(argv) == 0
    return root, Paths(results, reports)


def _study(paths: Paths) -> optuna.Study:
    return optuna.load_study(
        study_name="ablate/loss/smoke", storage=store.open_storage(paths.default_storage)
    )


def test_ablation_writes_where_it_was_told(ablated, capsys):
    root, paths = ablated
    assert (paths.reports / "loss-smoke.html").exists() and (paths.reports / "index.html").exists()
    assert (paths.results / "store.db").exists() and (paths.runs / "INDEX.csv").exists()
    table = pd.read_csv(paths.tables / "loss-smoke.csv")
    assert (table["loss"] == table["arm"]).all()  # one column per factor, named after the field


def test_load_results_gives_a_tidy_table_and_the_results(ablated):
    _, paths = ablated
    table, results = dcgan.load_results("loss", profile="smoke", results=paths.results)
    assert list(table.columns[:5]) == ["ablation", "profile", "arm", "seed", "loss"]
    assert {"status", "fid", "kid", "run_dir", "config_hash"} <= set(table.columns)
    assert len(table) == 4 and set(table["status"]) <= {"completed", "diverged"}
    assert (table["loss"] == table["arm"]).all()
    assert all(Path(d).is_dir() for d in table["run_dir"])
    assert results.baseline == "bce" and results.profile == "smoke"


def test_load_results_says_what_to_run_when_there_is_nothing(tmp_path):
    with pytest.raises(ConfigError, match="dcgan ablate loss --profile smoke"):
        dcgan.load_results("loss", profile="smoke", results=tmp_path / "empty")


def _examples() -> list[str]:
    """Every python block right after the marker, in docs/usage.md and in the README."""
    blocks = []
    for doc in (ROOT / "docs" / "usage.md", ROOT / "README.md"):
        text = doc.read_text(encoding="utf-8") if doc.exists() else ""
        blocks += re.findall(re.escape(MARKER) + r"\s*```python\n(.*?)```", text, re.S)
    return blocks


def test_the_documented_notebook_example_runs(ablated, monkeypatch, capsys):
    root, paths = ablated
    examples = _examples()
    assert examples, f"no python block after {MARKER} in docs/usage.md"
    monkeypatch.chdir(root)  # the example reads ./results, as a user's notebook would
    monkeypatch.delenv("DCGAN_RESULTS", raising=False)
    for code in examples:
        exec(compile(code, "notebook-example", "exec"), {})
        assert "bce_logits" in capsys.readouterr().out


def test_run_folders_have_a_readable_index(ablated):
    _, paths = ablated
    index = pd.read_csv(paths.runs / "INDEX.csv")
    mine = index[(index["ablation"] == "loss") & (index["profile"] == "smoke")]
    assert sorted(zip(mine["arm"], mine["seed"], strict=True)) == [
        ("bce", 0), ("bce", 1), ("bce_logits", 0), ("bce_logits", 1),
    ]  # fmt: skip
    for run_dir, config_hash in zip(mine["run_dir"], mine["config_hash"], strict=True):
        assert Path(run_dir).name == config_hash and (Path(run_dir) / "config.json").exists()


def test_dry_run_after_the_ablation_has_nothing_to_train(ablated, capsys):
    _, paths = ablated
    argv = ["ablate", "loss", "--profile", "smoke", "--dry-run", "--results", str(paths.results)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "status: 4 done" in out and "nothing to train" in out


def test_a_new_seed_is_planned_with_a_measured_rate(ablated, capsys):
    _, paths = ablated
    argv = ["ablate", "loss", "--profile", "smoke", "--seeds", "0,1,2", "--dry-run", "--results", str(paths.results)]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "4 done, 2 new" in out and "to train: 2 runs" in out
    assert "not measured" not in out  # img/s comes from the finished runs of the same config


def _wsgi_get(app, path: str, query: str = "") -> tuple[str, bytes]:
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "QUERY_STRING": query}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    return status[0], body


def test_dashboard_shows_what_each_trial_is(ablated):
    import optuna_dashboard

    _, paths = ablated
    study = _study(paths)
    app = optuna_dashboard.wsgi(
        study._storage, artifact_store=store.artifact_store(paths.artifacts)
    )
    status, body = _wsgi_get(app, f"/api/studies/{study._study_id}", "after=0")
    assert status.startswith("200")
    detail = json.loads(body)
    assert {p["name"] for p in detail["union_search_space"]} == {"loss", "seed"}
    for trial in detail["trials"]:
        params = {p["name"]: p["param_external_value"] for p in trial["params"]}
        arm, seed = params["loss"], params["seed"]
        assert trial["note"]["body"].startswith(f"## arm {arm} · seed {seed}")
        curve = study.trials[trial["number"]].user_attrs["fid_curve"]
        assert len(trial["intermediate_values"]) == len(curve)  # FID per snapshot
    assert study.metric_names and study.metric_names[0].startswith("fid_")
    (report,) = [a for a in detail["artifacts"] if a["mimetype"] == "text/html"]
    status, body = _wsgi_get(app, f"/artifacts/{study._study_id}/{report['artifact_id']}")
    assert status.startswith("200") and b"<html" in body[:200]
    status, body = _wsgi_get(
        app, f"/api/studies/{study._study_id}/param_importances", "evaluator=fanova"
    )
    assert status.startswith("200"), body[:300]


def test_a_second_render_replaces_the_attached_report(ablated):
    from dcgan import dashboard

    _, paths = ablated
    study = _study(paths)
    page = paths.reports / "loss-smoke.html"
    dashboard.attach_report(study, page, paths.artifacts)
    reports = [
        m
        for m in optuna.artifacts.get_all_artifact_meta(study, storage=study._storage)
        if m.mimetype == "text/html"
    ]
    assert len(reports) == 1


def test_progress_lines_while_the_ablation_ran(ablated):
    _, paths = ablated
    lines = []
    spec = load_spec("loss")
    planned = spec.plan("smoke", [0, 1, 2])  # seed 2 never ran: 4 of 6 done
    rendered = []
    monitor = progress.AblationMonitor(
        label="loss [smoke]", study_name="ablate/loss/smoke", storage_url=paths.default_storage,
        runs_dir=paths.runs, planned=planned, estimates={}, workers=1, log=lines.append,
        live_report=lambda: rendered.append(1), interval_s=0.05, live_min_interval_s=0,
    )  # fmt: skip
    monitor.start()
    import time

    time.sleep(0.5)
    snap = monitor.stop()
    assert (snap.done, snap.total) == (4, 6)
    assert lines and lines[0].startswith("loss [smoke] 4/6 runs") and "ETA" in lines[0]
    assert rendered == [1]  # re-rendered once for the new finished runs, not on every tick


def test_live_report_says_it_is_in_progress(ablated, tmp_path):
    _, paths = ablated
    study = _study(paths)
    spec = load_spec("loss")
    results = collect_results(spec, "smoke", study, study._storage, paths, seeds=[0, 1, 2])
    html = render_report(results, tmp_path, in_progress=True).read_text()
    assert "In progress: 4 of 6 runs" in html and 'http-equiv="refresh"' in html
    html = render_report(results, tmp_path).read_text()
    assert "In progress" not in html and "refresh" not in html


class _Cfg:
    total_steps = 100

    def __init__(self, h):
        self.h = h

    def hash(self):
        return self.h


class _Run:
    """A planned run as the monitor reads it: arm, seed 0, config hash, replicate flag."""

    def __init__(self, arm, h, execution=0):
        self.arm, self.seed, self.config, self.execution = arm, 0, _Cfg(h), execution


def _monitor(planned, workers=2):
    monitor = progress.AblationMonitor(
        label="x", study_name="s", storage_url="sqlite://", runs_dir=Path("."), planned=planned,
        estimates={(r.arm, 0, r.config.h): 10.0 for r in planned}, workers=workers,
    )  # fmt: skip
    monitor._done_at_start = set()
    return monitor


def test_eta_follows_the_observed_speed():
    monitor = _monitor([_Run("a", "1"), _Run("b", "2"), _Run("c", "3"), _Run("d", "4")])
    keys = monitor.keys
    assert monitor._eta(set(), [], 0.0) == pytest.approx(20.0)  # the model: 40 s over 2 workers
    half = [progress.InFlight("c", 0, "training", 50, 100)]
    # 2.5 runs' worth of work done in 50 s: 1.5 left take 30 s at that speed
    assert monitor._eta({keys[0], keys[1]}, half, 50.0) == pytest.approx(30.0)
    line = progress.format_line("x", progress.Snapshot(2, 4, 0, half, 50.0, 30.0))
    assert line == "x 2/4 runs · training c/0 step 50/100 · 50 s elapsed · ETA 30 s"


def test_eta_counts_a_replicate_as_holding_every_worker():
    """An execution replicate trains alone on the host (runner.alone_if_wider): its seconds add
    to the wall clock whole, while the other runs share the workers."""
    monitor = _monitor([_Run("a", "1"), _Run("b", "2"), _Run("c", "3"), _Run("a", "4", 1)])
    assert monitor._eta(set(), [], 0.0) == pytest.approx(3 * 10 / 2 + 10)
