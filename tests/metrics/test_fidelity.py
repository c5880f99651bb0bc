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


def _protocol(n_fake, n_real, subsets=10):
    return fidelity.Protocol(
        version=fidelity.PROTOCOL_VERSION,
        extractor="mnist",
        feature_layer="128",
        weights_sha256="sha",
        dataset_key="key",
        n_fake=n_fake,
        n_real=n_real,
        reference="split",
        kid_kernel="rbf",
        kid_subsets=subsets,
        kid_subset_size=n_fake // subsets,
        nearest_k=5,
        ood_norm_quantile=0.99,
        eval_seed=0,
        fidelity_version="0.4.0",
        device="cpu",
    )


def _unbiased_rbf_mmd(x, y, s2):
    def k(a, b):
        return np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * s2))

    k_xx, k_yy, k_xy = k(x, x), k(y, y), k(x, y)
    m = len(x)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return within - 2 * k_xy.sum() / m**2


def test_fid_and_kid_equal_an_independent_numpy_scipy_computation():
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(300, 16, generator=gen)
    fake = torch.randn(300, 16, generator=gen) * 1.2 + 0.3
    # as many reals as fakes: KID's draw of reals is a permutation, so KID is the full-set MMD
    reference = summarise_reference(real, real[:10])
    scores = scores_from_features(fake, reference, _protocol(300, 300))
    x, y = fake.double().numpy(), real.double().numpy()
    diff = x.mean(0) - y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    fid = diff @ diff + np.trace(s1 + s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
    assert scores["fid_mnist_300"] == pytest.approx(fid, rel=1e-6)
    s2 = float(reference["kid_sq_bandwidth"])
    assert scores["kid_mnist_300"] == pytest.approx(_unbiased_rbf_mmd(x, y, s2), rel=1e-6)
    assert 0 < scores["kid_mnist_300_std"] < scores["kid_mnist_300"]
    for metric in ("precision", "recall", "coverage", "ood_norm_frac"):
        assert 0 <= scores[f"{metric}_mnist_300"] <= 1


def test_identical_sets_give_zero_fid():
    real = torch.randn(200, 8, generator=torch.Generator().manual_seed(1))
    scores = scores_from_features(real, summarise_reference(real, real[:10]), _protocol(200, 200))
    assert abs(scores["fid_mnist_200"]) < 1e-9
    for metric in ("precision", "recall", "coverage"):
        assert scores[f"{metric}_mnist_200"] == 1.0


def test_kid_with_fifty_samples(small_mnist):
    protocol = make_protocol(small_mnist, "mnist", n_fake=50, device="cpu", kid_subsets=10)
    assert protocol.kid_subset_size == 5  # 10 disjoint subsets of the 50 fakes
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
    calls = []  # featurisations of the whole real set (fakes are featurised per score)
    featurise = fidelity._featurise_images
    monkeypatch.setattr(
        fidelity,
        "_featurise_images",
        lambda images, *a, **k: calls.append(len(images) == 600) or featurise(images, *a, **k),
    )
    protocol = make_protocol(small_mnist, "mnist", n_fake=100, device="cpu", kid_subsets=10)
    cfg = RunConfig(steps=1)
    g, _ = build_models(cfg)
    first = score_generator(g, cfg, small_mnist, protocol)
    second = score_generator(g, cfg, small_mnist, protocol)
    floor = score_floor(small_mnist, protocol)
    assert sum(calls) == 1
    assert len(list((cache_dir / "features").glob("mnist-*.pt"))) == 1
    assert first["fid_mnist_100"] == second["fid_mnist_100"]  # same z, same weights
    assert floor["fid_mnist_100"] < first["fid_mnist_100"]
    for score in (first, floor):
        assert score["protocol_id"] == protocol.id and score["protocol"]["n_fake"] == 100


def test_scores_flow_through_torch_fidelitys_own_pipeline(small_mnist):
    """calculate_metrics with the registered `mnist` extractor, drawing the fakes through its
    own generator loop, agrees with our glue (fakes generated once, then featurised).
    KID is ours (RBF), not torch-fidelity's polynomial one: test_kid_prdc checks it."""
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
        rng_seed=protocol.eval_seed,
        cuda=False,
        cache=False,
        save_cpu_ram=True,
        verbose=False,
    )
    assert ours["fid_mnist_100"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)


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


FEATURE = ("fid", "kid", "precision", "recall", "density", "coverage", "ood_norm_frac")
RECORD_KEYS = {"metric", "extractor", "name", "value", "step", "kimg", "kind", "protocol_id"}


