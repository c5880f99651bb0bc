"""KID (RBF, jackknife standard error), precision/recall/density/coverage, OOD diagnostics:
checked against independent computations and analytic values."""

import math

import numpy as np
import pytest
import torch
from torch_fidelity.metric_prc import (
    KEY_METRIC_PRECISION,
    KEY_METRIC_RECALL,
    prc_features_to_metric,
)

from dcgan.metrics import kid, ood, prdc


def _gaussians(n, d, shift=0.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen, dtype=torch.float64) + shift


# ---- precision, recall, density, coverage ------------------------------------------------
def _naive_prdc(real, fake, k):
    """Loops over numpy arrays, written from the paper's definitions."""
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)

    def radii(x):
        out = []
        for i in range(len(x)):
            d = np.sort(np.linalg.norm(x - x[i], axis=1))
            out.append(d[k])  # d[0] is the point itself
        return np.array(out)

    r_real, r_fake = radii(real), radii(fake)
    d = np.linalg.norm(real[:, None, :] - fake[None, :, :], axis=2)  # (N, M)
    return {
        "precision": np.mean([(d[:, j] <= r_real).any() for j in range(len(fake))]),
        "recall": np.mean([(d[i, :] <= r_fake).any() for i in range(len(real))]),
        "density": sum((d[:, j] <= r_real).sum() for j in range(len(fake))) / (k * len(fake)),
        "coverage": np.mean([(d[i, :] <= r_real[i]).any() for i in range(len(real))]),
    }


def test_prdc_equals_a_naive_loop_implementation():
    real, fake = _gaussians(120, 6, seed=1), _gaussians(90, 6, shift=0.4, seed=2)
    ours = prdc.prdc(real, fake, k=5)
    naive = _naive_prdc(real.numpy(), fake.numpy(), k=5)
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(naive[key], abs=1e-12), key


def test_prdc_with_the_reals_radii_given_equals_prdc_computing_them():
    real, fake = _gaussians(120, 6, seed=11), _gaussians(90, 6, shift=0.4, seed=12)
    given = prdc.prdc(real, fake, k=5, radii=prdc.real_radii(real, 5))
    assert given == prdc.prdc(real, fake, k=5)
    # and the radii matter: other radii give other numbers
    assert prdc.prdc(real, fake, k=5, radii=prdc.real_radii(real, 2)) != given


def test_precision_and_recall_equal_torch_fidelitys():
    real, fake = _gaussians(300, 8, seed=3), _gaussians(300, 8, shift=0.5, seed=4)
    ours = prdc.prdc(real, fake, k=5)
    theirs = prc_features_to_metric(
        fake.float(), real.float(), prc_neighborhood=5, prc_batch_size=10_000,
        save_cpu_ram=True, verbose=False,
    )  # fmt: skip
    assert ours["precision"] == pytest.approx(theirs[KEY_METRIC_PRECISION], abs=1e-3)
    assert ours["recall"] == pytest.approx(theirs[KEY_METRIC_RECALL], abs=1e-3)


def test_density_and_coverage_match_their_analytic_values_on_identical_gaussians():
    """Naeem et al. 2020: E[density] = 1 and E[coverage] = 1 - prod (N-i)/(N+M-i)."""
    n, k, repeats = 500, 5, 8
    values = [
        prdc.prdc(_gaussians(n, 16, seed=10 + r), _gaussians(n, 16, seed=100 + r), k=k)
        for r in range(repeats)
    ]
    density = np.mean([v["density"] for v in values])
    coverage = np.mean([v["coverage"] for v in values])
    expected = prdc.expected_coverage(n, n, k)
    assert expected == pytest.approx(1 - 0.5**k, abs=2e-3)  # the large-N limit, 0.969
    assert density == pytest.approx(1.0, abs=0.04)
    assert coverage == pytest.approx(expected, abs=0.01)
    # and they do fall when the distributions differ
    shifted = prdc.prdc(_gaussians(n, 16, seed=1), _gaussians(n, 16, shift=0.5, seed=2), k=k)
    assert shifted["density"] < 0.8 and shifted["coverage"] < expected - 0.1


def test_expected_coverage_for_unequal_sizes():
    # one fake per real ball on average: 1 - (N-1)...(N-k)/((N+M-1)...(N+M-k))
    assert prdc.expected_coverage(10, 1, 1) == pytest.approx(1 - 9 / 10)
    assert prdc.expected_coverage(1000, 2000, 5) > prdc.expected_coverage(1000, 1000, 5)


# ---- KID -----------------------------------------------------------------------------------
def _naive_mmd2(x, y, s2):
    x, y = np.asarray(x), np.asarray(y)

    def k(a, b):
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return np.exp(-d2 / (2 * s2))

    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.mean()
    )


