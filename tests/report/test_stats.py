"""The statistics, checked against independent computations and by seeded simulation.

The simulations are the claims docs/statistics.md makes: interval coverage at n = 3 and 5 for
normal and lognormal seed noise, the family-wise error of Holm with 5 null arms, the sequential
rule's type-I error, and TOST's error at the margin. Each sits beside a naive method that the
same simulation fails, so a broken method cannot pass by a lenient tolerance.

`python -m tests.report.test_stats` prints the figures with more simulations (for the docs).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from dcgan import sequential as seq
from dcgan.report import stats
from tests.report.conftest import results_from_runs, runs_frame

NOMINAL = 0.95
MIN_COVERAGE = 0.93
ALPHA = 0.05


def student_t_p(diffs: np.ndarray) -> float:
    """Two-sided paired t-test p by integrating Student's t density with numpy."""
    n = diffs.size
    t = abs(diffs.mean() / (diffs.std(ddof=1) / math.sqrt(n)))
    nu = n - 1
    x = np.linspace(0.0, t, 400_001)
    log_c = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
    density = np.exp(log_c) * (1 + x**2 / nu) ** (-(nu + 1) / 2)
    return 1.0 - 2.0 * np.trapezoid(density, x)


SEED_OFFSETS = np.array([0.0, 9.0, -7.0, 4.0, -5.0])


# ---------------------------------------------------------------------------------------------
# Building blocks against hand computations


def test_t_interval_matches_the_formula_and_is_labelled():
    values = np.array([40.1, 43.4, 37.0, 41.2])
    e = stats.mean_ci(values)
    half = scipy_stats.t.ppf(0.975, 3) * values.std(ddof=1) / 2
    assert e.center == pytest.approx(values.mean())
    assert (e.lo, e.hi) == pytest.approx((values.mean() - half, values.mean() + half))
    assert e.label == "95% t-interval, n=4"


def test_geometric_interval_is_a_t_interval_on_logs():
    values = np.array([300.0, 420.0, 260.0, 350.0, 310.0])
    e = stats.geometric_ci(values)
    logs = np.log(values)
    half = scipy_stats.t.ppf(0.975, 4) * logs.std(ddof=1) / math.sqrt(5)
    assert e.center == pytest.approx(math.exp(logs.mean()))
    assert (e.lo, e.hi) == pytest.approx(
        (math.exp(logs.mean() - half), math.exp(logs.mean() + half))
    )
    assert e.label == "95% t-interval on log, n=5"


def test_one_seed_has_a_value_but_no_interval():
    e = stats.geometric_ci([12.0, float("nan")])
    assert (e.center, e.n) == (12.0, 1)
    assert not e.has_ci and math.isnan(e.lo) and math.isnan(e.hi)
    assert stats.mean_ci([]).n == 0


def test_clopper_pearson_matches_exact_values():
    assert stats.clopper_pearson(0, 5).hi == pytest.approx(1 - 0.025 ** (1 / 5))
    assert stats.clopper_pearson(5, 5).lo == pytest.approx(0.025 ** (1 / 5))
    e = stats.clopper_pearson(2, 5)
    ref = scipy_stats.binomtest(2, 5).proportion_ci(0.95, method="exact")
    assert (e.center, e.lo, e.hi) == pytest.approx((0.4, ref.low, ref.high))
    assert e.label == "95% Clopper-Pearson, n=5"


def test_holm_adjusts_step_down_and_keeps_order():
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.20, float("nan")])
    # sorted: 0.01*5, 0.03*4, 0.04*3, 0.20*2, 1*1 -> monotone: .05, .12, .12, .40, 1
    assert adjusted == pytest.approx([0.05, 0.12, 0.12, 0.40, 1.0])


def test_paired_p_and_effect_size_match_hand_formulas():
    base = 40 + SEED_OFFSETS
    arm = base * np.array([1.05, 1.09, 1.02, 1.10, 1.06])
    runs = runs_frame({"base": dict(enumerate(base)), "arm": dict(enumerate(arm))})
    c = stats.compare(runs, "arm", "base", "fid")
    logs = np.log(arm) - np.log(base)
    assert c.n == 5 and c.scale == "log"
    assert c.effect.center == pytest.approx(math.exp(logs.mean()))
    assert c.p == pytest.approx(student_t_p(logs), rel=1e-6)
    assert c.d_z == pytest.approx(logs.mean() / logs.std(ddof=1))
    assert c.mean_difference == pytest.approx((arm - base).mean())
    assert c.effect.label == "95% t-interval on log ratio, n=5"