def test_score_run_writes_one_record_per_metric_and_step_and_skips_scored(tmp_path, monkeypatch):
    cfg = RunConfig(steps=20)
    run_dir = tmp_path / "run"
    _fake_run(run_dir, cfg, [10, 20], nan_step=20)
    records = score_run(run_dir, "mnist", n_fake=200, device="cpu")
    assert {(r["metric"], r["name"], r["step"]) for r in records} == {
        (m, f"{m}_mnist_200", s)
        for m in (*FEATURE, "classes_covered", "class_kl")
        for s in (None, 10, 20)
    }
    for r in records:
        assert RECORD_KEYS <= set(r) and r["extractor"] == "mnist"
        assert r["metric"] in fidelity.METRICS
        assert r["kind"] == ("floor" if r["step"] is None else "generator")
        assert r["kimg"] == (None if r["step"] is None else r["step"] * cfg.batch_size / 1000)
        assert ("std" in r) == (r["metric"] == "kid")
    nan_fid = next(r for r in records if r["metric"] == "fid" and r["step"] == 20)
    assert math.isnan(nan_fid["value"]) and "non-finite" in nan_fid["reason"]
    floor_classes = next(
        r for r in records if r["metric"] == "classes_covered" and r["step"] is None
    )
    assert floor_classes["value"] == 10  # held-out real digits: every class
    lines = (run_dir / "scores.jsonl").read_text().splitlines()
    assert len(lines) == len(records)
    assert fidelity.read_scores(run_dir) == [json.loads(line) for line in lines]

    monkeypatch.setattr(fidelity, "score_images", lambda *a: pytest.fail("re-scored"))
    monkeypatch.setattr(fidelity, "score_classes", lambda *a: pytest.fail("re-scored"))
    again = score_run(run_dir, "mnist", n_fake=200, device="cpu")
    assert len(again) == len(records)


def test_score_run_scores_the_same_fakes_in_several_feature_spaces(tmp_path, monkeypatch):
    cfg = RunConfig(steps=10)
    run_dir = tmp_path / "run"
    _fake_run(run_dir, cfg, [10])
    generated = []
    generate_fakes = fidelity.generate_fakes
    monkeypatch.setattr(
        fidelity,
        "generate_fakes",
        lambda *a, **k: generated.append(a[2]) or generate_fakes(*a, **k),
    )
    records = score_run(run_dir, ["mnist", "randcnn"], n_fake=200, device="cpu")
    assert generated == [200]  # one draw of fakes for both extractors and the class histogram
    for extractor in ("mnist", "randcnn"):
        mine = fidelity.select(records, extractor=extractor, kind="generator")
        assert {r["metric"] for r in mine} >= set(FEATURE)
        assert all(r["name"].endswith(f"_{extractor}_200") for r in mine)
    ids = {r["extractor"]: r["protocol_id"] for r in records if r["metric"] == "fid"}
    assert ids["mnist"] != ids["randcnn"]
    # classes come from the mnist classifier once, whatever the extractors
    assert len(fidelity.select(records, "classes_covered", kind="generator")) == 1


def test_the_class_histogram_reuses_the_mnist_feature_pass_and_matches_the_classifier(
    tmp_path, monkeypatch
):
    cfg = RunConfig(steps=10)
    run_dir = tmp_path / "run"
    _fake_run(run_dir, cfg, [10])
    images, _ = fidelity.generate_fakes(
        fidelity.Generator(cfg), cfg.nz, 300, fidelity.EVAL_NOISE_SEED, "cpu"
    )
    digits = load_images("mnist", 32, 1).images[:300]
    for batch in (images, digits):  # an untrained G's fakes, and real digits
        logits = fidelity.featurise_layers(batch, "mnist", ["logits"])["logits"]
        assert torch.equal(logits.argmax(1), fidelity.predict_classes(batch))
    classifier_passes = []
    predict = fidelity.predict_classes
    monkeypatch.setattr(
        fidelity,
        "predict_classes",
        lambda images, *a: classifier_passes.append(len(images)) or predict(images, *a),
    )
    records = score_run(run_dir, ["randcnn", "mnist"], n_fake=300, device="cpu")
    assert classifier_passes == [300]  # the held-out floor only; the fakes' come with features
    fakes = fidelity.select(records, "class_kl", kind="generator")
    assert len(fakes) == 1 and math.isfinite(fakes[0]["value"])
    # without the mnist features the classifier runs on its own: same values
    alone = tmp_path / "alone"
    _fake_run(alone, cfg, [10])
    by_itself = score_run(alone, "randcnn", n_fake=300, device="cpu", count_classes=True)
    assert classifier_passes == [300, 300, 300]
    assert fidelity.select(by_itself, "class_kl", kind="generator")[0]["value"] == fakes[0]["value"]


