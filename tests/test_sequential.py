"""The sequential-seeds rule on constructed data, and its driver with training replaced.

Its error rates are simulated in tests/report/test_stats.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dcgan import cli
from dcgan import sequential as seq
from dcgan.report import stats
from dcgan.runner import Paths
from tests.report.conftest import results_from_runs, runs_frame

RNG_SEED = 5


def _clear(n: int, ratio: float, sd: float = 0.01, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(math.log(ratio) + sd * rng.standard_normal(n))


def test_a_clear_difference_is_decided_at_the_first_look():
    out = seq.sequential_decision({"good": _clear(10, 0.7), "bad": _clear(10, 1.4, seed=1)})
    assert out.decisions == {"good": stats.BETTER, "bad": stats.WORSE}
    assert out.stopped_at == {"good": 5, "bad": 5}
    assert out.done and out.next_n is None
    assert out.looks_done == (5,)


def test_equivalence_stops_a_comparison_and_noise_runs_to_the_last_look():
    noise = list(np.random.default_rng(2).normal(0, 0.4, 10))
    out = seq.sequential_decision({"same": _clear(10, 1.0, sd=0.01), "noise": noise})
    assert out.decisions["same"] == stats.EQUIVALENT and out.stopped_at["same"] == 5
    assert out.decisions["noise"] == stats.CANT_TELL and out.stopped_at["noise"] is None
    assert out.looks_done == (5, 7, 10)
    history = [(r.n, r.arm, r.decision) for r in out.history if r.arm == "noise"]
    assert history == [
        (5, "noise", "continue"),
        (7, "noise", "continue"),
        (10, "noise", "can't tell"),
    ]


def test_fewer_seeds_than_the_next_look_asks_for_more():
    noise = list(np.random.default_rng(3).normal(0, 0.4, 6))
    out = seq.sequential_decision({"noise": noise})
    assert out.decisions == {"noise": seq.CONTINUE}
    assert not out.done and out.next_n == 7


def test_the_boundary_is_stricter_than_a_fixed_test():
    """p = 0.03 at n = 5 passes a fixed 0.05 test but not Pocock's 0.0227 for 3 looks."""
    threshold = seq.boundaries(seq.LOOKS, 0.05)[0]
    d = np.array([0.10, 0.25, 0.02, 0.18, 0.12])
    p = stats.paired_t(d)[0]
    assert threshold < p < 0.05
    assert seq.sequential_decision({"a": list(d)}).decisions["a"] == seq.CONTINUE


def test_holm_recycling_gives_a_rejected_arms_level_to_the_others():
    looks = (5,)
    strict, relaxed = seq.boundaries(looks, 0.05 / 2)[0], seq.boundaries(looks, 0.05)[0]
    assert (strict, relaxed) == (0.025, 0.05)
    rng = np.random.default_rng(RNG_SEED)
    for _ in range(500):  # find an arm whose p lies between the two levels at n = 5
        d = 0.1 + 0.1 * rng.standard_normal(5)
        if strict < stats.paired_t(d)[0] < relaxed:
            break
    else:
        pytest.skip("no such sample found")
    rule = seq.SequentialRule(looks=looks)
    out = seq.sequential_decision({"clear": _clear(5, 0.5), "edge": list(d)}, rule)
    assert out.decisions == {"clear": stats.BETTER, "edge": stats.WORSE}
    alone = seq.sequential_decision({"other": [0.3, -0.2, 0.1, -0.4, 0.2], "edge": list(d)}, rule)
    assert alone.decisions["edge"] == stats.CANT_TELL  # without a rejection it stays at alpha/2


def test_a_difference_within_the_execution_spread_is_not_resolved():
    d = _clear(10, 1.04, sd=0.002)
    assert seq.sequential_decision({"a": d}).decisions["a"] == stats.WORSE
    out = seq.sequential_decision({"a": d}, spread=math.log(1.06))
    assert out.decisions["a"] == stats.EQUIVALENT  # within ±10%, so still decided


def test_rule_validation():
    with pytest.raises(ValueError, match="kind"):
        seq.SequentialRule(kind="haybittle")
    with pytest.raises(ValueError, match="looks"):
        seq.SequentialRule(looks=(7, 5))


def test_seed_schedule_keeps_given_seeds_then_adds_the_next_integers():
    assert seq.seed_schedule([0, 1, 2], 5) == [0, 1, 2, 3, 4]
    assert seq.seed_schedule([3, 0], 4) == [3, 0, 1, 2]
    assert seq.seed_schedule(range(12), 10) == list(range(10))


# ---------------------------------------------------------------------------------------------
# The driver, training replaced by a table of per-seed FIDs


def _fake_ablation(n_max: int = 10):
    rng = np.random.default_rng(11)
    base = 300 * np.exp(0.3 * rng.standard_normal(n_max))
    table = {
        "base": base,
        "good": base * 0.7 * np.exp(0.01 * rng.standard_normal(n_max)),
        "noise": base * np.exp(0.4 * rng.standard_normal(n_max)),
    }
    calls = []

    def train(name, profile, *, seeds, report, **_):
        assert report is False
        calls.append(list(seeds))

    def load(name, profile, seeds, data, storage_url, paths):
        scores = {arm: {s: float(v[s]) for s in seeds} for arm, v in table.items()}
        return results_from_runs(runs_frame(scores), baseline="base")

    return train, load, calls


def test_driver_adds_seeds_until_every_comparison_is_decided(tmp_path):
    train, load, calls = _fake_ablation()
    lines = []
    outcome, page = seq.run_sequential(
        "activation", "cpu", seeds=[0, 1, 2], train=train, load=load, report=False,
        paths=Paths(tmp_path / "results", tmp_path / "reports"), log=lines.append,
    )  # fmt: skip
    assert calls == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5, 6], list(range(10))]
    assert outcome.decisions["good"] == stats.BETTER and outcome.stopped_at["good"] == 5
    assert outcome.decisions["noise"] in (stats.CANT_TELL, stats.BETTER, stats.WORSE)
    assert page is None
    assert any("good: better (decided at n=5)" in line for line in lines)


def test_driver_stops_early_and_renders_the_sequential_report(tmp_path):
    train, load, calls = _fake_ablation()

    def load_two_arms(*args):
        results = load(*args)
        results.runs = results.runs[results.runs["arm"] != "noise"].reset_index(drop=True)
        results.arms.pop("noise")
        return results

    outcome, page = seq.run_sequential(
        "activation", "cpu", train=train, load=load_two_arms, log=lambda *_: None,
        paths=Paths(tmp_path / "results", tmp_path / "reports"),
    )  # fmt: skip
    assert calls == [[0, 1, 2, 3, 4]]  # decided at the first look: no more seeds trained
    html = page.read_text()
    assert "Sequential seeds" in html and "Pocock group-sequential boundaries" in html
    assert "Sequential rule: better at n=5." in html


def test_ablate_sequential_flag_calls_the_driver(monkeypatch, tmp_path):
    seen = {}

    def fake(name, profile, **kwargs):
        seen.update(name=name, profile=profile, **kwargs)
        return None, None

    monkeypatch.setattr(seq, "run_sequential", fake)
    code = cli.main(
        ["ablate", "activation", "--sequential", "--seeds", "0,1", "--no-report",
         "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p")]
    )  # fmt: skip
    assert code == 0
    assert (seen["name"], seen["profile"], seen["seeds"], seen["report"]) == (
        "activation", "cpu", [0, 1], False,
    )  # fmt: skip
