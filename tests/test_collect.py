"""The store stage re-reads a run's scores from its folder when evaluation was re-run alone."""

from __future__ import annotations

import json
from types import SimpleNamespace

from dcgan import collect
from dcgan.metrics import fidelity


def _records(extractor: str, fid_by_step: dict[int, float], n_fake: int = 1000) -> list[dict]:
    protocol = {"id": f"p-{extractor}", "version": fidelity.PROTOCOL_VERSION, "n_fake": n_fake,
                "extractor": extractor}  # fmt: skip
    return [
        fidelity._record(
            "fid", extractor, f"fid_{extractor}_1k", v, s, s * 0.064, "generator", protocol
        )
        for s, v in fid_by_step.items()
    ] + [
        fidelity._record(
            "fid", extractor, f"fid_{extractor}_1k", 1.1, None, None, "floor", protocol
        )
    ]


def _run_dir(tmp_path, records):
    (tmp_path / "config.json").write_text(json.dumps({"batch_size": 64}))
    (tmp_path / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return tmp_path


def test_rescored_run_gives_every_feature_space_at_the_last_good_snapshot(tmp_path):
    run_dir = _run_dir(
        tmp_path,
        _records("mnist", {250: 40.0, 500: 20.0, 750: float("nan")})
        + _records("randcnn", {250: 9.0, 500: 5.0, 750: 4.0}),
    )
    prof = SimpleNamespace(extractors=("mnist", "randcnn"), extractor="mnist", n_fake=1000)
    summary = collect._rescored(run_dir, prof)
    final = summary["final"]
    assert final["scored_step"] == 500  # the last snapshot with a finite primary FID
    assert final["fid"] == 20.0 and final["fid_mnist"] == 20.0 and final["fid_randcnn"] == 5.0
    assert summary["floor"]["fid"] == 1.1
    assert [r[0] for r in summary["rows"] if r[3] == "randcnn"] == [250, 500, 750]


def test_a_run_not_rescored_in_every_space_keeps_the_store_scores(tmp_path):
    run_dir = _run_dir(tmp_path, _records("mnist", {250: 40.0}))
    prof = SimpleNamespace(extractors=("mnist", "randcnn"), extractor="mnist", n_fake=1000)
    assert collect._rescored(run_dir, prof) is None
    other_n = SimpleNamespace(extractors=("mnist",), extractor="mnist", n_fake=200)
    assert collect._rescored(run_dir, other_n) is None  # another protocol's N: not this table's
    assert collect._rescored(tmp_path / "absent", prof) is None


def test_exported_table_cells_cannot_run_as_spreadsheet_formulas(tmp_path):
    from tests.report.conftest import build_results

    results = build_results(tmp_path / "grids")
    results.runs.loc[0, "divergence_reason"] = '=HYPERLINK("http://x")'
    paths = SimpleNamespace(tables=tmp_path / "tables", runs=tmp_path / "runs")
    out = collect.export_table(results, paths)
    text = out.read_text()
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text


def _env(cpu="CPU A", threads=2, commit="abc"):
    return {"cpu": cpu, "cpu_count": 16, "gpu": None, "device": "cpu", "torch_threads": threads,
            "packages": {"torch": "2.14.1", "torch-fidelity": "0.4.0"}, "git_commit": commit}  # fmt: skip


def test_a_runs_provenance_is_its_own_record_never_the_readers(tmp_path):
    from dcgan.rundir import RunDir

    recorded = {"environments": [_env()], "complete": True}
    assert collect.run_provenance({"provenance": recorded}) == recorded
    run = RunDir(tmp_path / "run")
    run.write_result({"status": "completed", "provenance": recorded})
    assert collect.run_provenance({"status": "completed"}, run) == recorded  # from the folder
    older = RunDir(tmp_path / "older")
    older.write_result({"status": "completed"})
    assert collect.run_provenance({"status": "completed"}, older) is None  # not recorded
    assert collect.run_provenance({}, tmp_path / "absent") is None


def test_provenance_across_runs_flags_a_mixture():
    from dcgan import environment

    one = {"environments": [_env()], "complete": True}
    same = environment.summarise([one, one, None])
    assert not same["mixed"] and same["not_recorded"] == 1 and same["runs"] == 3
    assert [e["runs"] for e in same["environments"]] == [2]
    assert "CPU A" in same["environments"][0]["description"]
    assert "git abc" in same["environments"][0]["description"]
    # another thread count alone is no other environment (execution replicates differ in it)
    threads = environment.summarise([one, {"environments": [_env(threads=1)]}])
    assert not threads["mixed"] and threads["threads"] == {"2": 1, "1": 1}
    other = {"environments": [_env(cpu="CPU B", commit="def")], "complete": True}
    resumed = {"environments": [_env(), _env(cpu="CPU B", commit="def")], "complete": False}
    mixed = environment.summarise([one, other, resumed])
    assert mixed["mixed"] and len(mixed["environments"]) == 2
    assert sorted(e["runs"] for e in mixed["environments"]) == [2, 2]
    assert mixed["partly_recorded"] == 1
    assert environment.summarise([None, None])["environments"] == []


def test_the_rendering_machine_is_labelled_as_such():
    stamp = collect.rendered_on()
    assert all(k.startswith("rendered") for k in stamp)
    assert "not the runs'" in next(iter(stamp))


def test_execution_spread_while_the_main_run_is_not_scored_yet():
    """The live report collects mid-ablation: a replicate's main run may have no FID yet."""
    import pandas as pd

    from dcgan.config import RunConfig
    from dcgan.specs import PlannedRun

    rep = PlannedRun("base", 0, RunConfig(threads=2), execution=1)
    runs = pd.DataFrame([{"arm": "base", "seed": 0, "fid": None}])
    frame = collect._executions([rep], {}, runs)
    assert frame["fid_main"].isna().all() and frame["fid_replicate"].isna().all()
    runs.loc[0, "fid"] = 12.5
    assert collect._executions([rep], {}, runs)["fid_main"].iloc[0] == 12.5


def test_a_study_that_cannot_be_collected_is_listed_with_its_reason(tmp_path):
    """The index shows every ablation in the store; one whose spec is gone says why."""
    import optuna

    from dcgan import store
    from dcgan.locations import Paths

    storage = store.open_storage(f"sqlite:///{tmp_path / 'store.db'}")
    optuna.create_study(study_name="ablate/no_such_spec/cpu", storage=storage)
    rows = collect.summaries(storage, Paths(tmp_path / "results", tmp_path / "reports"))
    assert len(rows) == 1
    assert rows[0]["verdict"].startswith("not shown:") and "no_such_spec" in rows[0]["verdict"]
