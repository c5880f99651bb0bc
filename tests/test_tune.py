"""`dcgan tune` and `dcgan dashboard`: the space file, a resumable study with a global budget,
the dashboard over it, the exported recipe, and workers sharing (and dying on) PostgreSQL."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import optuna_dashboard
import pytest
import torch
from optuna.trial import TrialState

from dcgan import dashboard, store, tune, tune_space, tune_study, tune_trial
from dcgan.config import ConfigError, RunConfig
from dcgan.locations import Paths
from dcgan.metrics.fidelity import read_scores, score_run, snapshot_steps
from dcgan.recipes import build_config
from dcgan.train import read_metrics, train
from tests.pg import postgres  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "ablations" / "tune_dcgan.toml"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def tune_run(
    root: Path, n_trials: int, space=SPACE, profile="smoke", log=lambda _: None, **kwargs
) -> optuna.Study:
    """A study under `root`, on this test session's torch threads."""
    paths = Paths(root / "results", root / "reports")
    return tune.run_tuning(
        space, n_trials, profile, paths=paths, threads=torch.get_num_threads(), log=log, **kwargs
    )


def subprocess_env() -> dict:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    return root, tune_run(root, 3)


# ---- the space file ------------------------------------------------------------------------
def test_shipped_space_builds_for_every_profile():
    space = tune_space.load_space("tune_dcgan")
    assert set(space.profiles) >= {"cpu", "smoke"} and space.base_recipe == "cpu_default"
    assert space.params["beta1"].fields == ("beta1_g", "beta1_d")
    assert {
        "lr_g",
        "lr_d",
        "batch_size",
        "g_activation",
        "d_activation",
        "g_upsample",
        "loss",
        "init",
        "g_steps",
        "lr_schedule",
    } <= set(space.params)
    cfg = space.config("cpu", {"batch_size": 128, "beta1": 0.3})
    assert cfg.batch_size == 128 and cfg.beta1_g == cfg.beta1_d == 0.3
    scores = space.profile("cpu").objective.scores_per_trial
    assert len(range(cfg.snapshot_every, cfg.total_steps + 1, cfg.snapshot_every)) <= scores


def write_space(tmp_path: Path, edit) -> Path:
    text = edit(SPACE.read_text())
    path = tmp_path / "tune_bad.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "edit, key, says",
    [
        (
            lambda t: t.replace("[params.lr_d]", "[params.lr_dd]"),
            "params.lr_dd",
            "unknown RunConfig field 'lr_dd'",
        ),
        (
            lambda t: t.replace('"leaky_relu", "selu"]', '"leaky_relu", "tanh"]', 1),
            "params.g_activation.choices",
            "'tanh' is not valid",
        ),
        (
            lambda t: t.replace("low = 5e-5\nhigh = 1e-3", "low = 1e-3\nhigh = 5e-5", 1),
            "params.lr_g",
            "must be below high",
        ),
        (
            lambda t: t.replace('metric = "fid"', 'metric = "inception_score"'),
            "objective.metric",
            "unknown metric 'inception_score'",
        ),
        (
            lambda t: t.replace(
                "[params.lr_g]", "[params.kimg]\nlow = 1.0\nhigh = 2.0\n\n[params.lr_g]"
            ),
            "params.kimg",
            "budget",
        ),
        (
            lambda t: t.replace("1e-3\nlog = true", "1e-3\nlogg = true", 1),
            "params.lr_g.logg",
            "unknown key",
        ),
        (lambda t: t.replace("kimg = 10.0", "kimg = -10.0"), "profiles.cpu", "kimg"),
    ],
)
def test_bad_space_file_names_file_and_key(tmp_path, edit, key, says):
    path = write_space(tmp_path, edit)
    with pytest.raises(ConfigError) as err:
        tune_space.load_space(path)
    message = str(err.value)
    assert str(path) in message and key in message and says in message, message


