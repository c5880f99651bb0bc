import dataclasses
import json
import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch_fidelity

from dcgan import data
from dcgan.config import ConfigError, RunConfig
from dcgan.data import ImageSet, load_images
from dcgan.metrics import fidelity, modes
from dcgan.metrics.fidelity import (
    make_protocol,
    reference_cache_key,
    score_floor,
    score_generator,
    score_run,
    scores_from_features,
    summarise_reference,
)
from dcgan.models import build_models


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DCGAN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def small_mnist():
    """600 real digits: enough for the floor and a 100-fake protocol, fast on a CPU."""
    digits = load_images("mnist", 32, 1)
    return ImageSet(digits.images[:600], digits.labels[:600], "mnist-first-600", "mnist[:600]")


def _protocol(n_fake, n_real, subset):
    return fidelity.Protocol(
        "mnist", "128", "sha", "key", n_fake, n_real, "split", subset, 3, 3, 0, "0.4.0", "cpu"
    )


def _unbiased_poly_mmd(x, y):
    d = x.shape[1]
    k_xx, k_yy, k_xy = ((a @ b.T / d + 1) ** 3 for a, b in [(x, x), (y, y), (x, y)])
    m = len(x)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return within - 2 * k_xy.sum() / m**2


def test_fid_and_kid_equal_an_independent_numpy_scipy_computation():
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(300, 16, generator=gen)
    fake = torch.randn(300, 16, generator=gen) * 1.2 + 0.3
    # kid subset == the full sets: every subset is a permutation, so KID is the full-set MMD
    scores = scores_from_features(
        fake, summarise_reference(real, real[:10]), _protocol(300, 300, 300)
    )
    x, y = fake.double().numpy(), real.double().numpy()
    diff = x.mean(0) - y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    fid = diff @ diff + np.trace(s1 + s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
    assert scores["fid_mnist_300"] == pytest.approx(fid, rel=1e-6)
    assert scores["kid_mnist_300"] == pytest.approx(_unbiased_poly_mmd(x, y), rel=1e-6)
    assert scores["kid_mnist_300_std"] == pytest.approx(0, abs=1e-9)
    assert 0 <= scores["precision_mnist_300"] <= 1 and 0 <= scores["recall_mnist_300"] <= 1


def test_identical_sets_give_zero_fid():
    real = torch.randn(200, 8, generator=torch.Generator().manual_seed(1))
    scores = scores_from_features(
        real, summarise_reference(real, real[:10]), _protocol(200, 200, 200)
    )
    assert abs(scores["fid_mnist_200"]) < 1e-9
    assert scores["precision_mnist_200"] == 1.0 and scores["recall_mnist_200"] == 1.0


def test_kid_with_fifty_samples(small_mnist):
    protocol = make_protocol(small_mnist, "mnist", n_fake=50, device="cpu", kid_subsets=10)
    assert protocol.kid_subset_size == 50
    floor = score_floor(small_mnist, protocol)
    assert math.isfinite(floor["kid_mnist_50"]) and math.isfinite(floor["fid_mnist_50"])


def test_cache_key_changes_with_every_protocol_input(small_mnist, monkeypatch):
    protocol = make_protocol(small_mnist, "mnist", n_fake=100, device="cpu")
    key = reference_cache_key(protocol)
    changed = [
        dataclasses.replace(protocol, dataset_key="other"),
        dataclasses.replace(protocol, extractor="inception", feature_layer="2048"),
        dataclasses.replace(protocol, weights_sha256="0" * 64),
        dataclasses.replace(protocol, n_fake=101, n_real=499),
        dataclasses.replace(protocol, n_real=599, n_fake=1),
    ]
    # what only stamps scores (device, KID subsets) leaves the real features' key alone
    assert reference_cache_key(dataclasses.replace(protocol, device="cuda", kid_subsets=5)) == key
    keys = [reference_cache_key(p) for p in changed]
    monkeypatch.setattr(data, "HELD_OUT_SEED", data.HELD_OUT_SEED + 1)  # another split
    keys.append(reference_cache_key(protocol))
    assert key not in keys and len(set(keys)) == len(keys)


def test_second_scoring_only_pays_for_fakes(small_mnist, monkeypatch, cache_dir):
    calls = []
    featurise = fidelity._featurise_images
    monkeypatch.setattr(
        fidelity, "_featurise_images", lambda *a, **k: calls.append(1) or featurise(*a, **k)
    )
    protocol = make_protocol(small_mnist, "mnist", n_fake=100, device="cpu", kid_subsets=10)
    cfg = RunConfig(steps=1)
    g, _ = build_models(cfg)
    first = score_generator(g, cfg, small_mnist, protocol)
    second = score_generator(g, cfg, small_mnist, protocol)
    floor = score_floor(small_mnist, protocol)
    assert len(calls) == 1
    assert len(list((cache_dir / "features").glob("mnist-*.pt"))) == 1
    assert first["fid_mnist_100"] == second["fid_mnist_100"]  # same z, same weights
    assert floor["fid_mnist_100"] < first["fid_mnist_100"]
    for score in (first, floor):
        assert score["protocol_id"] == protocol.id and score["protocol"]["n_fake"] == 100


def test_scores_flow_through_torch_fidelitys_own_pipeline(small_mnist):
    """calculate_metrics with the registered `mnist` extractor agrees with our glue."""
    protocol = make_protocol(small_mnist, "mnist", n_fake=100, device="cpu", kid_subsets=10)
    cfg = RunConfig(steps=1)
    g, _ = build_models(cfg)
    ours = score_generator(g, cfg, small_mnist, protocol)
    reference_idx, _ = data.held_out_split(len(small_mnist), 100)
    theirs = torch_fidelity.calculate_metrics(
        input1=torch_fidelity.GenerativeModelModuleWrapper(
            fidelity._QuantisedGenerator(g, fidelity.get_extractor("mnist")), cfg.nz, "normal", 0
        ),
        input1_model_num_samples=100,
        input2=fidelity._ImageTensors(small_mnist.images[reference_idx]),
        feature_extractor="mnist",
        fid=True,
        kid=True,
        kid_subsets=10,
        kid_subset_size=protocol.kid_subset_size,
        rng_seed=protocol.eval_seed,
        cuda=False,
        cache=False,
        save_cpu_ram=True,
        verbose=False,
    )
    assert ours["fid_mnist_100"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    assert ours["kid_mnist_100"] == pytest.approx(
        theirs["kernel_inception_distance_mean"], rel=1e-3
    )


def test_generator_is_left_untouched_and_nan_weights_score_nan(small_mnist):
    protocol = make_protocol(small_mnist, "mnist", n_fake=100, device="cpu", kid_subsets=10)
    cfg = RunConfig(steps=1)
    g, _ = build_models(cfg)
    g.train()
    score_generator(g, cfg, small_mnist, protocol)
    assert g.training
    with torch.no_grad():
        next(g.parameters()).fill_(float("nan"))
    result = score_generator(g, cfg, small_mnist, protocol)
    assert math.isnan(result["fid_mnist_100"]) and "non-finite" in result["reason"]


def test_tf32_is_off_while_features_are_taken_and_restored_after(small_mnist, monkeypatch):
    seen = []
    featurise = fidelity._featurise_images

    def spy(*args, **kwargs):
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return featurise(*args, **kwargs)

    monkeypatch.setattr(fidelity, "_featurise_images", spy)
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32
    matmul.allow_tf32 = cudnn.allow_tf32 = True
    try:
        score_floor(small_mnist, make_protocol(small_mnist, "mnist", 100, "cpu", kid_subsets=2))
        assert seen == [(False, False)]
        assert matmul.allow_tf32 and cudnn.allow_tf32
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


def test_mismatched_image_size_is_refused(small_mnist):
    protocol = make_protocol(small_mnist, "mnist", n_fake=100, device="cpu")
    cfg = RunConfig(image_size=64)
    g, _ = build_models(cfg)
    with pytest.raises(ConfigError, match="cannot be compared"):
        score_generator(g, cfg, small_mnist, protocol)


def _fake_run(run_dir, cfg, steps, nan_step=None):
    (run_dir / "snapshots").mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict()))
    (run_dir / "result.json").write_text(json.dumps({"status": "completed"}))
    g, _ = build_models(cfg)
    for step in steps:
        state = g.state_dict()
        if step == nan_step:
            state = {k: v.clone() for k, v in state.items()}
            next(iter(state.values())).fill_(float("nan"))
        torch.save(state, run_dir / "snapshots" / f"G_step_{step:07d}.pt")


