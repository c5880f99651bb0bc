"""Rank agreement between two feature spaces over scored snapshots."""

import math

import pytest

from dcgan.metrics.agreement import agreement


def _rows():
    rows = []
    for run, offset in (("a", 0.0), ("b", 5.0), ("c", 2.0)):
        for step in (10, 20, 30):
            fid = 100.0 / step + offset
            rows.append(
                {"run": run, "step": step, "kimg": step / 10, "fid_x": fid, "fid_y": 2 * fid,
                 "kid_x": fid, "kid_y": -fid, "ood_norm_frac_x": 0.5 if step == 10 else 0.0,
                 "classes_covered_mnist": 1 if step == 10 else 10}
            )  # fmt: skip
    return rows


def test_agreement_counts_rank_order_and_flags():
    result = agreement(_rows(), ("x", "y"))
    assert result["snapshots"] == 9 and result["runs"] == 3
    assert result["spearman"]["fid"] == pytest.approx(1.0)
    assert result["spearman"]["kid"] == pytest.approx(-1.0)  # ordered the other way round
    assert result["spearman_last"]["fid"] == pytest.approx(1.0)
    assert math.isnan(result["spearman"]["precision"])  # not scored
    assert result["same_step_pairs"]["fid"] == {"agree": 9, "pairs": 9}
    assert result["same_step_pairs"]["kid"] == {"agree": 0, "pairs": 9}
    assert result["flagged"]["ood_norm_frac_x > 0.1"] == 3
    assert result["flagged"]["classes_covered <= 2"] == 3
