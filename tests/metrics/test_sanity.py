"""The metric sanity suite on held-out real digits: every metric in every default feature
space gets monotonically worse under blur, noise, class dropping and memorisation, and grey
noise scores worst (dcgan.metrics.sanity; curves in docs/metrics.md)."""

import copy

import pytest
import torch

from dcgan.data import held_out_split, load_images
from dcgan.metrics import sanity
from dcgan.metrics.extractors import EXTRACTORS, MNIST_FAMILY_DEFAULTS, SANITY


@pytest.fixture(scope="module")
def curves():
    cache = {}

    def get(extractor):
        if extractor not in cache:
            cache[extractor] = sanity.sanity_curves(extractor)
        return cache[extractor]

    return get


@pytest.mark.parametrize("extractor", MNIST_FAMILY_DEFAULTS)
def test_every_default_extractor_passes_the_sanity_suite(curves, extractor):
    assert sanity.check(curves(extractor)) == []


def test_the_suite_rejects_the_autoencoder_space(curves):
    """The measured counter-example: in the `ae` space blurred or noisy digits look *more*
    real to precision and density, and grey noise gets precision 1."""
    failures = sanity.check(curves("ae"))
    assert any("ae precision blur" in f for f in failures)
    assert any("ae density noise" in f for f in failures)
    assert any("ae precision: grey noise" in f for f in failures)


def test_defaults_are_exactly_the_extractors_that_passed():
    passed = {name for name, status in SANITY.items() if status == "passed"}
    assert set(MNIST_FAMILY_DEFAULTS) == passed
    assert set(SANITY) == set(EXTRACTORS)


def _synthetic_curves():
    def row(level, bad):  # bad in [0, 1]: 0 = real data, 1 = as bad as it gets
        return {
            "level": level,
            "fid": 1 + 100 * bad,
            "kid": 0.001 + bad,
            "precision": 0.9 * (1 - bad),
            "density": 1.0 * (1 - bad),
            "recall": 0.9 * (1 - bad),
            "coverage": 0.97 * (1 - bad),
        }

    families = {
        f: [row(level, i / 4) for i, level in enumerate(v)] for f, v in sanity.LEVELS.items()
    }
    families["grey_noise"] = [row(None, 1.0)]
    return {"extractor": "synthetic", "families": families}


def test_check_catches_a_non_monotone_step_and_a_grey_noise_that_is_not_worst():
    good = _synthetic_curves()
    assert sanity.check(good) == []  # ties at 0 with grey noise are allowed for bounded metrics
    bumped = copy.deepcopy(good)
    bumped["families"]["blur"][2]["fid"] = 0.5  # better than the clean sample
    assert any("fid blur" in f for f in sanity.check(bumped))
    flattered = copy.deepcopy(good)
    flattered["families"]["grey_noise"][0]["kid"] = 0.0
    assert any("kid: grey noise" in f for f in sanity.check(flattered))
    # precision is not required to fall when classes are dropped
    dropped = copy.deepcopy(good)
    for r in dropped["families"]["drop_classes"]:
        r["precision"] = 0.9
    assert sanity.check(dropped) == []


def test_slopes_are_signed_so_that_positive_means_worse():
    slopes = sanity.slopes(_synthetic_curves())
    assert slopes["fid"]["blur"] == pytest.approx(0.75)
    assert slopes["precision"]["noise"] == pytest.approx(0.75)


def test_corruptions_do_what_they_say():
    digits = load_images("mnist", 32, 1)
    _, held_out = held_out_split(len(digits), 1000)
    images, labels = digits.images[held_out], digits.labels[held_out]
    clean = sanity.sample(images, labels, "blur", 0.0)
    assert clean.shape == (sanity.N_SAMPLE, 1, 32, 32) and clean.dtype == torch.uint8
    blurred = sanity.sample(images, labels, "blur", 2.0)
    assert blurred.float().mean().item() == pytest.approx(clean.float().mean().item(), rel=0.02)
    assert blurred.float().std() < 0.8 * clean.float().std()  # ink kept, contrast lost
    noisy = sanity.sample(images, labels, "noise", 64.0)
    assert (noisy.float() - clean.float()).std() > 40
    few = sanity.sample(images, labels, "memorise", 10)
    assert len(torch.unique(few.flatten(1), dim=0)) == 10
    kept = sanity.sample(images, labels, "drop_classes", 4)
    label_of = {img.numpy().tobytes(): int(y) for img, y in zip(images, labels, strict=True)}
    kept_labels = {label_of[img.numpy().tobytes()] for img in kept}
    assert kept_labels == set(range(6))