def _legacy_lines(run_dir):
    """scores.jsonl as the code before protocol version 2 wrote it."""
    protocol = {
        "extractor": "mnist", "n_fake": 200, "kid_subsets": 10, "prc_neighborhood": 3,
        "id": "0123456789ab",
    }  # fmt: skip
    modes_protocol = {"kind": "stacked_mnist_modes", "n": 300, "id": "ba9876543210"}
    lines = [
        {"metric": "fid_mnist_200", "value": 50.0, "step": None, "kind": "floor"},
        {"metric": "fid_mnist_200", "value": 900.0, "step": 10, "kind": "generator"},
        {"metric": "kid_mnist_200", "value": 3.5, "std": 0.1, "step": 10, "kind": "generator"},
        {"metric": "precision_mnist_200", "value": 0.02, "step": 10, "kind": "generator"},
    ]
    lines = [line | {"protocol_id": protocol["id"], "protocol": protocol} for line in lines]
    lines += [
        {"metric": name, "value": v, "step": 10, "kind": "generator",
         "protocol_id": modes_protocol["id"], "protocol": modes_protocol}
        for name, v in (("modes_kl_300", 1.5), ("modes_300", 40))
    ]  # fmt: skip
    text = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)
    (run_dir / "scores.jsonl").write_text(text)
    return text


def test_legacy_records_are_upgraded_on_read_and_kept_when_rescoring(tmp_path):
    cfg = RunConfig(steps=10, batch_size=50)
    run_dir = tmp_path / "run"
    _fake_run(run_dir, cfg, [10])
    legacy = _legacy_lines(run_dir)
    upgraded = fidelity.read_scores(run_dir)
    assert [(r["metric"], r["extractor"], r["name"]) for r in upgraded] == [
        ("fid", "mnist", "fid_mnist_200"),
        ("fid", "mnist", "fid_mnist_200"),
        ("kid", "mnist", "kid_mnist_200"),
        ("precision", "mnist", "precision_mnist_200"),
        ("modes_kl", "mnist", "modes_kl_300"),
        ("modes", "mnist", "modes_300"),
    ]
    assert [r["kimg"] for r in upgraded] == [None, 0.5, 0.5, 0.5, 0.5, 0.5]
    assert all("std" not in r for r in upgraded)  # the old KID spread was no standard error
    assert all(fidelity.protocol_version(r) == 1 for r in upgraded[:4])
    assert fidelity.select(upgraded, "fid") == []  # not the current protocol
    assert len(fidelity.select(upgraded, "fid", current=False)) == 2

    records = score_run(run_dir, ["mnist", "randcnn"], n_fake=200, device="cpu")
    text = (run_dir / "scores.jsonl").read_text()
    assert text.startswith(legacy)  # old lines untouched, new ones appended
    assert {r["protocol"]["version"] for r in records if r["metric"] in FEATURE} == {2}
    both = fidelity.read_scores(run_dir)
    assert len(both) == len(upgraded) + len(records)
    assert len(fidelity.select(both, "fid", "mnist", "generator")) == 1


def test_ood_flagged_marks_snapshots_above_the_limit():
    def rec(extractor, step, value):
        return {"metric": "ood_norm_frac", "extractor": extractor, "step": step, "value": value,
                "kind": "generator", "protocol": {"version": fidelity.PROTOCOL_VERSION}}  # fmt: skip

    flags = fidelity.ood_flagged([rec("mnist", 10, 0.5), rec("randcnn", 10, 0.02)])
    assert flags == {("mnist", 10): True, ("randcnn", 10): False}


def test_score_run_counts_modes_of_stacked_mnist_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(modes, "N_SAMPLES", 300)
    cfg = RunConfig(data="stacked_mnist", channels=3, steps=10)
    run_dir = tmp_path / "run"
    _fake_run(run_dir, cfg, [10])
    records = score_run(run_dir, "mnist", n_fake=500, device="cpu")
    by_metric = {r["metric"]: r for r in records if r["step"] == 10}
    assert 1 <= by_metric["modes"]["value"] <= 300
    assert by_metric["modes_kl"]["value"] >= 0
    assert by_metric["modes"]["name"] == "modes_mnist_300"
    assert by_metric["modes"]["protocol"]["kind"] == "stacked_mnist_modes"
    assert by_metric["fid"]["name"] == "fid_mnist_500"
    assert "classes_covered" not in by_metric  # the class histogram is for MNIST runs only


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
        if r["name"] == "fid_mnist_1k" and r["step"] == cfg.total_steps
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
