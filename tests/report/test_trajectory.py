"""Verdicts against budget on synthetic FID curves: late flips, still-falling curves, stable pairs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dcgan.report import trajectory as tr

KIMG = np.arange(16, 321, 16.0)  # 20 snapshots over a 320 kimg budget
SEEDS = range(5)


def _curve(arm: str, fn, noise: float = 0.03, seed_offset: int = 0) -> pd.DataFrame:
    rows = []
    for seed in SEEDS:
        rng = np.random.default_rng(1000 * seed + seed_offset)
        for k in KIMG:
            rows.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "kimg": k,
                    "value": fn(k) * math.exp(rng.normal(0, noise)),
                }
            )
    return pd.DataFrame(rows)


def converging(final: float, tau: float = 40.0):
    return lambda k: final * (1 + 20 * math.exp(-k / tau))


def _analyse(*curves: pd.DataFrame, precision=None):
    frame = pd.concat(curves, ignore_index=True)
    arms = list(dict.fromkeys(frame["arm"]))
    return tr.analyse_trajectories(frame, arms, arms[0], {a: 320.0 for a in arms}, precision)


def test_stable_separated_pair_is_final_and_keeps_its_verdict():
    result = _analyse(
        _curve("base", converging(100)), _curve("good", converging(60), seed_offset=1)
    )
    good = result["good"]
    assert good.gate.trained and result["base"].gate.trained
    assert good.stability.final and good.stability.direction == "better"
    label, sentence = tr.qualify("better", good, result["base"])
    assert label == "better" and "at the end" in sentence


def test_ranking_that_flips_late_is_budget_sensitive():
    # better than the baseline until ~260 kimg, worse after: the end verdict must not be final
    def flips(k):
        return 100 * (1 + 20 * math.exp(-k / 40)) * (0.6 if k < 260 else 1.5)

    result = _analyse(_curve("base", converging(100)), _curve("flip", flips, seed_offset=2))
    flip = result["flip"]
    assert flip.stability.direction == "worse"
    assert not flip.stability.final
    assert 240 <= flip.stability.changed_at_kimg < 270
    label, sentence = tr.qualify("worse", flip, result["base"])
    assert label == "budget-sensitive" and "changed at" in sentence


def test_curve_still_falling_steeply_is_undertrained():
    def slow(k):  # halves every 40 kimg up to the end: 75% over the last quarter (80 kimg)
        return 2000 * 0.5 ** (k / 40)

    result = _analyse(_curve("base", converging(100)), _curve("slow", slow, seed_offset=3))
    assert result["slow"].gate.trained is False
    label, _ = tr.qualify("worse", result["slow"], result["base"])
    assert label == "undertrained"


def test_undertrained_baseline_takes_every_verdict_away():
    result = _analyse(
        _curve("base", lambda k: 2000 * 0.5 ** (k / 40)),
        _curve("good", converging(60), seed_offset=4),
    )
    label, sentence = tr.qualify("better", result["good"], result["base"])
    assert label == "undertrained" and "baseline" in sentence


def test_near_zero_precision_fails_the_gate():
    result = _analyse(
        _curve("base", converging(100)),
        _curve("off", converging(100), seed_offset=5),
        precision={"off": 0.01, "base": 0.6},
    )
    assert result["off"].gate.trained is False and "precision" in result["off"].gate.reason
    assert result["base"].gate.trained is True


def test_power_law_phase_is_trained_but_not_converged():
    result = _analyse(_curve("base", lambda k: 1e4 * k**-1.1), _curve("b", lambda k: 1e4 * k**-1.1))
    gate = result["base"].gate
    assert gate.trained and 0.2 < gate.improvement < 0.4 and "still improving" in gate.reason
    converged = _analyse(_curve("base", converging(100)), _curve("b", converging(90)))
    assert "converged" in converged["base"].gate.reason


def test_slower_to_learn_same_end():
    result = _analyse(
        _curve("base", converging(100, tau=20)),
        _curve("late", converging(100, tau=30), seed_offset=6),  # caught up before the window
    )
    late = result["late"]
    assert late.speed_ratio.direction == "worse"
    label, sentence = tr.qualify("equivalent", late, result["base"])
    assert label == "slower, same end" and "slower to learn" in sentence


def test_an_equivalence_reached_only_inside_the_end_window_is_budget_sensitive():
    # the arm catches up with the baseline only in the last ~30% of the budget
    result = _analyse(
        _curve("base", converging(100, tau=20)),
        _curve("late", converging(100, tau=55), seed_offset=7),
    )
    late = result["late"]
    assert not late.stability.final or late.stability.direction is not None
    label, sentence = tr.qualify("equivalent", late, result["base"])
    assert label == "budget-sensitive" and "equivalent at the end only" in sentence


def test_quick_profile_gives_no_final_verdict():
    result = _analyse(
        _curve("base", converging(100)), _curve("good", converging(60), seed_offset=7)
    )
    assert tr.qualify("better", result["good"], result["base"], conclusive=False)[0] == "early only"


@pytest.mark.parametrize("noise", ["normal", "lognormal"])
def test_log_t_interval_covers_the_geometric_mean(noise):
    rng = np.random.default_rng(0)
    hits, trials, true = 0, 2000, 100.0
    for _ in range(trials):
        if noise == "lognormal":
            x = true * np.exp(rng.normal(0, 0.3, size=5))
        else:  # normal noise, small relative to the mean: the median is the mean
            x = rng.normal(true, 8.0, size=5)
        ci = tr.log_t_interval(x)
        hits += ci.lo <= true <= ci.hi
    assert hits / trials >= 0.93


def test_pairs_arms_with_different_snapshot_grids_by_kimg():
    base = _curve("base", converging(100))
    coarse = _curve("big_batch", converging(50), seed_offset=8)
    coarse = coarse[coarse["kimg"] % 64 == 0]  # a batch-512 arm snapshots 4x less often
    deltas = tr.paired_ratios(coarse, base)
    assert deltas and all(64 <= d.kimg <= 320 for d in deltas)
    assert all(d.ratio.n == 5 for d in deltas)
    assert deltas[-1].ratio.value == pytest.approx(0.5, rel=0.1)


def test_a_verdict_needs_the_second_feature_space_to_point_the_same_way():
    runs = pd.DataFrame(
        [
            {"arm": arm, "seed": s, "status": "completed", "fid_randcnn": level * (1 + 0.05 * s)}
            for arm, level in (("base", 100.0), ("a", 80.0), ("b", 120.0))
            for s in range(5)
        ]
    )
    a = tr.second_space_ratio(runs, "a", "base", "fid_randcnn")
    b = tr.second_space_ratio(runs, "b", "base", "fid_randcnn")
    assert a.value == pytest.approx(0.8) and b.value == pytest.approx(1.2)
    assert tr.spaces_agree("better", a) is True
    assert tr.spaces_agree("better", b) is False  # the other space says worse: no verdict
    assert tr.spaces_agree("can't tell", b) is None
    assert tr.second_space_ratio(runs, "a", "base", "fid_missing").n == 0


def test_an_arm_with_four_times_the_images_is_paired_at_the_same_step():
    # batch 512 for as many steps as batch 128: at every step its FID is 0.8x the baseline's, but
    # at equal kimg its first quarter (a quarter of the steps) faces the baseline's whole run
    def base(k):
        return 100 * (1 + 20 * math.exp(-k / 40))

    big = _curve("equal_steps", lambda k: 0.8 * base(k), seed_offset=9)
    big["kimg"] *= 4  # snapshots at the same steps, each 4x the images
    frame = pd.concat([_curve("base", base), big], ignore_index=True)
    budgets = {"base": 320.0, "equal_steps": 1280.0}

    by_step = tr.analyse_trajectories(frame, ["base", "equal_steps"], "base", budgets)
    arm = by_step["equal_steps"]
    assert [d.kimg for d in arm.deltas] == list(KIMG)  # the baseline's axis
    assert all(d.ratio.value == pytest.approx(0.8, rel=0.05) for d in arm.deltas)
    assert arm.stability.final and arm.stability.direction == "better"
    assert "same fraction of the budget" in arm.stability.sentence
    assert "4x the images" in arm.stability.sentence
    label, sentence = tr.qualify("better", arm, by_step["base"])
    assert label == "better" and "in images seen" in sentence  # speed is counted in kimg

    # the old pairing (equal kimg) sees the arm's early steps against the baseline's late ones
    by_kimg = tr.paired_ratios(frame[frame["arm"] == "equal_steps"], frame[frame["arm"] == "base"])
    assert by_kimg[-1].ratio.value > 2


def test_equal_budgets_keep_pairing_at_equal_kimg():
    result = _analyse(_curve("base", converging(100)), _curve("arm", converging(70), seed_offset=3))
    assert result["arm"].stability.arm_scale == 1.0
    assert "fraction of the budget" not in result["arm"].stability.sentence


def test_a_grid_that_misses_the_window_start_can_still_be_final():
    # batch_size's baseline: a snapshot every 68 steps of 128 (8.704 kimg) and one at the end,
    # 176 kimg; none lands on the span's start, 176 - 30% = 123.2 kimg
    grid = [8.704 * k for k in range(1, 21)] + [176.0]
    deltas = [tr.SnapshotDelta(k, tr.log_t_interval([0.7, 0.72, 0.69, 0.71, 0.7])) for k in grid]
    stab = tr.stability(deltas, 176.0)
    assert stab.final and stab.direction == "better"
    assert stab.window_kimg == (pytest.approx(8.704 * 14), 176.0)  # the last one before 123.2
    # a difference unresolved at that first snapshot of the window is not final
    flat = tr.log_t_interval([0.9, 1.1, 1.0, 0.95, 1.05])
    deltas[13] = tr.SnapshotDelta(deltas[13].kimg, flat)
    stab = tr.stability(deltas, 176.0)
    assert not stab.final and stab.changed_at_kimg == pytest.approx(8.704 * 14)
