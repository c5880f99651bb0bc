import time

import numpy as np
import pytest
import scipy.linalg
from torch_fidelity.metric_fid import fid_statistics_to_metric

from dcgan.metrics.frechet import frechet_distance, sqrtm_psd


def _scipy_fid(mu1, sigma1, mu2, sigma2):
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    diff = mu1 - mu2
    return diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def _stats(rng, n, d, shift=0.0, rank=None):
    mixing = rng.standard_normal((rank or d, d))
    x = rng.standard_normal((n, rank or d)) @ mixing + shift
    return x.mean(0), np.cov(x, rowvar=False)


@pytest.mark.parametrize("rank", [None, 20])  # 20 of 48: singular covariances (dead features)
def test_matches_scipy_and_torch_fidelity(rank):
    rng = np.random.default_rng(0)
    mu1, s1 = _stats(rng, 500, 48, rank=rank)
    mu2, s2 = _stats(rng, 400, 48, shift=0.3, rank=rank)
    ours = frechet_distance(mu1, s1, mu2, s2)
    reference = _scipy_fid(mu1, s1, mu2, s2)
    fidelity = fid_statistics_to_metric(
        {"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, verbose=False
    )["frechet_inception_distance"]
    assert ours == pytest.approx(reference, rel=1e-6)
    assert ours == pytest.approx(fidelity, rel=1e-6)


def test_cached_square_root_gives_the_same_value():
    rng = np.random.default_rng(1)
    mu1, s1 = _stats(rng, 300, 32)
    mu2, s2 = _stats(rng, 300, 32, shift=1.0)
    root = sqrtm_psd(s1)
    np.testing.assert_allclose(root @ root, s1, atol=1e-9)
    assert frechet_distance(mu1, s1, mu2, s2, sqrt_sigma1=root) == pytest.approx(
        frechet_distance(mu1, s1, mu2, s2), rel=1e-12
    )


def test_identical_statistics_give_zero():
    rng = np.random.default_rng(2)
    mu, sigma = _stats(rng, 300, 64)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)


def _seconds(fn):
    started = time.process_time()  # CPU time: steadier than wall time on a shared machine
    fn()
    return time.process_time() - started


@pytest.mark.slow
def test_cached_root_is_faster_than_scipy_sqrtm_on_2048_dims():
    """Per score the glue pays one eigvalsh: sqrt(S_ref) is computed once and cached."""
    rng = np.random.default_rng(3)
    mu1, s1 = _stats(rng, 3000, 2048)
    mu2, s2 = _stats(rng, 3000, 2048, shift=0.1)
    root = sqrtm_psd(s1)
    ours = frechet_distance(mu1, s1, mu2, s2, sqrt_sigma1=root)
    ours_seconds = min(
        _seconds(lambda: frechet_distance(mu1, s1, mu2, s2, sqrt_sigma1=root)) for _ in range(3)
    )
    scipy_seconds = _seconds(lambda: _scipy_fid(mu1, s1, mu2, s2))
    assert ours == pytest.approx(_scipy_fid(mu1, s1, mu2, s2), rel=1e-6)
    assert scipy_seconds > 2 * ours_seconds, (ours_seconds, scipy_seconds)


def test_fid_infinity_removes_the_finite_sample_bias_of_fid():
    """Chong & Forsyth 2020: FID(N) = FID_inf + slope / N; with exact reference statistics
    the intercept recovers the analytic Fréchet distance that FID at finite N overstates."""
    from dcgan.metrics.frechet import fid_infinity

    rng = np.random.default_rng(3)
    d = 32
    scale = np.linspace(0.6, 1.4, d)
    shift = np.full(d, 0.1)
    true = shift @ shift + ((1 - scale) ** 2).sum()  # vs N(0, I): sum (1 - s_i)^2 + |mu|^2
    fake = rng.standard_normal((10_000, d)) * scale + shift
    result = fid_infinity(fake, np.zeros(d), np.eye(d), points=15, seed=0)
    assert len(result["n"]) == 15 and result["n"][-1] == 10_000
    bias_small_n = result["fid"][0] - true
    assert bias_small_n > 0 and result["slope"] > 0  # FID overstates, falling as 1/N
    assert abs(result["fid_inf"] - true) < 0.2 * bias_small_n
    assert abs(result["fid_inf"] - true) < abs(result["fid"][-1] - true)
    with pytest.raises(ValueError, match=">= 10 sizes"):
        fid_infinity(fake, np.zeros(d), np.eye(d), points=5)
