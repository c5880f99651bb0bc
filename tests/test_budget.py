"""Choosing a budget from a pilot: the smallest converged budget whose resolved signs hold."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dcgan import budget

KIMG = np.arange(16, 321, 16.0)


def _frame(arm: str, fn, seeds=range(2), noise=0.01) -> pd.DataFrame:
    rng = np.random.default_rng(abs(hash(arm)) % 1000)
    return pd.DataFrame(
        [
            {"arm": arm, "seed": s, "kimg": k, "value": fn(k) * math.exp(rng.normal(0, noise))}
            for s in seeds
            for k in KIMG
        ]
    )


def _baseline(k):
    return 100 * (1 + 20 * math.exp(-k / 30))


def test_chooses_the_smallest_converged_budget():
    fid = pd.concat([_frame("base", _baseline), _frame("good", lambda k: 0.6 * _baseline(k))])
    cands = budget.candidates(fid, ["base", "good"], "base")
    chosen = budget.choose(cands)
    assert chosen is not None

    # noise-free: the first B from which on the baseline fell < 50% since the last snapshot at
    # <= 0.75 B, at B and at every later budget
    def past_fast_phase(b):
        return _baseline(b) / _baseline(KIMG[KIMG <= 0.75 * b][-1]) > 0.5

    expected = next(b for b in KIMG[1:] if all(past_fast_phase(c) for c in KIMG[KIMG >= b]))
    assert abs(chosen.kimg - expected) <= 16  # one snapshot of slack for the seed noise
    earlier = [i for i, c in enumerate(cands) if c.kimg < chosen.kimg]
    assert all(not all(c.qualifies for c in cands[i:]) or cands[i].flipped for i in earlier)


def test_a_difference_that_flips_later_pushes_the_budget_past_the_flip():
    def late(k):  # better than the baseline until 240 kimg, then worse
        return _baseline(k) * (0.5 if k < 240 else 1.5)

    fid = pd.concat([_frame("base", _baseline), _frame("late", late)])
    chosen = budget.choose(budget.candidates(fid, ["base", "late"], "base"))
    assert chosen is not None and chosen.kimg >= 240


def test_no_budget_qualifies_when_the_baseline_never_converges():
    # a steep power law falls 58% in the last quarter of every budget: never past the fast phase
    fid = pd.concat([_frame("base", lambda k: 1e7 * k**-3.0), _frame("b", lambda k: 10)])
    assert budget.choose(budget.candidates(fid, ["base", "b"], "base")) is None


def test_the_pilots_end_table_counts_where_an_arm_is_below_the_baseline_in_every_seed():
    def late(k):  # better than the baseline until 240 kimg, then worse
        return _baseline(k) * (0.5 if k < 240 else 1.5)

    seeds = range(3)
    fid = pd.concat([_frame("base", _baseline, seeds), _frame("late", late, seeds)])
    (end,) = budget.arms_at_end(fid, ["base", "late"], "base")
    below = int((KIMG < 240).sum())
    assert (end.kimg, end.snapshots) == (320, len(KIMG))
    assert (end.lower_everywhere, end.higher_everywhere) == (below, len(KIMG) - below)
    # the ratio at the end: geometric mean of the per-seed ratios, computed here independently
    last = fid[fid["kimg"] == 320].pivot(index="seed", columns="arm", values="value")
    assert math.isclose(end.ratio.value, float(np.exp(np.log(last["late"] / last["base"]).mean())))
    assert end.ratio.n == 3 and end.ratio.lo < end.ratio.value < end.ratio.hi
    assert end.fid == pytest.approx(last["late"].to_dict())


def test_an_arm_trained_on_four_times_the_images_is_compared_at_the_same_step():
    # batch 512 at equal steps: 4x the images, a snapshot at every step the baseline has one;
    # at every step its FID is half the baseline's, while at equal kimg its early steps are worse
    base = _frame("base", _baseline)
    arm = pd.DataFrame(
        [{"arm": "long", "seed": s, "kimg": 4 * k, "value": 0.5 * _baseline(k)} for s in range(2) for k in KIMG]
    )  # fmt: skip
    fid = pd.concat([base, arm])
    (end,) = budget.arms_at_end(fid, ["base", "long"], "base")
    assert end.kimg == 320 and end.snapshots == len(KIMG)  # on the baseline's axis
    assert end.lower_everywhere == end.snapshots
    assert all(math.isclose(v, 0.5 * _baseline(320), rel_tol=1e-9) for v in end.fid.values())
    table = budget.candidates(fid, ["base", "long"], "base")
    assert all(c.resolved == [("long", "better")] and not c.flipped for c in table)


def test_pilot_points_are_in_kimg_whatever_the_stored_curve_form():
    """A pilot stored before or after curves moved from steps to images reads the same."""
    from dcgan.budget import fid_points

    config = {"batch_size": 64}
    rows = [[250, 16.0, "fid", "mnist", 90.0], [250, 16.0, "fid", "randcnn", 9.0],
            [500, 32.0, "fid", "mnist", 40.0]]  # fmt: skip
    expected = [(16.0, 90.0), (32.0, 40.0)]
    assert fid_points({"config": config, "score_rows": rows}, "mnist") == expected
    by_images = {
        "config": config,
        "curve_unit": "images",
        "fid_curve": [[16000, 90.0], [32000, 40.0]],
    }
    assert fid_points(by_images, "mnist") == expected
    by_steps = {"config": config, "fid_curve": [[250, 90.0], [500, 40.0]]}
    assert fid_points(by_steps, "mnist") == expected


def _bn_pilot(finished_seeds: dict[str, list[int]]):
    from dcgan.specs import load_spec

    spec = load_spec("bn_placement")
    fid = pd.concat([_frame(arm, _baseline, seeds) for arm, seeds in finished_seeds.items()])
    done = fid[["arm", "seed"]].drop_duplicates().assign(status="completed")
    empty = pd.DataFrame(columns=["arm", "seed", "kimg", "value"])
    return budget.Pilot(spec, fid, done, empty, math.nan, {})


def test_an_incomplete_pilot_is_refused_with_the_runs_it_lacks(monkeypatch, tmp_path, capsys):
    # session 7's bn_placement pilot: 2 runs still held by another process when the page was made
    seeds = {"dcgan_paper": [0, 1], "d_first_bn": [0, 1], "g_last_bn": [0], "both": [0]}
    pilot = _bn_pilot(seeds)
    assert budget.missing_runs(pilot.spec, "pilot", pilot.done) == [("g_last_bn", 1), ("both", 1)]
    monkeypatch.setattr(budget, "pilot_fid", lambda *a, **k: pilot)

    rc = budget.command_choose_budget(["bn_placement", "--docs", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "6 of 8 planned runs" in err and "g_last_bn seed 1, both seed 1" in err
    assert "--profile pilot" in err and not (tmp_path / "pilot").exists()

    rc = budget.command_choose_budget(["bn_placement", "--docs", str(tmp_path), "--partial"])
    page = (tmp_path / "pilot" / "bn_placement.md").read_text()
    assert rc == 0 and "**Partial pilot**" in page and "g_last_bn seed 1" in page


def test_a_complete_pilot_page_is_not_marked_partial(monkeypatch, tmp_path):
    seeds = {arm: [0, 1] for arm in ("dcgan_paper", "d_first_bn", "g_last_bn", "both")}
    monkeypatch.setattr(budget, "pilot_fid", lambda *a, **k: _bn_pilot(seeds))
    assert budget.command_choose_budget(["bn_placement", "--docs", str(tmp_path)]) == 0
    assert "Partial" not in (tmp_path / "pilot" / "bn_placement.md").read_text()


def test_a_baseline_that_never_reaches_the_data_qualifies_no_budget():
    # the recipes pilot at quarter widths: FID flat at ~600 (so "past the fast phase" by the fall
    # alone) with precision 0 -- D wins outright; the rule's precision half must refuse it
    def flat(k):
        return 600.0

    fid = pd.concat([_frame("base", flat), _frame("b", flat)])
    assert budget.choose(budget.candidates(fid, ["base", "b"], "base")) is not None  # fall alone
    zero = fid.assign(value=0.0)
    cands = budget.candidates(fid, ["base", "b"], "base", zero, real_precision=0.93)
    assert budget.choose(cands) is None
    assert all(not c.on_manifold and "below the gate" in budget._table(cands, None) for c in cands)
    # a trained baseline's precision (0.6 of real 0.93) passes, and the budget is as before
    trained = pd.concat([_frame("base", _baseline), _frame("b", _baseline)])
    fine = trained.assign(value=0.6)
    before = budget.choose(budget.candidates(trained, ["base", "b"], "base"))
    after = budget.choose(budget.candidates(trained, ["base", "b"], "base", fine, 0.93))
    assert before is not None and after is not None and after.kimg == before.kimg


def test_a_diverged_arm_is_paired_by_its_planned_budget_not_where_it_stopped():
    # an arm planned for the baseline's 320 kimg that diverged at 160: same kimg, not "same step"
    base = _frame("base", _baseline)
    stopped = _frame("stopped", lambda k: 2 * _baseline(k))
    stopped = stopped[stopped["kimg"] <= 160]
    fid = pd.concat([base, stopped])
    (end,) = budget.arms_at_end(fid, ["base", "stopped"], "base", {"base": 320.0, "stopped": 320.0})
    assert end.kimg == 160 and end.ratio.value == pytest.approx(2.0, rel=0.05)
