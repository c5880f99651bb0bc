import pytest
import torch

from dcgan.data import held_out_split, load_images
from dcgan.metrics import mnist_net
from dcgan.metrics.extractors import classify_digits, create_extractor


@pytest.fixture(scope="module")
def digits():
    return load_images("mnist", 32, 1)


def test_committed_weights_match_the_recorded_checksum():
    assert mnist_net.file_sha256(mnist_net.WEIGHTS_PATH) == mnist_net.WEIGHTS_SHA256
    state = torch.load(mnist_net.WEIGHTS_PATH, weights_only=True)
    assert all(torch.is_tensor(v) for v in state.values())
    assert mnist_net.WEIGHTS_PATH.stat().st_size < 2_000_000


def test_held_out_accuracy_of_committed_weights(digits):
    _, held_out = held_out_split(len(digits), mnist_net.N_HELD_OUT)
    predicted = classify_digits(digits.images[held_out])[:, 0]
    accuracy = (predicted == digits.labels[held_out]).float().mean().item()
    assert accuracy >= 0.98
    assert accuracy == pytest.approx(mnist_net.HELD_OUT_ACCURACY, abs=1e-3)


def test_tampered_weights_are_refused(tmp_path, monkeypatch):
    tampered = tmp_path / "mnist_classifier.pt"
    blob = bytearray(mnist_net.WEIGHTS_PATH.read_bytes())
    blob[-100] ^= 1
    tampered.write_bytes(bytes(blob))
    monkeypatch.setattr(mnist_net, "WEIGHTS_PATH", tampered)
    mnist_net.verified_state_dict.cache_clear()
    try:
        with pytest.raises(mnist_net.ChecksumError, match="sha256"):
            mnist_net.load_classifier()
    finally:
        mnist_net.verified_state_dict.cache_clear()


def test_extractor_takes_gray_rgb_and_other_sizes(digits):
    extractor = create_extractor("mnist", "cpu")
    gray = digits.images[:8]
    (features,) = extractor(gray)
    assert features.shape == (8, mnist_net.FEATURE_DIM) and features.dtype == torch.float32
    (rgb_features,) = extractor(gray.expand(-1, 3, -1, -1).contiguous())
    torch.testing.assert_close(rgb_features, features)  # gray RGB averages to the same gray
    big = torch.nn.functional.interpolate(gray.float(), size=64, mode="nearest").to(torch.uint8)
    (big_features,) = extractor(big)
    assert big_features.shape == features.shape
    with pytest.raises(ValueError, match="uint8"):
        extractor(gray.float())


@pytest.mark.slow
def test_retraining_reaches_the_recorded_accuracy(tmp_path, capsys):
    out = tmp_path / "clf.pt"
    assert mnist_net.command_train_classifier(["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"held-out accuracy: {mnist_net.HELD_OUT_ACCURACY:.4f}" in printed