# ---- a study on the embedded store ---------------------------------------------------------
def test_smoke_study_scores_every_trial_and_keeps_its_grid(smoke_study):
    root, study = smoke_study
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state in FINISHED for t in trials)
    assert study.metric_names == ["fid_mnist_200"]
    assert "lr_g" in optuna_dashboard.get_note(study)
    artifacts = store.artifact_store(root / "results" / "artifacts")
    for t in trials:
        attrs = t.user_attrs
        assert attrs["status"] in ("completed", "pruned", "diverged") and attrs["protocol"]
        assert attrs["wall_s"] > 0 and attrs["images_per_s"] > 0
        assert attrs["fid_curve"] and all(v == v for _, v in attrs["fid_curve"])  # finite scores
        # a planned, content-addressed run like an ablation's (it was results/<study>/<number>)
        assert (
            Path(attrs["run_dir"])
            == root / "results" / "runs" / RunConfig.from_dict(attrs["config"]).hash()
        )
        if t.state == TrialState.COMPLETE:
            assert t.values == [attrs["fid"]] == [attrs["fid_curve"][-1][1]]
            assert attrs["fid_curve"][-1][0] == 384  # the whole budget: 0.384 kimg
        else:
            assert attrs["pruned_reason"]
        (meta,) = optuna.artifacts.get_all_artifact_meta(t, storage=study._storage)
        with artifacts.open_reader(meta.artifact_id) as fh:
            assert fh.read()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resuming_with_a_larger_budget_runs_only_the_extra_trials(smoke_study):
    root, study = smoke_study
    before = {t.number: t.datetime_complete for t in study.get_trials()}
    study = tune_run(root, len(before) + 1)
    after = {t.number: t.datetime_complete for t in study.get_trials()}
    assert len(after) == len(before) + 1 and all(after[n] == when for n, when in before.items())
    assert all(t.state in FINISHED for t in study.get_trials())
    assert len(tune_run(root, len(after)).get_trials()) == len(after)  # budget met: nothing runs


def test_best_trial_exports_a_recipe_that_trains(smoke_study, tmp_path):
    root, study = smoke_study
    out = tmp_path / "best.json"
    recipe = tune_study.export_best(study, out)
    best = min(
        (t for t in study.get_trials() if t.state == TrialState.COMPLETE), key=lambda t: t.values[0]
    )
    payload = json.loads(out.read_text())
    assert payload == recipe and payload["source"]["trial"] == best.number
    assert payload["source"]["study"] == "tune/tune_dcgan/smoke" and payload["source"]["protocol"]
    assert payload["source"]["score"] == {"fid_mnist_200": best.values[0]}
    cfg = build_config(str(out), {"steps": 2, "log_every": 1})
    assert cfg.lr_g == best.params["lr_g"] and cfg.beta1_d == best.params["beta1"]
    assert cfg.batch_size == best.params["batch_size"] and cfg.g_width == 8  # the smoke nets
    assert build_config(str(out)).kimg == build_config("cpu_default").kimg  # not the tuning's
    assert train(cfg, tmp_path / "run")["status"] == "completed"


def test_wall_time_as_second_objective_gives_a_pareto_front(tmp_path):
    space = write_space(tmp_path, lambda t: t.replace('# second = "wall_s"', 'second = "wall_s"'))
    study = tune_run(tmp_path, 2, space=space)
    assert study.metric_names == ["fid_mnist_200", "wall_s"]
    for t in study.get_trials():
        assert t.state == TrialState.COMPLETE and not t.intermediate_values  # nothing to prune
        assert t.values == [t.user_attrs["fid"], t.user_attrs["wall_s"]]
    recipe = tune_study.export_best(study, tmp_path / "best.json")
    front = {t.number: t.values[0] for t in study.best_trials}
    assert recipe["source"]["trial"] == min(front, key=front.get)


def test_a_time_limit_makes_slow_trials_infeasible(tmp_path):
    space = write_space(tmp_path, lambda t: t.replace("# max_wall_s = 60.0", "max_wall_s = 0.001"))
    study = tune_run(tmp_path, 1, space=space)
    for t in study.get_trials():
        assert t.state in FINISHED
        assert t.system_attrs["constraints"] == [t.user_attrs["wall_s"] - 0.001]
    with pytest.raises(ConfigError, match="no completed trial"):
        tune_study.export_best(study, tmp_path / "best.json")


# ---- a trial is a planned run: scored as ablations score, resumed, re-used ---------------------
def one_trial(root: Path, name: str, pruner, params: dict):
    """tune_trial.run_trial on one trial of fixed parameters, in its own study."""
    paths = Paths(root / "results", root / "reports")
    storage = store.open_storage(paths.default_storage)
    study = optuna.create_study(study_name=name, storage=storage, pruner=pruner)
    study.enqueue_trial(params)
    trial = study.ask()
    job = tune_trial.TuneJob(
        str(SPACE), "smoke", paths.default_storage, paths, torch.get_num_threads()
    )
    space = tune_space.load_space(SPACE)
    outcome = tune_trial.run_trial(trial, space, job, store.artifact_store(paths.artifacts), {})
    study.tell(trial, outcome.values, state=outcome.state)
    return outcome, study.trials[-1], paths.runs / space.config("smoke", params).hash()