def test_tost_matches_two_one_sided_tests():
    d = np.array([0.02, -0.01, 0.03, 0.00, 0.01])
    bound = math.log1p(0.10)
    se = d.std(ddof=1) / math.sqrt(5)
    lower = scipy_stats.t.sf((d.mean() + bound) / se, 4)
    upper = scipy_stats.t.cdf((d.mean() - bound) / se, 4)
    assert stats.tost(d, bound) == pytest.approx(max(lower, upper))
    assert stats.tost(d, bound) < 0.01


def test_probability_of_improvement_counts_ties_half():
    assert stats.probability_of_improvement([1, 2, 3], [2, 2, 2]) == pytest.approx(0.5)
    assert stats.probability_of_improvement([1, 1], [2, 3]) == 1.0


def test_pairing_narrows_the_interval():
    base = 40 + SEED_OFFSETS
    arm = (base + 10) * np.exp([0.003, -0.002, 0.001, -0.004, 0.002])
    c = stats.compare(runs_frame({"base": dict(enumerate(base)), "arm": dict(enumerate(arm))}),
                      "arm", "base", "fid")  # fmt: skip
    assert c.effect.lo > 1 and c.decision == stats.WORSE
    assert c.effect.hi - c.effect.lo < (c.unpaired.hi - c.unpaired.lo) / 5


def test_three_same_sign_seeds_are_not_enough_by_themselves():
    """Three differences of one sign are not resolved unless the t-test says so (the old
    percentile bootstrap CI excluded 0 whenever the three shared a sign)."""
    base = np.array([40.0, 41.0, 39.0])
    runs = runs_frame(
        {"base": dict(enumerate(base)), "arm": dict(enumerate(base + [0.5, 5.0, 9.0]))}
    )
    c = stats.compare(runs, "arm", "base", "fid")
    assert c.p > 0.05 and c.decision == stats.CANT_TELL


# ---------------------------------------------------------------------------------------------
# Failures count; nondeterminism; families


def test_a_failed_or_diverged_seed_takes_the_worst_score_and_is_not_dropped():
    runs = pd.concat(
        [
            runs_frame({"base": {0: 40.0, 1: 41.0, 2: 39.0, 3: 42.0}, "arm": {0: 30.0, 1: 31.0}}),
            runs_frame({"arm": {2: 35.0}}, status="diverged"),
            runs_frame({"arm": {3: np.nan}}, status="failed"),
            runs_frame({"arm": {4: np.nan}}, status="running"),
        ]
    )
    c = stats.compare(runs, "arm", "base", "fid")
    assert c.pairs.seeds == (0, 1, 2, 3)  # the running seed 4 has no pair yet
    assert c.pairs.worst == 42.0
    assert c.pairs.arm == (30.0, 31.0, 42.0, 42.0)
    assert c.pairs.imputed == (("arm", 2, "diverged"), ("arm", 3, "failed"))
    assert c.prob_improvement == pytest.approx(2.5 / 4)  # the worst score ties base's seed 3


def test_arm_summary_counts_failures_with_clopper_pearson():
    runs = pd.concat(
        [
            runs_frame({"arm": {0: 40.0, 1: 42.0}}),
            runs_frame({"arm": {2: 90.0}}, status="diverged", diverged_at_step=400),
            runs_frame({"arm": {3: 1000.0}}, status="failed"),
            runs_frame({"arm": {4: 1000.0}}, status="running"),
            runs_frame({"arm": {5: np.nan}}, status="missing"),
        ]
    )
    summary = stats.summarize_arm(results_from_runs(runs, baseline="arm"), "arm")
    assert summary.fid.center == pytest.approx(math.sqrt(40 * 42))  # completed runs only
    assert summary.done_seeds == (0, 1, 2)
    assert summary.unfinished == ((3, "failed"), (4, "running"), (5, "missing"))
    assert (summary.diverged, summary.diverged_at_median) == (1, 400.0)
    assert (summary.failures, summary.finished) == (2, 4)
    assert summary.failure_rate == stats.clopper_pearson(2, 4)
    assert [s.seed for s in summary.per_seed] == [0, 1, 2, 3, 4, 5]


