"""Sentences and claim verdicts on constructed data where the right answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dcgan.report import stats, verdicts
from dcgan.results import Claim
from tests.report.conftest import results_from_runs, runs_frame

BASE = {0: 40.0, 1: 49.0, 2: 33.0, 3: 44.0, 4: 35.0}
BETTER = {
    s: v - 10 + d for (s, v), d in zip(BASE.items(), [0.3, -0.2, 0.1, -0.4, 0.2], strict=True)
}
WORSE = {s: v + 10 + d for (s, v), d in zip(BASE.items(), [0.3, -0.2, 0.1, -0.4, 0.2], strict=True)}
NOISE = {s: v + d for (s, v), d in zip(BASE.items(), [1.0, -1.0, 2.0, -2.0, 0.0], strict=True)}


def _verdict(claim: Claim, runs: pd.DataFrame) -> verdicts.ClaimVerdict:
    results = results_from_runs(runs, baseline="base", claims=[claim])
    return verdicts.claim_verdicts(results, stats.analyse(results))[0]


@pytest.mark.parametrize(
    ("scores", "expected"),
    [(BETTER, verdicts.AGREE), (WORSE, verdicts.DISAGREE), (NOISE, verdicts.CANT_TELL)],
)
def test_better_claim(scores, expected):
    runs = runs_frame({"base": BASE, "arm": scores})
    verdict = _verdict(Claim("004", "arm beats base", "better", arm="arm", vs="base"), runs)
    assert verdict.verdict == expected
    assert "paired 95% CI" in verdict.sentence


@pytest.mark.parametrize(
    ("scores", "expected"),
    [(BETTER, verdicts.DISAGREE), (WORSE, verdicts.AGREE), (NOISE, verdicts.AGREE)],
)
def test_not_better_claim(scores, expected):
    runs = runs_frame({"base": BASE, "arm": scores})
    claim = Claim("004", "upsample+conv does not help", "not_better", arm="arm")  # vs: the baseline
    assert _verdict(claim, runs).verdict == expected


def test_fid_claim_with_one_paired_seed_cannot_tell():
    runs = runs_frame({"base": {0: 40.0}, "arm": {0: 20.0}})
    verdict = _verdict(Claim("004", "helps", "better", arm="arm"), runs)
    assert verdict.verdict == verdicts.CANT_TELL


@pytest.mark.parametrize(
    ("n_diverged", "expected"),
    [(3, verdicts.AGREE), (2, verdicts.AGREE), (1, verdicts.CANT_TELL), (0, verdicts.DISAGREE)],
)
def test_diverges_claim(n_diverged, expected):
    seeds = {s: 100.0 for s in range(3)}
    runs = runs_frame({"base": BASE, "selu": seeds})
    runs.loc[(runs["arm"] == "selu") & (runs["seed"] < n_diverged), "status"] = "diverged"
    verdict = _verdict(Claim("004", "SELU fails", "diverges", arm="selu"), runs)
    assert verdict.verdict == expected
    assert f"diverged in {n_diverged} of 3 seeds" in verdict.sentence


def test_diverges_claim_without_finished_runs_cannot_tell():
    runs = pd.concat(
        [runs_frame({"base": BASE}), runs_frame({"selu": {0: np.nan}}, status="waiting")]
    )
    assert (
        _verdict(Claim("004", "fails", "diverges", arm="selu"), runs).verdict == verdicts.CANT_TELL
    )


def test_info_claim_sets_reported_beside_measured():
    runs = runs_frame(
        {"base": BASE, "selu": {0: 90.0, 1: 95.0}}, final_g_loss=30.0, final_d_loss=0.002
    )
    claim = Claim(
        "004", "final losses", "info", arm="selu", reported={"g_loss": 27.0, "d_loss": 0.001}
    )
    verdict = _verdict(claim, runs)
    assert verdict.verdict is None
    assert "g loss: reported 27, measured 30 (mean of 2 seeds)" in verdict.sentence
    assert "d loss: reported 0.001, measured 0.002" in verdict.sentence


def test_claim_on_an_arm_not_in_the_ablation_cannot_tell():
    verdict = _verdict(Claim("004", "x", "better", arm="ghost"), runs_frame({"base": BASE}))
    assert verdict.verdict == verdicts.CANT_TELL and "'ghost'" in verdict.sentence


def test_divergence_claim_needs_only_its_arm():
    runs = runs_frame({"selu": {0: 150.0, 1: 160.0}}, status="diverged")
    verdict = _verdict(Claim("004", "fails", "diverges", arm="selu"), runs)  # no 'base' arm at all
    assert verdict.verdict == verdicts.AGREE


def test_unknown_claim_kind_is_an_error():
    with pytest.raises(ValueError, match="'faster'"):
        _verdict(Claim("004", "x", "faster", arm="base"), runs_frame({"base": BASE}))


def _arm_verdicts(runs: pd.DataFrame) -> dict[str, verdicts.ArmVerdict]:
    return verdicts.arm_verdicts(stats.analyse(results_from_runs(runs, baseline="base")))


def test_arm_sentences():
    all_diverged = runs_frame(
        {"selu": {s: 150.0 + s for s in BASE}}, status="diverged", diverged_at_step=400
    )
    runs = pd.concat(
        [
            runs_frame({"base": BASE, "worse": WORSE, "noise": NOISE, "single": {0: 41.0}}),
            all_diverged,
            runs_frame({"empty": {0: np.nan, 1: np.nan}}, status="missing"),
        ]
    )
    by_arm = _arm_verdicts(runs)
    assert by_arm["base"].label == "baseline"
    assert by_arm["selu"].label == "diverged"
    assert by_arm["selu"].sentence.startswith("Diverged in 5 of 5 seeds, at about step 400.")
    assert by_arm["worse"].label == "worse"
    assert "10.0 worse than base (paired 95% CI [" in by_arm["worse"].sentence
    assert "d_z=" in by_arm["worse"].sentence
    assert by_arm["noise"].label == "not resolved"
    assert "not distinguishable from base with 5 seeds (paired CI [" in by_arm["noise"].sentence
    assert "(1 seed, no CI)" in by_arm["single"].sentence
    assert by_arm["empty"] == verdicts.ArmVerdict("no data", "No finished runs yet (0 of 2).")


def test_kid_is_mentioned_only_when_it_disagrees_with_fid():
    runs = runs_frame({"base": BASE, "arm": NOISE})
    runs.loc[runs["arm"] == "arm", "kid"] = [v / 1000 + 0.01 for v in BASE.values()]
    runs.loc[runs["arm"] == "arm", "kid"] += [0.0001, -0.0001, 0.0002, 0.0, -0.0002]
    sentence = _arm_verdicts(runs)["arm"].sentence
    assert "KID×10³ 10.00 worse than base" in sentence
    assert "KID" not in _arm_verdicts(runs_frame({"base": BASE, "arm": WORSE}))["arm"].sentence


def test_overall_verdict_names_only_resolved_arms_as_better_or_worse():
    runs = pd.concat(
        [
            runs_frame({"base": BASE, "good": BETTER, "noise": NOISE}),
            runs_frame({"selu": {0: 150.0}}, status="diverged"),
            runs_frame({"later": {0: np.nan}}, status="waiting"),
        ]
    )
    analysis = stats.analyse(results_from_runs(runs, baseline="base"))
    assert verdicts.overall_verdict(analysis, "base") == (
        "Resolved vs base on FID: good better. Not resolved: noise. "
        "Diverged in every finished seed: selu. No finished runs: later."
    )


def test_overall_verdict_before_any_run():
    runs = runs_frame({"base": {0: np.nan}}, status="waiting")
    analysis = stats.analyse(results_from_runs(runs, baseline="base"))
    assert verdicts.overall_verdict(analysis, "base") == "No finished runs yet."