def test_a_pruned_run_resumes_to_the_same_numbers_and_a_finished_one_is_re_used(tmp_path):
    space = tune_space.load_space(SPACE)
    params = space.reference  # batch 128 at 0.384 kimg: 3 steps, scored at steps 2 and 3
    cfg = space.config("smoke", params)
    whole = tmp_path / "whole"  # the same config, trained start to end without a stop
    train(cfg, whole)
    fid_whole = [
        r["value"]
        for r in score_run(whole, "mnist", 200)
        if r["name"] == "fid_mnist_200" and r["step"] == 3
    ]

    # pruned at its first score: the folder is a run stopped at that checkpoint, nothing after
    always = optuna.pruners.ThresholdPruner(upper=0.0)  # every FID is above 0
    outcome, pruned, run_dir = one_trial(tmp_path, "pruned", always, params)
    assert outcome.state == TrialState.PRUNED and pruned.user_attrs["steps_done"] == 2
    assert pruned.user_attrs["run_dir"] == str(run_dir)
    assert [at for at, _ in pruned.user_attrs["fid_curve"]] == [192]  # half of the 384 images
    assert pruned.user_attrs["curve_unit"] == "images"
    assert sorted(snapshot_steps(run_dir)) == [2] and not (run_dir / "result.json").exists()
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == 2
    records = read_scores(run_dir)  # the ablations' record, under the ablations' protocol
    assert {r["step"] for r in records if r["kind"] == "generator"} == {2}
    fid = [r for r in records if r["name"] == "fid_mnist_200" and r["step"] == 2]
    assert [r["value"] for r in fid] == [pruned.user_attrs["fid"]]
    assert fid[0]["protocol_id"] == pruned.user_attrs["protocol"]["id"]
    assert fid[0]["metric"] == "fid" and fid[0]["extractor"] == "mnist"

    # a later trial of the same config resumes it and ends where the uninterrupted run ends
    outcome, resumed, same_dir = one_trial(tmp_path, "resumed", None, params)
    assert same_dir == run_dir and outcome.state == TrialState.COMPLETE
    assert resumed.user_attrs["resumed_from_step"] == 2
    assert resumed.values == [resumed.user_attrs["fid"]] == fid_whole
    assert [at for at, _ in resumed.user_attrs["fid_curve"]] == [192, 384]
    assert resumed.intermediate_values == {192: fid[0]["value"], 384: fid_whole[0]}
    mine = torch.load(run_dir / "snapshots" / "G_step_0000003.pt", weights_only=True)
    theirs = torch.load(whole / "snapshots" / "G_step_0000003.pt", weights_only=True)
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    steps = [(r["step"], r["d_loss"], r["g_loss"]) for r in read_metrics(run_dir)]
    assert steps == [(r["step"], r["d_loss"], r["g_loss"]) for r in read_metrics(whole)]

    # and a third finds it finished: nothing trained, nothing re-scored
    before = (run_dir / "checkpoint.pt").stat().st_mtime_ns, len(read_scores(run_dir))
    outcome, reused, _ = one_trial(tmp_path, "reused", None, params)
    assert outcome.state == TrialState.COMPLETE and reused.values == resumed.values
    assert reused.user_attrs["resumed_from_step"] == 3 and "re-used" in outcome.summary
    assert reused.user_attrs["wall_s"] > 0 and reused.user_attrs["images_per_s"] > 0
    assert ((run_dir / "checkpoint.pt").stat().st_mtime_ns, len(read_scores(run_dir))) == before


# ---- the dashboard -------------------------------------------------------------------------
def wsgi_get(app, path: str) -> tuple[str, bytes]:
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    return status[0], body


def test_dashboard_lists_the_study_and_serves_a_trial_grid(smoke_study):
    root, study = smoke_study
    storage = store.open_storage(f"sqlite:///{root / 'results' / 'store.db'}")
    app = optuna_dashboard.wsgi(
        storage, artifact_store=store.artifact_store(root / "results" / "artifacts")
    )
    status, body = wsgi_get(app, "/api/studies")
    assert status.startswith("200")
    assert study.study_name in [s["study_name"] for s in json.loads(body)["study_summaries"]]
    trial = study.get_trials()[0]
    (meta,) = optuna.artifacts.get_all_artifact_meta(trial, storage=study._storage)
    status, body = wsgi_get(
        app, f"/artifacts/{study._study_id}/{trial._trial_id}/{meta.artifact_id}"
    )
    assert status.startswith("200") and body[:8] == b"\x89PNG\r\n\x1a\n"


def test_dashboard_binds_loopback_unless_told(monkeypatch, capsys, tmp_path):
    calls = []
    monkeypatch.setattr(optuna_dashboard, "run_server", lambda storage, **kw: calls.append(kw))
    storage = f"sqlite:///{tmp_path / 'store.db'}"
    assert dashboard.command_dashboard(["--storage", storage]) == 0
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 8080
    assert "warning" not in capsys.readouterr().err
    dashboard.command_dashboard(["--storage", storage, "--host", "0.0.0.0", "--port", "9000"])
    assert calls[-1]["host"] == "0.0.0.0" and calls[-1]["port"] == 9000
    assert "warning" in capsys.readouterr().err