def test_execution_spread_and_the_rule_that_uses_it():
    spread = stats.execution_spread([100.0, 200.0, 50.0], [110.0, 190.0, 50.0])
    d = np.log([1.1, 0.95, 1.0])
    assert spread.n == 3
    assert spread.rms == pytest.approx(math.sqrt(np.mean(d**2)))
    assert spread.max_abs == pytest.approx(math.log(1.1))
    # a consistent 4% difference, resolved by the t-test but within a 6% execution spread
    base = 100 + SEED_OFFSETS
    arm = base * np.exp([0.04, 0.041, 0.039, 0.04, 0.04])
    runs = runs_frame({"base": dict(enumerate(base)), "arm": dict(enumerate(arm))})
    c = stats.compare(runs, "arm", "base", "fid")
    assert stats.adjust_family([c])[0].decision == stats.WORSE
    within = stats.adjust_family([c], spread=math.log(1.06))[0]
    assert within.significant and within.within_execution_spread
    assert within.decision == stats.EQUIVALENT  # and equivalence within ±10% is shown


def test_execution_rows_give_the_spread_and_stay_out_of_the_other_statistics():
    runs = runs_frame({"base": {0: 40.0, 1: 50.0, 2: 45.0}, "arm": {0: 30.0, 1: 35.0, 2: 33.0}})
    runs["execution"] = 0
    again = runs_frame({"base": {0: 44.0}, "arm": {0: 30.0}})
    again["execution"] = 1
    results = results_from_runs(pd.concat([runs, again]), baseline="base")
    results.runs["execution"] = pd.concat([runs, again])["execution"].to_numpy()
    analysis = stats.analyse(results)
    assert analysis.execution.n == 2
    assert analysis.execution.max_abs == pytest.approx(math.log(1.1))
    assert analysis.differences["arm"]["fid"].n == 3
    assert analysis.arms[0].expected == 3


def test_execution_replicates_frame_gives_the_spread():
    """AblationResults.executions (the collector's replicate table) is the other source."""
    results = results_from_runs(runs_frame({"base": {0: 40.0, 1: 50.0}}), baseline="base")
    results.executions = pd.DataFrame(
        {"arm": ["base"], "seed": [0], "fid_main": [40.0], "fid_replicate": [44.0]}
    )
    spread = stats.analyse(results).execution
    assert (spread.n, spread.rms) == (1, pytest.approx(math.log(1.1)))


def test_analyse_holm_adjusts_the_primary_family_and_keeps_kid_descriptive():
    base = {s: 40.0 + o for s, o in enumerate(SEED_OFFSETS)}
    arms = {
        "base": base,
        "good": {s: v * 0.7 * (1 + 0.01 * s) for s, v in base.items()},
        "noise": {s: v * (1 + 0.2 * (-1) ** s) for s, v in base.items()},
    }
    analysis = stats.analyse(results_from_runs(runs_frame(arms), baseline="base"))
    fid = [analysis.differences[a]["fid"] for a in ("good", "noise")]
    assert analysis.family == ("good", "noise")
    assert [c.p_adjusted for c in fid] == pytest.approx(list(stats.holm([c.p for c in fid])))
    assert all(c.family == stats.PRIMARY for c in fid)
    kid = analysis.differences["good"]["kid"]
    assert kid.family == stats.SECONDARY and kid.decision == stats.DESCRIPTIVE
    assert stats.arm_decisions(analysis) == {
        "base": "baseline",
        "good": "better",
        "noise": "can't tell",
    }


def test_declared_margin_comes_from_the_spec_file(tmp_path):
    results = results_from_runs(runs_frame({"base": {0: 1.0}}), baseline="base")
    assert stats.declared_margin(results) == stats.DEFAULT_MARGIN
    spec = tmp_path / "x.toml"
    spec.write_text('equivalence_margin = 0.05\nquestion = "?"\n')
    results.spec_path = str(spec)
    assert stats.declared_margin(results) == 0.05


