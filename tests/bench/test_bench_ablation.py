"""The whole `smoke` ablation, end to end (train, score, store, report), from an empty store."""

from __future__ import annotations

import itertools

from dcgan.runner import Paths, run_ablation

_rounds = itertools.count()


def test_smoke_ablation(benchmark, tmp_path):
    def fresh_paths():
        n = next(_rounds)
        return (Paths(tmp_path / f"results{n}", tmp_path / f"reports{n}"),), {}

    def run(paths):
        return run_ablation("loss", "smoke", paths=paths, log=lambda line: None)

    page = benchmark.pedantic(run, setup=fresh_paths, rounds=2, iterations=1)
    assert page.exists()