def test_score_run_writes_one_line_per_metric_and_step_and_skips_scored(tmp_path, monkeypatch):
    monkeypatch.setattr(fidelity, "KID_SUBSETS", {"mnist": 5, "inception": 5})
    cfg = RunConfig(steps=20)
    run_dir = tmp_path / "run"
    _fake_run(run_dir, cfg, [10, 20], nan_step=20)
    records = score_run(run_dir, "mnist", n_fake=200, device="cpu")
    assert {(r["metric"], r["step"]) for r in records} == {
        (f"{m}_mnist_200", s) for m in ("fid", "kid", "precision", "recall") for s in (None, 10, 20)
    }
    nan_fid = next(r for r in records if r["metric"] == "fid_mnist_200" and r["step"] == 20)
    assert math.isnan(nan_fid["value"]) and "non-finite" in nan_fid["reason"]
    lines = (run_dir / "scores.jsonl").read_text().splitlines()
    assert len(lines) == len(records)
    assert all(json.loads(line)["protocol"]["id"] == records[0]["protocol_id"] for line in lines)

    monkeypatch.setattr(fidelity, "score_generator", lambda *a: pytest.fail("re-scored"))
    again = score_run(run_dir, "mnist", n_fake=200, device="cpu")
    assert len(again) == len(records)