def test_fixture_summary(results):
    analysis = stats.analyse(results)
    by_arm = {a.arm: a for a in analysis.arms}
    assert [a.arm for a in analysis.arms] == list(results.arms)
    assert by_arm["G selu / D selu"].diverged == 2
    assert by_arm["G selu / D selu"].diverged_at_median == 425
    assert by_arm["lr 3e-4"].unfinished == ((2, "missing"),)
    assert set(analysis.differences) == {"lr 3e-4", "G selu / D selu"}
    assert not analysis.has_modes


# ---------------------------------------------------------------------------------------------
# Simulations (seeded; the rng seeds are fixed so a run is reproducible)

MEDIAN_FID = 300.0


def seed_noise(rng, kind: str, size, sd: float) -> np.ndarray:
    """FID over seeds around MEDIAN_FID: lognormal (sd on log) or normal (sd as a fraction)."""
    z = rng.standard_normal(size)
    if kind == "lognormal":
        return MEDIAN_FID * np.exp(sd * z)
    return np.maximum(MEDIAN_FID * (1 + sd * z), 1.0)


def arm_coverage(n: int, kind: str, sims: int, rng, method=stats.geometric_ci) -> float:
    """Coverage of the per-arm interval for the arm's median FID (its mean, under normal noise)."""
    hits = 0
    for x in seed_noise(rng, kind, (sims, n), 0.3):
        e = method(x)
        hits += e.lo <= MEDIAN_FID <= e.hi
    return hits / sims


