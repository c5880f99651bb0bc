"""Evaluation cost: feature extraction per extractor, and one whole scoring of a generator."""

from __future__ import annotations

import pytest
import torch

from dcgan.config import ConfigError
from dcgan.models import build_models
from dcgan.train import resolve_device

from .conftest import DEVICE, best_round_s, config_for
from .steppers import sync

# Inception costs ~0.3 s an image on 2 CPU cores: a few dozen images give its rate.
N_IMAGES = {"mnist": 1000, "inception": 24}


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory):
    """A private torch hub dir: the converted Inception weights never land in the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
        yield


@pytest.mark.parametrize("name", ["mnist", "inception"])
def test_extract_features(benchmark, name, image_set, torch_home):
    extractors = pytest.importorskip("dcgan.metrics.extractors")
    device = resolve_device(DEVICE)
    spec = extractors.get_extractor(name)
    try:
        extractor = extractors.create_extractor(name, str(device))
    except ConfigError as err:  # e.g. the Inception weights cannot be built offline
        pytest.skip(f"extractor {name!r} unavailable: {err}")
    images = spec.adapt_channels(image_set(config_for("cpu_default")).images[: N_IMAGES[name]])

    def extract() -> None:
        with torch.no_grad(), extractors.full_fp32_precision():
            for chunk in images.split(spec.batch_size):
                extractor(chunk.to(device))
        sync(device)

    benchmark.group = "feature extraction"
    benchmark.pedantic(extract, rounds=2, warmup_rounds=1)
    benchmark.extra_info.update(
        images=len(images), images_per_s=len(images) / best_round_s(benchmark)
    )


def test_whole_evaluation(benchmark, image_set):
    """FID/KID/precision-recall of one generator on the `mnist` protocol (1,000 fakes), as
    the runner scores each snapshot: the reference features are cached by the warm-up round."""
    fidelity = pytest.importorskip("dcgan.metrics.fidelity")
    cfg = config_for("cpu_default")
    images = image_set(cfg)
    protocol = fidelity.make_protocol(images, "mnist", device=DEVICE)
    generator = build_models(cfg)[0]
    scores = {}

    def evaluate() -> None:
        scores.update(fidelity.score_generator(generator, cfg, images, protocol))

    benchmark.group = "evaluation"
    benchmark.pedantic(evaluate, rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(protocol=protocol.id, n_fake=protocol.n_fake)