def test_kid_is_the_unbiased_rbf_mmd_over_all_fakes():
    x, y = _gaussians(80, 5, shift=0.3, seed=5), _gaussians(80, 5, seed=6)
    s2 = kid.median_sq_distance(y)
    d2 = ((y.numpy()[:, None] - y.numpy()[None]) ** 2).sum(-1)
    assert s2 == pytest.approx(np.median(d2[np.triu_indices(80, 1)]))
    result = kid.kid(x, y, s2, groups=4)  # as many reals as fakes: all of y, permuted
    assert result["kid"] == pytest.approx(_naive_mmd2(x, y, s2), rel=1e-9)
    assert result["kid"] == pytest.approx(kid.mmd2_unbiased(x, y, s2), rel=1e-9)
    assert 0 < result["kid"] < 2 and result["kid_se"] > 0


@pytest.mark.parametrize("n_real", [300, 60])  # more reals than fakes, and fewer (drawn again)
def test_kid_with_the_real_side_given_equals_kid_drawing_it(n_real):
    x, y = _gaussians(80, 5, shift=0.3, seed=7), _gaussians(n_real, 5, seed=8)
    s2 = kid.median_sq_distance(y)
    given = kid.kid(x, y, s2, groups=4, seed=3, reals=kid.real_side(y, 80, s2, 4, seed=3))
    assert given == kid.kid(x, y, s2, groups=4, seed=3)
    # another seed draws other reals: the real side is not a constant
    other = kid.kid(x, y, s2, groups=4, seed=3, reals=kid.real_side(y, 80, s2, 4, seed=4))
    assert other["kid"] != given["kid"]


def test_kid_standard_error_matches_the_spread_over_independent_samples():
    """The jackknife SE is a standard error: it matches KID's std over fresh samples.

    Measured with 200 samples: SE / spread = 1.05 when the sets differ (shift 0.25 and 0.5),
    1.12 at shift 0.1 and 1.39 when they are identical (at KID = 0 the U-statistic is
    degenerate and the jackknife conservative)."""
    reference = _gaussians(4000, 8, seed=7)
    s2 = kid.median_sq_distance(reference)
    for shift, low, high in ((0.0, 0.9, 1.8), (0.25, 0.8, 1.25)):
        values, errors = [], []
        for r in range(80):
            result = kid.kid(_gaussians(200, 8, shift=shift, seed=1000 + r), reference, s2, 10, r)
            values.append(result["kid"])
            errors.append(result["kid_se"])
        spread, mean_se = np.std(values, ddof=1), np.mean(errors)
        assert low < mean_se / spread < high, (shift, mean_se, spread)
        if shift == 0.0:  # unbiased: the mean over samples is 0 within its own error
            assert abs(np.mean(values)) < 3 * spread / math.sqrt(len(values))
        else:
            assert np.mean(values) > 3 * mean_se


def test_kid_is_bounded_where_a_polynomial_kernel_explodes():
    reference = _gaussians(500, 16, seed=8)
    s2 = kid.median_sq_distance(reference)
    far = _gaussians(500, 16, seed=9) * 30 + 100  # inflated norms
    value = kid.kid(far, reference, s2)["kid"]
    assert 0 < value <= 2


def test_kid_refuses_fewer_than_two_subsets():
    x = _gaussians(10, 2)
    with pytest.raises(ValueError, match="2 disjoint subsets"):
        kid.kid(x, x, 1.0, groups=1)


# ---- OOD diagnostics -----------------------------------------------------------------------
def test_class_histogram_scores_analytic_values():
    one_class = ood.class_histogram_scores(torch.full((1000,), 8))
    assert one_class["classes_covered"] == 1
    assert one_class["class_kl"] == pytest.approx(math.log(10))
    uniform = ood.class_histogram_scores(torch.arange(1000) % 10)
    assert uniform["classes_covered"] == 10 and uniform["class_kl"] == pytest.approx(0, abs=1e-12)
    # a class with 9 of 1,000 fakes (< 1%) is not covered
    skewed = torch.cat([torch.arange(991) % 9, torch.full((9,), 9)])
    assert ood.class_histogram_scores(skewed)["classes_covered"] == 9


def test_norm_excess_fraction():
    reference = _gaussians(10_000, 4, seed=11)
    threshold = ood.norm_quantile(reference)
    assert ood.norm_excess_fraction(_gaussians(10_000, 4, seed=12), threshold) == pytest.approx(
        0.01, abs=0.004
    )
    assert ood.norm_excess_fraction(_gaussians(1000, 4, seed=13) * 3, threshold) > 0.5