def test_score_run_counts_modes_of_stacked_mnist_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(fidelity, "KID_SUBSETS", {"mnist": 2, "inception": 2})
    monkeypatch.setattr(modes, "N_SAMPLES", 300)
    cfg = RunConfig(data="stacked_mnist", channels=3, steps=10)
    run_dir = tmp_path / "run"
    _fake_run(run_dir, cfg, [10])
    records = score_run(run_dir, "mnist", n_fake=500, device="cpu")
    by_metric = {r["metric"]: r for r in records if r["step"] == 10}
    assert 1 <= by_metric["modes_300"]["value"] <= 300
    assert by_metric["modes_kl_300"]["value"] >= 0
    assert by_metric["modes_300"]["protocol"]["kind"] == "stacked_mnist_modes"
    assert "fid_mnist_500" in by_metric


@pytest.mark.slow
def test_trained_generator_beats_untrained(tmp_path):
    from dcgan.train import train

    # ~800 steps: DCGAN's first few hundred steps draw noisy strokes that score worse than
    # an untrained generator's flat gray (FID ~1400 vs ~700); by 750 steps FID is ~170.
    cfg = RunConfig(
        steps=800, batch_size=64, g_width=32, d_width=32, snapshot_every=800, device="cpu"
    )
    run_dir = tmp_path / "run"
    train(cfg, run_dir)
    digits = load_images("mnist", 32, 1)
    protocol = make_protocol(digits, "mnist", device="cpu")
    untrained, _ = build_models(cfg)
    before = score_generator(untrained, cfg, digits, protocol)["fid_mnist_1k"]
    after = [
        r["value"]
        for r in score_run(run_dir, "mnist", device="cpu", steps=[cfg.total_steps])
        if r["metric"] == "fid_mnist_1k" and r["step"] == cfg.total_steps
    ]
    assert after and after[0] < before / 2, (after, before)


@pytest.mark.slow
def test_inception_scores_gray_digits_through_the_same_glue(small_mnist):
    """Grayscale is repeated to RGB for inception-v3-compat; ~1 s per image on a CPU."""
    tiny = ImageSet(small_mnist.images[:24], None, "mnist-first-24", "mnist[:24]")
    protocol = make_protocol(tiny, "inception", n_fake=8, device="cpu", kid_subsets=2)
    assert protocol.feature_layer == "2048" and len(protocol.weights_sha256) == 64
    floor = score_floor(tiny, protocol)
    assert math.isfinite(floor["fid_inception_8"]) and floor["fid_inception_8"] > 0
    cfg = RunConfig(steps=1)
    g, _ = build_models(cfg)
    assert score_generator(g, cfg, tiny, protocol)["fid_inception_8"] > floor["fid_inception_8"]