def paired_sample(rng, kind: str, n: int, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """(arm, baseline) over n seeds sharing a seed effect, as the paired design makes them."""
    if kind == "lognormal":
        shared = 0.3 * rng.standard_normal(n)
        base = MEDIAN_FID * np.exp(shared + 0.15 * rng.standard_normal(n))
        arm = MEDIAN_FID * ratio * np.exp(shared + 0.15 * rng.standard_normal(n))
    else:  # additive normal noise: a shared seed offset plus each run's own noise
        shared = 0.15 * MEDIAN_FID * rng.standard_normal(n)
        base = MEDIAN_FID + shared + 0.1 * MEDIAN_FID * rng.standard_normal(n)
        arm = MEDIAN_FID * ratio + shared + 0.1 * MEDIAN_FID * rng.standard_normal(n)
    return np.maximum(arm, 1.0), np.maximum(base, 1.0)


def ratio_coverage(n: int, kind: str, sims: int, rng, ratio: float = 0.7) -> float:
    hits = 0
    for _ in range(sims):
        arm, base = paired_sample(rng, kind, n, ratio)
        _, lo, hi = stats.t_interval(np.log(arm) - np.log(base))
        hits += lo <= math.log(ratio) <= hi
    return hits / sims


def percentile_bootstrap(x: np.ndarray, resamples: int = 2000) -> stats.Estimate:
    """The old method, for contrast: a percentile bootstrap of the mean."""
    rng = np.random.default_rng(0)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return stats.Estimate(x.mean(), lo, hi, x.size, "percentile bootstrap")


def holm_fwer(n: int, kind: str, sims: int, rng, arms: int = 5, adjust: bool = True) -> float:
    """Share of simulated ablations (every arm = the baseline) with any arm called different."""
    errors = 0
    for _ in range(sims):
        if kind == "lognormal":
            shared = 0.3 * rng.standard_normal(n)
            base = np.exp(shared + 0.15 * rng.standard_normal(n))
            others = np.exp(shared + 0.15 * rng.standard_normal((arms, n)))
        else:
            shared = 0.15 * rng.standard_normal(n)
            base = 1 + shared + 0.1 * rng.standard_normal(n)
            others = 1 + shared + 0.1 * rng.standard_normal((arms, n))
        p = [stats.paired_t(np.log(o) - np.log(base))[0] for o in others]
        p = stats.holm(p) if adjust else np.asarray(p)
        errors += bool((p < ALPHA).any())
    return errors / sims


def null_log_ratios(rng, arms: int, n: int, shift: float = 0.0) -> dict[str, list[float]]:
    shared = 0.3 * rng.standard_normal(n)
    base = shared + 0.15 * rng.standard_normal(n)
    return {
        f"arm{j}": list(shared + shift + 0.15 * rng.standard_normal(n) - base) for j in range(arms)
    }


def sequential_error(sims: int, rng, arms: int, rule: seq.SequentialRule | None = None) -> float:
    rule = rule or seq.SequentialRule()
    errors = 0
    for _ in range(sims):
        out = seq.sequential_decision(null_log_ratios(rng, arms, rule.max_n), rule)
        errors += any(d in (stats.BETTER, stats.WORSE) for d in out.decisions.values())
    return errors / sims


def naive_sequential_error(sims: int, rng, looks=seq.LOOKS) -> float:
    """Testing at p < 0.05 at every look, for contrast."""
    errors = 0
    for _ in range(sims):
        d = np.asarray(null_log_ratios(rng, 1, looks[-1])["arm0"])
        errors += any(stats.paired_t(d[:n])[0] < ALPHA for n in looks)
    return errors / sims


def tost_error(
    n: int, sims: int, rng, arms: int = 1, ratio: float = 1.1, sd: float = 0.03
) -> float:
    """Share of simulations where an arm whose true ratio is `ratio` is called equivalent
    within ±10% (Holm over `arms` arms). At ratio 1.1 (the margin) that is an error."""
    bound = math.log1p(0.10)
    hits = 0
    for _ in range(sims):
        base = sd * rng.standard_normal(n)
        p = [
            stats.tost(math.log(ratio) + sd * rng.standard_normal(n) - base, bound)
            for _ in range(arms)
        ]
        hits += bool((stats.holm(p) < ALPHA).any())
    return hits / sims


def sequential_equivalence_error(sims: int, rng, arms: int = 5) -> float:
    rule = seq.SequentialRule()
    errors = 0
    for _ in range(sims):
        base = 0.03 * rng.standard_normal(rule.max_n)
        d = {
            f"arm{j}": list(math.log(1.1) + 0.03 * rng.standard_normal(rule.max_n) - base)
            for j in range(arms)
        }
        out = seq.sequential_decision(d, rule)
        errors += any(v == stats.EQUIVALENT for v in out.decisions.values())
    return errors / sims


def tolerance(p: float, sims: int, z: float = 3.0) -> float:
    """Monte Carlo allowance: z standard errors of a rate p over sims simulations."""
    return z * math.sqrt(p * (1 - p) / sims)


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("kind", ["normal", "lognormal"])
def test_arm_interval_keeps_its_coverage(n, kind):
    sims = 2000
    coverage = arm_coverage(n, kind, sims, np.random.default_rng(100 + n))
    assert coverage >= MIN_COVERAGE, coverage


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("kind", ["normal", "lognormal"])
def test_paired_ratio_interval_keeps_its_coverage(n, kind):
    sims = 4000
    coverage = ratio_coverage(n, kind, sims, np.random.default_rng(200 + n))
    assert coverage >= MIN_COVERAGE, coverage


def test_the_coverage_simulation_catches_the_old_bootstrap():
    coverage = arm_coverage(3, "lognormal", 1000, np.random.default_rng(7), percentile_bootstrap)
    assert coverage < 0.85, coverage


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("kind", ["normal", "lognormal"])
def test_holm_keeps_the_familywise_error_with_five_null_arms(n, kind):
    sims = 4000
    fwer = holm_fwer(n, kind, sims, np.random.default_rng(300 + n))
    assert fwer <= ALPHA + tolerance(ALPHA, sims), fwer


def test_without_holm_the_same_simulation_fails():
    fwer = holm_fwer(5, "lognormal", 1000, np.random.default_rng(9), adjust=False)
    assert fwer > 0.12, fwer


def test_pocock_boundary_is_close_to_the_textbook_value():
    """Pocock's z-based nominal level for 3 looks at alpha 0.05 is 0.0221; with t statistics
    at n = 5, 7, 10 it is a little larger (the t tails are heavier at small n)."""
    (threshold, *_), one_sided = (
        seq.boundaries(seq.LOOKS, 0.05),
        seq.boundaries(seq.LOOKS, 0.05, sides=1),
    )
    assert 0.020 < threshold < 0.025
    assert 0.020 < one_sided[0] < 0.027
    obf = seq.boundaries(seq.LOOKS, 0.05, "obrien_fleming")
    assert obf[0] < obf[1] < obf[2] < 0.05


@pytest.mark.parametrize("arms", [1, 5])
def test_sequential_rule_keeps_its_type_one_error(arms):
    sims = 2000
    error = sequential_error(sims, np.random.default_rng(400 + arms), arms)
    assert error <= ALPHA + tolerance(ALPHA, sims), error


def test_obrien_fleming_rule_keeps_its_type_one_error():
    sims = 2000
    rule = seq.SequentialRule(kind="obrien_fleming")
    error = sequential_error(sims, np.random.default_rng(450), 1, rule)
    assert error <= ALPHA + tolerance(ALPHA, sims), error


def test_peeking_without_boundaries_fails_the_same_simulation():
    error = naive_sequential_error(2000, np.random.default_rng(410))
    assert error > 0.08, error


def test_tost_error_at_the_margin_and_its_power():
    sims = 4000
    at_margin = tost_error(5, sims, np.random.default_rng(500))
    assert at_margin <= ALPHA + tolerance(ALPHA, sims), at_margin
    family = tost_error(5, sims, np.random.default_rng(501), arms=5)
    assert family <= ALPHA + tolerance(ALPHA, sims), family
    power = tost_error(5, 1000, np.random.default_rng(502), ratio=1.0)
    assert power > 0.8, power  # equivalence is shown when it holds and the noise allows


def test_sequential_equivalence_error_at_the_margin():
    sims = 2000
    error = sequential_equivalence_error(sims, np.random.default_rng(510))
    assert error <= ALPHA + tolerance(ALPHA, sims), error


def figures(scale: int = 10) -> None:  # pragma: no cover - prints the docs' numbers
    """The figures in docs/statistics.md: `python -m tests.report.test_stats [scale]`."""
    rng = np.random.default_rng(2024)
    sims = 2000 * scale
    print(f"coverage, {sims} simulations each (per arm: sd 0.3 on log / 30% normal)")
    for n in (3, 5):
        for kind in ("normal", "lognormal"):
            print(
                f"  n={n} {kind:9s} arm t-on-log {arm_coverage(n, kind, sims, rng):.3f}"
                f"  paired ratio {ratio_coverage(n, kind, sims, rng):.3f}"
                f"  old bootstrap {arm_coverage(n, kind, sims // 10, rng, percentile_bootstrap):.3f}"
            )
    print(f"family-wise error, 5 null arms, {sims} simulations")
    for n in (3, 5):
        for kind in ("normal", "lognormal"):
            print(
                f"  n={n} {kind:9s} Holm {holm_fwer(n, kind, sims, rng):.4f}"
                f"  uncorrected {holm_fwer(n, kind, sims, rng, adjust=False):.4f}"
            )
    s = 1000 * scale
    print(f"sequential, looks {seq.LOOKS}, {s} simulations")
    print(f"  Pocock boundaries (2-sided, alpha .05): {seq.boundaries(seq.LOOKS, 0.05)}")
    print(
        f"  O'Brien-Fleming (2-sided, alpha .05): {seq.boundaries(seq.LOOKS, 0.05, 'obrien_fleming')}"
    )
    print(
        f"  Pocock 1 arm {sequential_error(s, rng, 1):.4f}  5 arms {sequential_error(s, rng, 5):.4f}"
    )
    obf = seq.SequentialRule(kind="obrien_fleming")
    print(
        f"  OBF 1 arm {sequential_error(s, rng, 1, obf):.4f}  5 arms {sequential_error(s, rng, 5, obf):.4f}"
    )
    print(f"  naive p<.05 at every look, 1 arm {naive_sequential_error(s, rng):.4f}")
    print(
        f"  sequential equivalence at the margin, 5 arms {sequential_equivalence_error(s, rng):.4f}"
    )
    print(f"TOST at the margin (ratio 1.1, sd 0.03 per run, n=5), {sims} simulations")
    print(
        f"  1 arm {tost_error(5, sims, rng):.4f}  5 arms Holm {tost_error(5, sims, rng, arms=5):.4f}"
    )
    print(f"  power at ratio 1.0: {tost_error(5, sims, rng, ratio=1.0):.3f}")


if __name__ == "__main__":  # pragma: no cover
    figures(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
