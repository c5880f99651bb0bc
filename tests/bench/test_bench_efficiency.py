"""Ablation-level efficiency: where the wall time of one `cpu` run goes, phase by phase.

The run: the `activation` spec's baseline arm, seed 0, planned by `load_spec("activation")
.plan("cpu", [0])` (conftest.cpu_baseline; DCGAN_BENCH_QUICK shrinks its budget), trained
and scored through the worker's own code path, `runner.execute_run`, on a fresh SQLite
store in a temp folder, with the profile's extractors (mnist, randcnn) and n_fake (1,000).

Phases, each timed once with `time.perf_counter` (one run: no rounds, no minimum):

- process start-up: `python -c "import dcgan.runner"` in a subprocess (what every worker
  process pays before its first run); timed twice, the faster is the phase's figure;
- data decode: `load_images` with the in-process digit cache cleared (a fresh worker's);
- reference features, per protocol: `fidelity.reference_features` into an empty cache dir
  (DCGAN_CACHE_DIR -> a temp folder), with the extractor-net cache cleared: computed once
  per protocol for a whole ablation, then read from the cache file;
- store setup: create the study, enqueue the run, set its factors (`dashboard`), as
  `run_ablation` does before its workers start;
- training: `train(...)` as execute_run calls it (timed by wrapping `runner.train`);
- scoring: `score_run(run_dir, extractor=[mnist, randcnn], n_fake=1000)` of every snapshot
  (timed by wrapping `fidelity.score_run`), the reference features already cached;
- store writes and run bookkeeping: the rest of claiming, executing and telling the trial
  (claim, heartbeat, run-folder lock and integrity check, summary, user attributes, the
  dashboard note, artifact uploads, tell) = that block's time minus training and scoring;
- report render: `collect_results` + `export_table` + `render_report` with this one run in
  the store (an ablation's final page holds all its runs: this is a lower bound of it). If
  collecting the whole `cpu` plan with one run done raises, a one-run view of the spec is
  rendered instead and the error is printed beside the figure (`_render_report`).

Shares are of the sum of the phases. "Scoring share of a run" is scoring / (training +
scoring + store writes), the work every run repeats (start-up, decode, reference features,
store setup and the report are paid once per worker or per ablation); the goal is < 10%.
Nothing about time is asserted. What is asserted: reference features are computed once per
protocol (the cold phase computes each once; neither the run's scoring nor a second
score_run of another run folder computes them again, and the cache files stay unmodified).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import optuna
import torch

from dcgan import dashboard, runner, store
from dcgan.data import load_images, mnist_digits
from dcgan.locations import Paths, study_name
from dcgan.metrics import extractors as extractor_nets
from dcgan.metrics import fidelity

from .conftest import EFFICIENCY, QUICK, cpu_baseline


def _startup_s() -> list[float]:
    times = []
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import dcgan.runner"], check=True)
        times.append(time.perf_counter() - start)
    return times


def _counting(fn, calls: list):
    def wrapped(*args, **kwargs):
        calls.append(1)
        return fn(*args, **kwargs)

    return wrapped


def _timed(fn, into: dict, key: str):
    def wrapped(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            into[key] = into.get(key, 0.0) + time.perf_counter() - start

    return wrapped


def _render_report(spec, study, storage, paths, cfg) -> tuple[str, float, Path, str]:
    """collect + table + page, as run_ablation does after its workers (and its live report as
    runs finish). The whole `cpu` plan first; if collecting that raises with only this run
    done, a one-run view of the spec (this arm, seed 0, no replicate, this run's budget) is
    rendered instead and the error is reported with the figure."""
    from dcgan.collect import collect_results, export_table
    from dcgan.report import render_report

    def render(spec_) -> Path:
        results = collect_results(spec_, "cpu", study, storage, paths, seeds=[0])
        export_table(results, paths)
        return render_report(results, paths.reports, in_progress=True)

    start = time.perf_counter()
    try:
        page = render(spec)
        return "report render (whole plan, 1 run done)", time.perf_counter() - start, page, ""
    except Exception as err:  # noqa: BLE001 (reported below, with what was measured instead)
        where = traceback.extract_tb(err.__traceback__)[-1]
        note = (
            f"report of the whole cpu plan with 1 run done raised {type(err).__name__}: {err} "
            f"({Path(where.filename).name}:{where.lineno})"
        )
    prof = spec.profile("cpu")
    one_run = dataclasses.replace(
        spec,
        arms={spec.baseline: spec.arms[spec.baseline]},
        profiles={
            **spec.profiles,
            "cpu": dataclasses.replace(
                prof, replicates=False, overrides={**prof.overrides, "kimg": cfg.kimg}
            ),
        },
    )
    assert one_run.plan("cpu", [0])[0].config.hash() == cfg.hash()
    start = time.perf_counter()
    page = render(one_run)
    phase = "report render (one-run view of the spec: see note)"
    return phase, time.perf_counter() - start, page, note + "; measured a one-run view instead"


def test_cpu_run_phases(benchmark, tmp_path, monkeypatch):
    spec, prof, planned = cpu_baseline("activation")
    cfg = planned.config
    extractors = list(prof.extractors or (prof.extractor,))
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("DCGAN_CACHE_DIR", str(cache_dir))
    references: list = []  # one entry per reference computed (not read from the cache)
    monkeypatch.setattr(
        fidelity, "summarise_reference", _counting(fidelity.summarise_reference, references)
    )
    inner: dict[str, float] = {}
    monkeypatch.setattr(runner, "train", _timed(runner.train, inner, "train"))
    monkeypatch.setattr(fidelity, "score_run", _timed(fidelity.score_run, inner, "score"))
    phases: dict[str, float] = {}
    out: dict = {}

    def one_run() -> None:
        startup = _startup_s()
        phases["process start-up (import dcgan.runner, best of 2)"] = min(startup)
        out["startup_s"] = startup

        mnist_digits.cache_clear()
        start = time.perf_counter()
        images = load_images(cfg.data, cfg.image_size, cfg.channels)
        phases["data decode (load_images, cold)"] = time.perf_counter() - start

        extractor_nets.create_extractor.cache_clear()
        for name in extractors:
            protocol = fidelity.make_protocol(images, name, prof.n_fake, cfg.device)
            start = time.perf_counter()
            fidelity.reference_features(images, protocol)
            phases[f"reference features: {name} (cold cache, once per ablation)"] = (
                time.perf_counter() - start
            )
        out["references_cold"] = len(references)

        paths = Paths(tmp_path / "results", tmp_path / "reports")
        url = paths.default_storage
        start = time.perf_counter()
        storage = store.open_storage(url)
        study = optuna.create_study(
            study_name=study_name(spec, "cpu", None),
            storage=storage,
            direction="minimize",
            load_if_exists=True,
        )
        for key, value in (("ablation", spec.name), ("question", spec.question)):
            study.set_user_attr(key, value)
        study.set_user_attr("profile", "cpu")
        key = (planned.arm, planned.seed, cfg.hash())
        assert store.enqueue_missing(study, storage, [(key, cfg.to_dict())]) == 1
        dashboard.set_trial_params(study, storage, [planned], log=lambda line: None)
        phases["store setup (study, enqueue, factors)"] = time.perf_counter() - start

        job = runner.WorkerJob(
            study.study_name, url, paths, tuple(extractors), prof.n_fake, torch.get_num_threads()
        )
        artifacts = store.artifact_store(paths.artifacts)
        start = time.perf_counter()
        trial = store.claim_next(study, storage)
        with store.heartbeat(storage, trial._trial_id):
            data_key = (cfg.data, cfg.image_size, cfg.channels)
            value, summary = runner.execute_run(trial, job, artifacts, {data_key: images})
            study.tell(trial, value)
        block = time.perf_counter() - start
        out["references_in_run"] = len(references) - out["references_cold"]
        out["summary"] = summary
        out["run_dir"] = Path(study.trials[0].user_attrs["run_dir"])
        phases[f"training (train, {cfg.total_steps} steps)"] = inner["train"]
        n_snapshots = len(fidelity.snapshot_steps(out["run_dir"]))
        phases[f"scoring (score_run, {n_snapshots} snapshots x {len(extractors)} spaces)"] = inner[
            "score"
        ]
        phases["store writes and run bookkeeping"] = block - inner["train"] - inner["score"]
        out["per_run"] = (inner["train"], inner["score"], block - inner["train"] - inner["score"])

        phase, seconds, page, note = _render_report(spec, study, storage, paths, cfg)
        phases[phase] = seconds
        out["page"], out["report_note"] = page, note

    benchmark.group = "ablation efficiency: one cpu run, every phase"
    benchmark.pedantic(one_run, rounds=1, iterations=1)

    # Reference features once per protocol: the cold phase computed each protocol's once,
    # the run's own scoring none.
    assert out["references_cold"] == len(extractors)
    assert out["references_in_run"] == 0
    # ... nor does a second score_run of another run folder (same data, same protocols).
    caches = sorted((cache_dir / "features").glob("*.pt"))
    assert len(caches) == len(extractors), caches
    stamps = {p: p.stat().st_mtime_ns for p in caches}
    other = tmp_path / "other_run"
    shutil.copytree(out["run_dir"], other, ignore=shutil.ignore_patterns("scores.jsonl", ".lock"))
    first = min(fidelity.snapshot_steps(other))
    before = len(references)
    records = fidelity.score_run(other, extractor=extractors, n_fake=prof.n_fake, steps=[first])
    assert len(references) == before, "score_run of a second run recomputed reference features"
    assert {p: p.stat().st_mtime_ns for p in caches} == stamps
    scored = {(r["extractor"], r["step"]) for r in records if r["metric"] == "fid"}
    assert {(e, first) for e in extractors} <= scored
    assert out["page"].exists()

    train_s, score_s, store_s = out["per_run"]
    share = score_s / (train_s + score_s + store_s)
    total = sum(phases.values())
    what = (
        f"activation baseline, seed 0, {cfg.total_steps} steps at batch {cfg.batch_size}, "
        f"scored in {', '.join(extractors)} at n_fake {prof.n_fake}"
    )
    lines = [
        f"run: {out['summary']}",
        f"start-up, each try: {', '.join(f'{s:.2f} s' for s in out['startup_s'])}; "
        f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}",
    ]
    if out["report_note"]:
        lines.append(f"report: {out['report_note']}")
    if QUICK:
        lines.append("DCGAN_BENCH_QUICK: a reduced run; shares at full size differ")
    EFFICIENCY.update(
        phases=dict(phases),
        notes={
            "what": what,
            "scoring_share_of_run": share,
            "scoring_share_rule": "scoring / (training + scoring + store writes)",
            "lines": lines,
        },
    )
    benchmark.extra_info.update(
        what=what,
        quick=QUICK,
        phases_s=phases,
        shares_of_total={k: v / total for k, v in phases.items()},
        scoring_share_of_run=share,
        startup_tries_s=out["startup_s"],
        threads=torch.get_num_threads(),
    )
    print(f"\n{what}")
    for phase, seconds in phases.items():
        print(f"  {phase:<58}{seconds:>9.2f} s{seconds / total:>7.1%}")
    print(f"  scoring share of a run: {share:.1%} (goal < 10%)")
    for line in lines:
        print(f"  {line}")
