"""The second feature spaces: registered with torch-fidelity, rebuilt bit-identically by their
command, refused when the committed weights change; DINOv2 only from local disk."""

import dataclasses

import pytest
import torch
from torch_fidelity.utils import create_feature_extractor

from dcgan.config import ConfigError
from dcgan.data import ImageSet
from dcgan.metrics import feature_nets
from dcgan.metrics.fidelity import make_protocol
from dcgan.metrics.mnist_net import ChecksumError


def test_randcnn_is_registered_with_torch_fidelity_and_matches_the_net(mnist):
    images = mnist.images[:64]
    extractor = create_feature_extractor("randcnn", ["128"], cuda=False, verbose=False)
    (through_fidelity,) = extractor(images)
    direct = feature_nets.load_net("randcnn")(feature_nets.to_input(images))
    assert through_fidelity.shape == (64, 128)
    # the extractor runs the net channels_last (faster on CPU): the same features up to the
    # order of float additions, far below anything a score can show
    assert torch.allclose(through_fidelity, direct, rtol=1e-5, atol=1e-4)
    # standardised on the reference digits: about unit scale on real digits
    assert 0.5 < float(through_fidelity.std()) < 2.0
    # RGB is read as its mean, like the mnist extractor
    (rgb,) = extractor(images.expand(-1, 3, -1, -1))
    assert torch.allclose(rgb, through_fidelity, atol=1e-5)


def test_the_build_command_reproduces_the_committed_randcnn_weights():
    net, info = feature_nets.build_randcnn(seed=0)
    committed = feature_nets._verified_state("randcnn")
    built = net.state_dict()
    assert info == {"seed": 0} and built.keys() == committed.keys()
    assert all(torch.equal(built[k], committed[k]) for k in built)


def test_a_changed_weights_file_is_refused(monkeypatch):
    spec = feature_nets.NETS["randcnn"]
    monkeypatch.setitem(feature_nets.NETS, "randcnn", dataclasses.replace(spec, sha256="0" * 64))
    feature_nets._verified_state.cache_clear()
    try:
        with pytest.raises(ChecksumError, match="build-extractor randcnn"):
            feature_nets.load_net("randcnn")
    finally:
        feature_nets._verified_state.cache_clear()


def test_dinov2_is_refused_with_the_missing_files_named(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    tiny = ImageSet(torch.zeros(300, 3, 32, 32, dtype=torch.uint8), None, "k", "zeros")
    with pytest.raises(ConfigError, match="dinov2_vits14_pretrain.pth") as err:
        make_protocol(tiny, "dinov2", n_fake=100, device="cpu")
    assert "never downloads" in str(err.value) and str(tmp_path / "hub") in str(err.value)


def test_inception_defaults_to_ten_thousand_fakes():
    tiny = ImageSet(torch.zeros(300, 3, 32, 32, dtype=torch.uint8), None, "k", "zeros")
    with pytest.raises(ConfigError, match="n_fake=10000 \\(the inception default; pass n_fake\\)"):
        make_protocol(tiny, "inception", device="cpu")