def _listening(port: int) -> list[str]:
    """Local addresses in LISTEN state on `port`, from /proc/net/tcp{,6}."""
    found = []
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        for line in path.read_text().splitlines()[1:] if path.exists() else []:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.append(address)
    return found


@pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="reads the listening sockets from Linux /proc"
)
def test_dashboard_server_listens_on_127_0_0_1_only(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "dcgan",
        "dashboard",
        "--storage",
        f"sqlite:///{tmp_path / 'store.db'}",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/studies", timeout=5
                ) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (
                    proc.stdout.read().decode() if proc.poll() is not None else "no answer"
                )
                time.sleep(0.3)
        assert _listening(port) == ["0100007F"]  # 127.0.0.1, and nothing else
    finally:
        proc.kill()
        proc.wait()


# ---- PostgreSQL: many workers, dead workers ------------------------------------------------
@pytest.mark.postgres
def test_two_workers_on_postgres_run_the_budget_exactly_once(postgres, tmp_path):  # noqa: F811
    lines = []
    study = tune_run(tmp_path, 4, storage_url=postgres, workers=2, log=lines.append)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(4))
    assert all(t.state in FINISHED for t in trials), [t.state for t in trials]
    assert len({t.user_attrs["owner"]["pid"] for t in trials}) == 2  # both workers took trials
    password = postgres.split(":")[2].split("@")[0]
    assert password not in "\n".join(lines) and store.redact(postgres) in lines[0]
    assert password not in json.dumps([t.user_attrs for t in trials]) + json.dumps(study.user_attrs)


KILL_PROFILE = """
[profiles.kill]
n_fake = 200
scores_per_trial = 2
[profiles.kill.overrides]
kimg = 6.4
g_width = 8
d_width = 8
"""


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("noticed_by", ["heartbeat", "pid"])
def test_killed_worker_trial_is_retried_with_the_same_params(postgres, tmp_path, noticed_by):  # noqa: F811
    space = tmp_path / f"tune_kill_{noticed_by}.toml"  # its own study on the shared server
    space.write_text(SPACE.read_text() + KILL_PROFILE)
    cmd = [
        sys.executable,
        "-m",
        "dcgan",
        "tune",
        str(space),
        "--trials",
        "1",
        "--profile",
        "kill",
        "--storage",
        postgres,
    ]
    worker = subprocess.Popen(
        cmd, cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    # A reader with a 2 s grace period sees the dead worker's heartbeat go stale within seconds.
    storage = store.open_storage(postgres, heartbeat_s=1, grace_s=2)
    name = f"tune/{space.stem}/kill"
    deadline = time.monotonic() + 120
    while True:
        assert worker.poll() is None, worker.stdout.read().decode()
        assert time.monotonic() < deadline, "the worker never started its trial"
        try:
            study = optuna.load_study(study_name=name, storage=storage)
            running = study.get_trials(states=(TrialState.RUNNING,))
        except KeyError:  # the study does not exist yet
            running = []
        if running and "owner" in running[0].user_attrs and "config" in running[0].user_attrs:
            break
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    (killed,) = running
    if noticed_by == "heartbeat":  # what a worker on another machine does
        time.sleep(3)
        optuna.storages.fail_stale_trials(study)
        states = [t.state for t in study.get_trials()]
        assert states == [TrialState.FAIL, TrialState.WAITING]
    # else the next run on this host sees the dead pid at once (the 60 s grace has not passed)
    study = tune_run(tmp_path, 1, space=space, profile="kill", storage_url=postgres)
    failed, retried = study.get_trials()
    assert failed.state == TrialState.FAIL and retried.state in FINISHED
    assert retried.params == killed.params and retried.system_attrs["failed_trial"] == killed.number


def test_best_so_far_line_rounds_and_names_the_best_trial():
    study = optuna.create_study(direction="minimize")
    study.set_metric_names(["fid_mnist_1k"])
    dist = {"lr_g": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True)}
    for lr, fid in ((0.000131234567891, 497.54321), (0.0002, 612.0)):
        study.add_trial(
            optuna.trial.create_trial(params={"lr_g": lr}, distributions=dist, value=fid)
        )
    study.add_trial(
        optuna.trial.create_trial(
            params={"lr_g": 0.0003}, distributions=dist, state=optuna.trial.TrialState.PRUNED
        )
    )
    line = tune_study.best_so_far(study)
    assert line == (
        "3/3 trials finished (2 complete, 1 pruned) · best so far: trial 0, "
        "fid_mnist_1k 497.5 (lr_g=0.000131)"
    )
    assert tune_study.format_params({"g_activation": "selu", "beta1": 0.87123456}) == (
        "g_activation=selu, beta1=0.871"
    )
