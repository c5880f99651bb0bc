"""Sentences, arm verdicts and claim verdicts on constructed data where the right answer is known.

Semantics since issue 14: an unresolved arm is "can't tell" (was "not resolved"); "not_better"
agrees only with evidence (a resolved "worse" or TOST equivalence), never because a test failed
to resolve; a divergence claim needs an exact binomial test of "most seeds fail" (3 of 3 is not
enough, 5 of 5 is); claims made under other conditions are "out of scope".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dcgan.report import stats, verdicts
from dcgan.results import Claim
from tests.report.conftest import results_from_runs, runs_frame

BASE = {0: 40.0, 1: 49.0, 2: 33.0, 3: 44.0, 4: 35.0}
_JITTER = [0.003, -0.002, 0.001, -0.004, 0.002]
BETTER = {s: v * 0.75 * np.exp(d) for (s, v), d in zip(BASE.items(), _JITTER, strict=True)}
WORSE = {s: v * 1.25 * np.exp(d) for (s, v), d in zip(BASE.items(), _JITTER, strict=True)}
SAME = {s: v * np.exp(d) for (s, v), d in zip(BASE.items(), _JITTER, strict=True)}  # within ±10%
NOISE = {
    s: v * (1 + d) for (s, v), d in zip(BASE.items(), [0.3, -0.3, 0.25, -0.25, 0.0], strict=True)
}


def _verdict(claim: Claim, runs: pd.DataFrame, **setup) -> verdicts.ClaimVerdict:
    results = results_from_runs(runs, baseline="base", claims=[claim])
    results.setup.update(setup)
    return verdicts.claim_verdicts(results, stats.analyse(results))[0]


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        (BETTER, verdicts.AGREE),
        (WORSE, verdicts.DISAGREE),
        (SAME, verdicts.DISAGREE),  # equivalent within the margin: not better
        (NOISE, verdicts.CANT_TELL),
    ],
)
def test_better_claim(scores, expected):
    runs = runs_frame({"base": BASE, "arm": scores})
    verdict = _verdict(Claim("004", "arm beats base", "better", arm="arm", vs="base"), runs)
    assert verdict.verdict == expected
    assert "paired 95% t-interval on log ratio, n=5" in verdict.sentence
    assert verdict.family.startswith("claims family")


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        (BETTER, verdicts.DISAGREE),
        (WORSE, verdicts.AGREE),
        (SAME, verdicts.AGREE),  # evidence: equivalence within ±10%
        (NOISE, verdicts.CANT_TELL),  # no evidence either way: never "agree"
    ],
)
def test_not_better_claim_needs_evidence(scores, expected):
    runs = runs_frame({"base": BASE, "arm": scores})
    claim = Claim("004", "upsample+conv does not help", "not_better", arm="arm")  # vs: the baseline
    assert _verdict(claim, runs).verdict == expected


def test_claim_margin_is_used():
    runs = runs_frame({"base": BASE, "arm": {s: v * 1.05 for s, v in SAME.items()}})
    wide = Claim("002", "x", "not_better", arm="arm", margin=0.10)
    narrow = Claim("002", "x", "not_better", arm="arm", margin=0.02)
    assert _verdict(wide, runs).verdict == verdicts.AGREE  # within ±10%
    assert _verdict(narrow, runs).verdict == verdicts.AGREE  # resolved worse by 5%
    assert "margin ±2%" in _verdict(narrow, runs).conditions


def test_fid_claim_with_one_paired_seed_cannot_tell():
    runs = runs_frame({"base": {0: 40.0}, "arm": {0: 20.0}})
    verdict = _verdict(Claim("004", "helps", "better", arm="arm"), runs)
    assert verdict.verdict == verdicts.CANT_TELL


@pytest.mark.parametrize(
    ("seeds", "n_failed", "expected"),
    [
        (5, 5, verdicts.AGREE),  # P(5 of 5 | 1/2) = 1/32 < 0.05
        (3, 3, verdicts.CANT_TELL),  # 1/8: three seeds cannot show "most fail"
        (5, 4, verdicts.CANT_TELL),
        (5, 1, verdicts.CANT_TELL),
        (5, 0, verdicts.DISAGREE),
    ],
)
def test_diverges_claim_is_an_exact_binomial_test(seeds, n_failed, expected):
    runs = runs_frame({"base": BASE, "selu": {s: 100.0 for s in range(seeds)}})
    runs.loc[(runs["arm"] == "selu") & (runs["seed"] < n_failed), "status"] = "diverged"
    verdict = _verdict(Claim("004", "SELU fails", "diverges", arm="selu"), runs)
    assert verdict.verdict == expected
    assert f"{n_failed} of {seeds} finished runs failed or diverged" in verdict.sentence
    assert "Clopper-Pearson" in verdict.sentence


def test_divergence_criterion_is_checked_against_the_documents_own_figures():
    runs = runs_frame(
        {"base": BASE, "selu": {s: 100.0 for s in range(5)}}, final_g_loss=28.0, final_d_loss=0.002
    )
    reported = {"g_loss": 27.0, "d_loss": 0.001}
    meets = Claim("004", "fails", "diverges", arm="selu", reported=reported,
                  criterion={"g_loss_above": 20.0, "d_loss_below": 0.01})  # fmt: skip
    verdict = _verdict(meets, runs)
    assert verdict.verdict == verdicts.AGREE  # every run ends with G > 20 and D < 0.01
    assert "004's own figures (G 27, D 0.001) meet the criterion" in verdict.sentence
    old_rule = Claim("004", "fails", "diverges", arm="selu", reported=reported,
                     criterion={"g_loss_above": 30.0})  # fmt: skip
    verdict = _verdict(old_rule, runs)
    assert verdict.verdict == verdicts.CANT_TELL
    assert "would not classify 004's own figures (G 27, D 0.001) as a failure" in verdict.sentence


def test_diverges_claim_without_finished_runs_cannot_tell():
    runs = pd.concat(
        [runs_frame({"base": BASE}), runs_frame({"selu": {0: np.nan}}, status="waiting")]
    )
    verdict = _verdict(Claim("004", "fails", "diverges", arm="selu"), runs)
    assert verdict.verdict == verdicts.CANT_TELL


def test_out_of_scope_claims_are_not_tested_and_their_losses_not_compared():
    runs = runs_frame({"base": BASE, "selu": {s: 100.0 for s in BASE}}, final_g_loss=30.0)
    declared = Claim("004", "SELU fails", "diverges", arm="selu", reported={"g_loss": 27.0},
                     scope="out: 004 trained on Pokemon at 64x64")  # fmt: skip
    verdict = _verdict(declared, runs)
    assert verdict.verdict == verdicts.OUT_OF_SCOPE
    assert verdict.sentence.startswith("Out of scope here: 004 trained on Pokemon at 64x64.")
    assert "004 reported: g loss 27 (not compared with ours" in verdict.sentence
    assert "measured" not in verdict.sentence
    assert "scope out: 004 trained on Pokemon at 64x64" in verdict.conditions
    other_data = Claim("004", "x", "better", arm="selu", data="pokemon")
    verdict = _verdict(other_data, runs, data="mnist")
    assert verdict.verdict == verdicts.OUT_OF_SCOPE
    assert "claimed on pokemon; this ablation trains on mnist" in verdict.sentence
    other_recipe = Claim("004", "x", "better", arm="selu", recipe="pokemon")
    verdict = _verdict(other_recipe, runs, **{"base recipe": "cpu_default"})
    assert "claimed under the pokemon recipe; this ablation uses cpu_default" in verdict.sentence


def test_claims_form_a_holm_family():
    """The same 'better' evidence agrees alone but not beside a second, unresolved claim."""
    base = {0: 40.0, 1: 49.0, 2: 33.0}
    arm = {s: v * 0.7 * (1 + 0.02 * s) for s, v in base.items()}
    runs = runs_frame({"base": base, "arm": arm, "noise": {0: 60.0, 1: 40.0, 2: 33.0}})
    alone = Claim("x", "arm helps", "better", arm="arm")
    results = results_from_runs(runs, baseline="base", claims=[alone])
    single = verdicts.claim_verdicts(results, stats.analyse(results))[0]
    p_single = stats.compare(runs, "arm", "base", "fid").p
    assert single.verdict == verdicts.AGREE and p_single < 0.05
    results.claims.append(Claim("x", "noise helps", "better", arm="noise"))
    both = verdicts.claim_verdicts(results, stats.analyse(results))
    assert f"Holm p={2 * p_single:.3g}" in both[0].sentence or 2 * p_single < 0.001


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
    assert verdicts.LOSS_NOTE in verdict.sentence


def test_claim_on_an_arm_not_in_the_ablation_cannot_tell():
    verdict = _verdict(Claim("004", "x", "better", arm="ghost"), runs_frame({"base": BASE}))
    assert verdict.verdict == verdicts.CANT_TELL and "'ghost'" in verdict.sentence


def test_divergence_claim_needs_only_its_arm():
    runs = runs_frame({"selu": {s: 150.0 + s for s in range(5)}}, status="diverged")
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
            runs_frame(
                {"base": BASE, "worse": WORSE, "noise": NOISE, "same": SAME, "single": {0: 41.0}}
            ),
            all_diverged,
            runs_frame({"empty": {0: np.nan, 1: np.nan}}, status="missing"),
        ]
    )
    by_arm = _arm_verdicts(runs)
    assert by_arm["base"].label == "baseline"
    assert by_arm["selu"].label == "diverged"
    assert by_arm["selu"].sentence.startswith("Diverged in 5 of 5 seeds, at about step 400.")
    assert by_arm["worse"].label == "worse"
    assert "Worse than base: 1.25× base [1.2" in by_arm["worse"].sentence
    assert "(paired 95% t-interval on log ratio, n=5), Holm p" in by_arm["worse"].sentence
    assert "primary family of 6; lower in 0 of 5 seeds" in by_arm["worse"].sentence
    assert (
        "geometric mean of completed runs, 95% t-interval on log, n=5" in by_arm["worse"].sentence
    )
    assert by_arm["same"].label == "equivalent"
    assert "equivalent to base within ±10%" in by_arm["same"].sentence.lower()
    assert by_arm["noise"].label == "can't tell"
    assert "can't tell from base with 5 seeds" in by_arm["noise"].sentence.lower()
    assert "(1 seed, no CI)" in by_arm["single"].sentence
    assert by_arm["empty"] == verdicts.ArmVerdict(
        "no data", "No finished runs yet (0 of 2).", "no data"
    )


def test_failed_runs_count_in_the_arm_sentence():
    runs = pd.concat(
        [
            runs_frame({"base": BASE, "arm": {s: v for s, v in WORSE.items() if s < 4}}),
            runs_frame({"arm": {4: np.nan}}, status="failed"),
        ]
    )
    sentence = _arm_verdicts(runs)["arm"].sentence
    assert (
        f"Scored as the worst FID ({max(WORSE.values()):.1f}) under the failure rule: arm/4 (failed)."
        in sentence
    )
    assert (
        "Failed or diverged: 1 of 5 finished runs (95% Clopper-Pearson, n=5 [1%, 72%])." in sentence
    )


def test_kid_is_mentioned_only_when_it_disagrees_with_fid():
    runs = runs_frame({"base": BASE, "arm": SAME})
    runs.loc[runs["arm"] == "arm", "kid"] = [v / 1000 + 0.01 for v in BASE.values()]
    runs.loc[runs["arm"] == "arm", "kid"] += [0.0001, -0.0001, 0.0002, 0.0, -0.0002]
    sentence = _arm_verdicts(runs)["arm"].sentence
    assert "KID×10³ (secondary, descriptive): +10.00 vs base [" in sentence
    assert "KID" not in _arm_verdicts(runs_frame({"base": BASE, "arm": WORSE}))["arm"].sentence


def test_downgrade_keeps_the_statistical_label():
    by_arm = _arm_verdicts(runs_frame({"base": BASE, "worse": WORSE}))
    out = verdicts.downgrade(by_arm, "worse", "undertrained", "Undertrained at this budget.")
    assert out["worse"].label == "undertrained" and out["worse"].statistics == "worse"
    assert out["worse"].sentence.startswith("Undertrained at this budget. FID")
    assert by_arm["worse"].label == "worse"  # the input is not changed
    analysis = stats.analyse(results_from_runs(runs_frame({"base": BASE, "worse": WORSE}), "base"))
    assert verdicts.overall_verdict(analysis, "base", out) == (
        "No arm differs resolvably from base on FID (Holm over 1 arm). Undertrained: worse."
    )


def test_overall_verdict_names_only_resolved_arms_as_better_or_worse():
    runs = pd.concat(
        [
            runs_frame({"base": BASE, "good": BETTER, "noise": NOISE, "same": SAME}),
            runs_frame({"selu": {0: 150.0}}, status="diverged"),
            runs_frame({"later": {0: np.nan}}, status="waiting"),
        ]
    )
    analysis = stats.analyse(results_from_runs(runs, baseline="base"))
    assert verdicts.overall_verdict(analysis, "base") == (
        "Resolved vs base on FID (Holm over 5 arms): good better. "
        "Equivalent to the baseline within ±10%: same. Can't tell: noise. "
        "Diverged or failed in every finished seed: selu. No finished runs: later."
    )


def test_overall_verdict_before_any_run():
    runs = runs_frame({"base": {0: np.nan}}, status="waiting")
    analysis = stats.analyse(results_from_runs(runs, baseline="base"))
    assert verdicts.overall_verdict(analysis, "base") == "No finished runs yet."
