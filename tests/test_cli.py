"""`python -m dcgan train`: what the command line resolves to, and that it trains."""

from __future__ import annotations

import json

import pytest

from dcgan.cli import main

TINY = ["--steps", "2", "--set", "g_width=4", "--set", "d_width=4", "--set", "batch_size=8"]


@pytest.mark.parametrize(
    ("extra", "channels"),
    [
        ([], 1),  # the recipe's nc=3 is for colour data; MNIST trains grey, as main.py does
        (["--data", "mnist"], 1),
        (["--set", "channels=3"], 3),  # asked for explicitly: kept
        (["--data", "stacked_mnist"], 3),
    ],
)
def test_train_resolves_channels_from_the_data(tmp_path, extra, channels):
    out = tmp_path / "run"
    assert main(["train", "--recipe", "tutorial", *TINY, *extra, "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["channels"] == channels
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "completed" and result["steps_done"] == 2


def test_train_rejects_a_bad_override_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(["train", "--recipe", "tutorial", "--set", "g_activation=selu2", "--out", str(out)])
        == 2
    )
    err = capsys.readouterr().err
    assert "g_activation" in err and "leaky_relu" in err
    assert not out.exists()


# ---- the command line as a newcomer meets it ----------------------------------------------
import argparse  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from dcgan import cli  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "pandas", "optuna", "torch_fidelity", "matplotlib", "scipy")


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCGAN_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**env, **extra}


def _dcgan(*args: str, cwd=None, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dcgan", *args], cwd=cwd, env=_env(**env),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_help_lists_every_command_with_its_line_and_exits_0():
    done = _dcgan("--help")
    assert done.returncode == 0, done.stderr
    for name, summary in cli.SUMMARIES.items():
        assert name in done.stdout and summary.split()[0] in done.stdout
    for where in ("results", "reports", "DCGAN_RESULTS", "DCGAN_REPORTS", "--storage"):
        assert where in done.stdout


@pytest.mark.parametrize("command", list(cli.PARSERS))
def test_every_command_help_shows_its_defaults_and_exits_0(command, capsys):
    assert cli.main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"dcgan {command}" in out
    parser = cli.command_parser(command)
    for action in parser._actions:
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            assert action.help and "(default: " in parser.format_help(), action
    if command in ("ablate", "report", "tune", "dashboard", "gpu-check"):
        assert "--results" in out and "--storage" in out


def test_help_imports_nothing_heavy_and_prints_in_under_a_second():
    """CPU time, not wall time: the suite shares its cores (measured wall: 0.2-0.35 s)."""
    import resource

    probe = (
        "import sys, time; t = time.process_time(); import dcgan.cli as c; "
        "c.build_parser().format_help(); [c.command_parser(n).format_help() for n in c.PARSERS]; "
        f"print(time.process_time() - t, [m for m in {HEAVY!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=_env(), capture_output=True, text=True)
    seconds, heavy = done.stdout.split(" ", 1)
    assert heavy.strip() == "[]", done.stdout
    assert float(seconds) < 0.3, done.stdout
    for _ in range(3):  # the whole process, interpreter start-up included
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        assert _dcgan("ablate", "--help").returncode == 0
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        assert cpu < 1.0, f"{cpu:.2f} s CPU ({wall:.2f} s wall)"


def test_bare_command_prints_the_help(capsys):
    assert cli.main([]) == 2
    assert "commands" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    assert cli.main(["ablation"]) == 2
    assert "invalid choice" in capsys.readouterr().err


class _Captured(Exception):
    pass


def _module_parser(monkeypatch, command):
    """The parser the delegated module builds, caught as it parses."""
    import importlib

    captured = {}

    def fake(self, args=None, namespace=None):
        captured["parser"] = self
        raise _Captured

    module, function = {
        "score": ("dcgan.metrics.fidelity", "command_score"),
        "inception": ("dcgan.metrics.inception", "command_inception"),
        "train-classifier": ("dcgan.metrics.mnist_net", "command_train_classifier"),
        "build-extractor": ("dcgan.metrics.feature_nets", "command_build_extractor"),
        "choose-budget": ("dcgan.budget", "command_choose_budget"),
    }[command]
    func = getattr(importlib.import_module(module), function)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", fake)
    with pytest.raises(_Captured):
        func([])
    return captured["parser"]


def _options(parser) -> dict:
    return {
        (a.option_strings[0] if a.option_strings else a.dest): a.default
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction)
    }


@pytest.mark.parametrize(
    "command", ["score", "inception", "train-classifier", "build-extractor", "choose-budget"]
)
def test_delegated_commands_accept_what_their_help_shows(monkeypatch, command):
    """cli.py mirrors the metrics modules' parsers so that --help imports nothing heavy."""
    theirs = _options(_module_parser(monkeypatch, command))
    ours = _options(cli.command_parser(command))
    assert set(ours) == set(theirs)
    for option, default in theirs.items():
        if default is not None:  # ours may say "(default: the extractor's)" instead of None
            assert str(ours[option]) == str(default), option


def test_dry_run_on_an_empty_folder_plans_without_creating_a_store(tmp_path):
    done = _dcgan("ablate", "loss", "--profile", "smoke", "--dry-run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "4 runs planned" in out and "does not exist yet" in out and "status: 4 new" in out
    assert "to train: 4 runs" in out and "estimated" in out and "default" in out
    assert not (tmp_path / "results").exists()


def test_results_and_reports_follow_the_environment_and_the_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("DCGAN_RESULTS", str(tmp_path / "env-results"))
    monkeypatch.setenv("DCGAN_REPORTS", str(tmp_path / "env-reports"))
    args = cli.build_parser().parse_args(["ablate", "loss"])
    assert args.results == tmp_path / "env-results" and args.reports == tmp_path / "env-reports"
    args = cli.build_parser().parse_args(["ablate", "loss", "--results", "r", "--reports", "p"])
    assert args.results == Path("r") and args.reports == Path("p")
    assert str(tmp_path / "env-results") in cli.build_parser().format_help()


def test_seeds_and_workers_are_checked(capsys):
    assert cli.main(["ablate", "loss", "--seeds", "0,x"]) == 2
    assert "comma-separated integers" in capsys.readouterr().err
    assert cli.main(["ablate", "loss", "--workers", "0"]) == 2
    assert "integer >= 1" in capsys.readouterr().err


@pytest.mark.postgres
def test_report_renders_from_the_postgresql_store_the_ablation_used(tmp_path, monkeypatch, capsys):
    """$DCGAN_STORAGE is read once (locations.storage_url) by ablate *and* report: after an
    ablation on PostgreSQL, `dcgan report` renders from it, not from a local SQLite file."""
    from tests.pg import postgres_url

    with postgres_url() as url:
        monkeypatch.setenv("DCGAN_STORAGE", url)
        results, reports = tmp_path / "results", tmp_path / "reports"
        where = ["--results", str(results), "--reports", str(reports)]
        ablate = ["ablate", "loss", "--profile", "smoke", "--seeds", "0", "--workers", "1"]
        assert main([*ablate, *where]) == 0
        assert not (results / "store.db").exists()  # nothing went to the local default
        page = reports / "loss-smoke.html"
        page.unlink()
        assert main(["report", "loss", "--profile", "smoke", *where]) == 0
        assert page.exists() and "loss" in page.read_text()
        monkeypatch.delenv("DCGAN_STORAGE")  # the local default has no such ablation
        capsys.readouterr()
        assert main(["report", "loss", "--profile", "smoke", *where]) != 0
        assert "no store at" in capsys.readouterr().err
