import os

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.config import ConfigError
from dcgan.data import MAX_IMAGE_PIXELS, held_out_split, load_images, stacked_mnist


def test_mnist_is_embedded_and_padded_to_32():
    s = load_images("mnist", 32, 1)
    assert s.images.shape == (5000, 1, 32, 32) and s.images.dtype == torch.uint8
    assert s.images[:, :, :2].max() == 0  # the 2-pixel pad
    assert sorted(set(s.labels.tolist())) == list(range(10))
    assert load_images("mnist", 64, 3).images.shape == (5000, 3, 64, 64)


def test_stacked_mnist_is_deterministic_and_has_1000_modes():
    a, b = stacked_mnist(32, n=26_000, seed=0), stacked_mnist(32, n=26_000, seed=0)
    assert torch.equal(a.images, b.images) and a.key == b.key
    assert a.images.shape == (26_000, 3, 32, 32)
    assert len(set(a.labels.tolist())) == 1000
    assert stacked_mnist(32, n=100, seed=1).key != stacked_mnist(32, n=100, seed=0).key


def test_held_out_split_is_fixed_and_disjoint():
    ref, held = held_out_split(100, 20)
    ref2, held2 = held_out_split(100, 20)
    assert torch.equal(held, held2) and len(held) == 20 and len(ref) == 80
    assert not set(ref.tolist()) & set(held.tolist())


def _write(path, mode, size, fmt, **kw):
    img = Image.new(
        mode,
        size,
        color=kw.pop(
            "color", 128 if mode in ("L", "P", "I;16") else (10, 200, 30, 128)[: len(mode)]
        ),
    )
    img.save(path, fmt, **kw)


@pytest.fixture
def image_tree(tmp_path):
    root = tmp_path / "imgs"
    (root / "class_a").mkdir(parents=True)
    (root / "class_b").mkdir()
    _write(root / "class_a" / "rgb.jpg", "RGB", (80, 60), "JPEG")
    _write(root / "class_a" / "gray.png", "L", (40, 40), "PNG")
    _write(root / "class_a" / "rgba.png", "RGBA", (50, 70), "PNG")
    _write(root / "class_b" / "cmyk.jpg", "CMYK", (64, 64), "JPEG")
    pal = Image.new("P", (30, 30))
    pal.putpalette([i % 256 for i in range(768)])
    pal.info["transparency"] = 0
    pal.save(root / "class_b" / "palette.png", transparency=0)
    Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).save(
        root / "class_b" / "deep16.png"
    )
    _write(root / "class_b" / "img.webp", "RGB", (33, 33), "WEBP")
    _write(root / "class_b" / "img.bmp", "RGB", (33, 65), "BMP")
    # bad ones
    (root / "class_b" / "empty.jpg").write_bytes(b"")
    (root / "class_b" / "text.jpg").write_text("not an image")
    good = (root / "class_a" / "rgb.jpg").read_bytes()
    (root / "class_b" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "class_b" / "notes.txt").write_text("ignored: not an image extension")
    return root


def test_folder_decodes_converts_and_skips_bad_files(image_tree, tmp_path):
    s = load_images(f"folder:{image_tree}", 32, 3, cache_dir=tmp_path / "cache")
    assert s.images.shape == (8, 3, 32, 32) and s.images.dtype == torch.uint8
    reasons = dict(s.skipped)
    assert len(s.skipped) == 3 and s.n_files == 11
    assert "empty" in reasons[str(image_tree / "class_b" / "empty.jpg")]
    assert str(image_tree / "class_b" / "truncated.jpg") in reasons
    # 16-bit PNG is rescaled, not clipped to white
    gray = load_images(f"folder:{image_tree}", 32, 1, cache_dir=tmp_path / "cache2")
    assert gray.images.shape[1] == 1 and gray.images.float().std() > 0


def test_folder_cache_is_keyed_by_content_and_preprocessing(image_tree, tmp_path):
    cache = tmp_path / "cache"
    a = load_images(f"folder:{image_tree}", 32, 3, cache_dir=cache)
    assert len(list(cache.glob("images-*.pt"))) == 1
    b = load_images(f"folder:{image_tree}", 32, 3, cache_dir=cache)
    assert a.key == b.key and torch.equal(a.images, b.images)
    assert load_images(f"folder:{image_tree}", 64, 3, cache_dir=cache).key != a.key
    _write(image_tree / "class_a" / "rgb.jpg", "RGB", (80, 60), "JPEG", color=(1, 2, 3))
    assert load_images(f"folder:{image_tree}", 32, 3, cache_dir=cache).key != a.key


def test_missing_empty_and_all_bad_folders_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_images(f"folder:{tmp_path / 'nope'}", 32, 3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no image files"):
        load_images(f"folder:{tmp_path / 'empty'}", 32, 3)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_text("nope")
    with pytest.raises(ConfigError, match="none of 1 files decoded"):
        load_images(f"folder:{tmp_path / 'bad'}", 32, 3, cache_dir=tmp_path / "c")


def test_decompression_bomb_is_refused_not_decoded(tmp_path):
    root = tmp_path / "bomb"
    root.mkdir()
    side = int(MAX_IMAGE_PIXELS**0.5) + 100
    Image.new("1", (side, side)).save(root / "bomb.png")  # tiny file, huge canvas
    _write(root / "ok.png", "RGB", (40, 40), "PNG")
    s = load_images(f"folder:{root}", 32, 3, cache_dir=tmp_path / "c")
    assert len(s) == 1
    assert "refused" in dict(s.skipped)[str(root / "bomb.png")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_file_is_skipped(tmp_path):
    root = tmp_path / "perm"
    root.mkdir()
    _write(root / "ok.png", "RGB", (40, 40), "PNG")
    _write(root / "locked.png", "RGB", (40, 40), "PNG")
    os.chmod(root / "locked.png", 0)
    s = load_images(f"folder:{root}", 32, 3, cache_dir=tmp_path / "c")
    assert len(s) == 1 and "unreadable" in dict(s.skipped)[str(root / "locked.png")]
