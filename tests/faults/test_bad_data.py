"""A corpus of bad input: each file is used correctly or skipped and counted, never a crash."""

import io
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.config import RunConfig
from dcgan.data import load_images
from dcgan.train import train


def _png_bytes(mode="RGB", size=(40, 40), color=(200, 30, 30)):
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, "PNG")
    return buf.getvalue()


def _jpeg_bytes(mode="RGB", size=(48, 40), color=(10, 120, 240)):
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, "JPEG")
    return buf.getvalue()


def _bomb_png(side=30_000):
    """A valid PNG header claiming side x side pixels: tiny file, huge canvas."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = zlib.compress(b"\x00" * (side // 8 + 1), 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", raw)
        + chunk(b"IEND", b"")
    )


def build_corpus(root):
    """name -> (expected: 'used' | 'skipped'). Written into root."""
    root.mkdir(parents=True, exist_ok=True)
    expect = {}

    def put(name, data, outcome):
        (root / name).write_bytes(data)
        expect[name] = outcome

    put("good.png", _png_bytes(), "used")
    put("zero_byte.jpg", b"", "skipped")
    jpeg = _jpeg_bytes()
    put("truncated.jpg", jpeg[: len(jpeg) // 3], "skipped")
    png = _png_bytes(size=(64, 64))
    put("truncated.png", png[: len(png) // 2], "skipped")
    put("png_named.jpg", _png_bytes(), "used")  # wrong extension: decoded by content
    put("text_named.jpg", b"hello, I am not an image\n" * 10, "skipped")
    arr16 = np.arange(50 * 50, dtype=np.uint16).reshape(50, 50) * 20
    buf = io.BytesIO()
    Image.fromarray(arr16).save(buf, "PNG")
    put("sixteen_bit.png", buf.getvalue(), "used")
    put("cmyk.jpg", _jpeg_bytes("CMYK", color=(0, 100, 200, 0)), "used")
    pal = Image.new("P", (40, 40))
    pal.putpalette([i % 256 for i in range(768)])
    buf = io.BytesIO()
    pal.save(buf, "PNG", transparency=0)
    put("palette_transparent.png", buf.getvalue(), "used")
    put("rgba.png", _png_bytes("RGBA", color=(1, 2, 3, 0)), "used")
    put("one_pixel.png", _png_bytes(size=(1, 1)), "used")
    put("huge_10000.png", _png_bytes("1", size=(10_000, 10_000), color=1), "skipped")  # 100 MP
    put("bomb.png", _bomb_png(), "skipped")
    put("garbage.webp", os.urandom(2048), "skipped")
    put("html.bmp", b"<html><script>alert(1)</script></html>", "skipped")
    put("gray.jpg", _jpeg_bytes("L", color=90), "used")
    put(
        "name_\udcff_latin1.png".encode("utf-8", "surrogateescape").decode(
            "utf-8", "surrogateescape"
        ),
        _png_bytes(),
        "used",
    )
    # unreadable permissions (root can still read: then it is used)
    locked = root / "locked.png"
    locked.write_bytes(_png_bytes())
    os.chmod(locked, 0)
    expect["locked.png"] = "used" if os.geteuid() == 0 else "skipped"
    # a symlink loop and a dangling link
    (root / "loop").symlink_to(root, target_is_directory=True)
    os.symlink(root / "missing.png", root / "dangling.png")
    expect["dangling.png"] = "skipped"
    # a sub-folder holding only non-images
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("x")
    (root / "notes" / "data.csv").write_text("a,b")
    return expect


def test_bad_input_corpus_is_used_or_skipped_and_counted(tmp_path, tally):
    root = tmp_path / "corpus"
    expect = build_corpus(root)
    assert len(expect) >= 15
    s = load_images(f"folder:{root}", 32, 3, cache_dir=tmp_path / "cache")
    skipped = {os.path.basename(p) for p, _ in s.skipped}
    used = len(expect) - len(skipped)
    for name, outcome in expect.items():
        assert (name in skipped) == (outcome == "skipped"), (name, outcome, dict(s.skipped))
    assert len(s) == used
    assert s.images.shape[1:] == (3, 32, 32) and s.images.dtype == torch.uint8
    tally("bad input files (corpus kinds)", len(expect), len(expect))


def test_training_on_a_bad_corpus_completes(tmp_path, tally):
    root = tmp_path / "corpus"
    build_corpus(root)
    cfg = RunConfig(
        data=f"folder:{root}",
        channels=3,
        g_width=8,
        d_width=8,
        batch_size=4,
        steps=6,
        log_every=3,
        grid_every=3,
        snapshot_every=3,
        checkpoint_every=3,
    )
    result = train(
        cfg, tmp_path / "run", images=load_images(cfg.data, 32, 3, cache_dir=tmp_path / "c")
    )
    assert result["status"] == "completed"
    tally("training runs on a bad corpus", 1, 1)


def test_folder_of_only_non_images_is_a_clear_error(tmp_path, tally):
    from dcgan.config import ConfigError

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("x")
    with pytest.raises(ConfigError, match="holds no image files"):
        load_images(f"folder:{tmp_path / 'd'}", 32, 3)
    tally("bad input files (corpus kinds)", 1, 1)
