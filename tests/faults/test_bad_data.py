"""Bad image folders: each file is used or skipped with a reason (never a hang, a crash or a
silent drop), the user is told what was skipped, and a folder's content is part of every run's
identity."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan import data as data_module
from dcgan.config import ConfigError, RunConfig
from dcgan.data import load_images
from dcgan.train import train
from tests.faults.conftest import run_python
from tests.faults.helpers import fake_execute, image_folder, tiny_spec

CAP = 300_000  # DCGAN_MAX_IMAGE_BYTES for the corpus: oversized.png is above it


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


def _save(image, fmt, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


LATIN1 = "name_\udcff_latin1.png".encode("utf-8", "surrogateescape").decode(
    "utf-8", "surrogateescape"
)
# name -> expected outcome; every entry is one case of the table
EXPECT = {
    "good.png": "used",
    "zero_byte.jpg": "skipped",
    "truncated.jpg": "skipped",
    "truncated.png": "skipped",
    "png_named.jpg": "used",  # wrong extension: decoded by content
    "text_named.jpg": "skipped",
    "sixteen_bit.png": "used",
    "cmyk.jpg": "used",
    "palette_transparent.png": "used",
    "rgba.png": "used",
    "one_pixel.png": "used",
    "huge_10000.png": "skipped",  # 100 MP: over the pixel limit
    "bomb.png": "skipped",
    "garbage.webp": "skipped",
    "html.bmp": "skipped",
    "gray.jpg": "used",
    LATIN1: "used",
    "locked.png": "used" if os.geteuid() == 0 else "skipped",  # root reads it anyway
    "dangling.png": "skipped",
    "fifo.png": "skipped",  # a named pipe: opening it would block for ever
    "devzero.jpg": "skipped",  # a link to /dev/zero: reading it would never end
    "devnull.png": "skipped",  # a link to a character device
    "socket.png": "skipped",
    "oversized.png": "skipped",  # over DCGAN_MAX_IMAGE_BYTES
    "folder.png": "skipped-silently",  # a directory named like an image: not a file at all
    "link_to_good.png": "used",  # a symlink to a regular file is fine
    "still.gif": "used",
    "animated.gif": "used",  # first frame
    "plain.tif": "used",
    "sixteen_bit.tiff": "used",
    "multipage.tiff": "used",  # first page
    "empty.gif": "skipped",
}


def build_corpus(root):
    root.mkdir(parents=True, exist_ok=True)

    def put(name, data):
        (root / name).write_bytes(data)

    put("good.png", _png_bytes())
    put("zero_byte.jpg", b"")
    jpeg = _jpeg_bytes()
    put("truncated.jpg", jpeg[: len(jpeg) // 3])
    png = _png_bytes(size=(64, 64))
    put("truncated.png", png[: len(png) // 2])
    put("png_named.jpg", _png_bytes())
    put("text_named.jpg", b"hello, I am not an image\n" * 10)
    arr16 = np.arange(50 * 50, dtype=np.uint16).reshape(50, 50) * 20
    put("sixteen_bit.png", _save(Image.fromarray(arr16), "PNG"))
    put("cmyk.jpg", _jpeg_bytes("CMYK", color=(0, 100, 200, 0)))
    pal = Image.new("P", (40, 40))
    pal.putpalette([i % 256 for i in range(768)])
    put("palette_transparent.png", _save(pal, "PNG", transparency=0))
    put("rgba.png", _png_bytes("RGBA", color=(1, 2, 3, 0)))
    put("one_pixel.png", _png_bytes(size=(1, 1)))
    put("huge_10000.png", _png_bytes("1", size=(10_000, 10_000), color=1))
    put("bomb.png", _bomb_png())
    put("garbage.webp", np.random.default_rng(0).bytes(2048))
    put("html.bmp", b"<html><script>alert(1)</script></html>")
    put("gray.jpg", _jpeg_bytes("L", color=90))
    put(LATIN1, _png_bytes())
    put("locked.png", _png_bytes())
    os.chmod(root / "locked.png", 0)
    (root / "loop").symlink_to(root, target_is_directory=True)
    os.symlink(root / "missing.png", root / "dangling.png")
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("x")
    (root / "notes" / "data.csv").write_text("a,b")
    os.mkfifo(root / "fifo.png")
    os.symlink("/dev/zero", root / "devzero.jpg")
    os.symlink("/dev/null", root / "devnull.png")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "socket.png"))
    sock.close()
    put("oversized.png", _png_bytes(size=(16, 16)) + b"\0" * (CAP + 10))
    (root / "folder.png").mkdir()
    os.symlink(root / "good.png", root / "link_to_good.png")
    put("still.gif", _save(Image.new("RGB", (30, 30), (5, 200, 9)), "GIF"))
    frames = [Image.new("P", (20, 20), i * 40) for i in range(3)]
    put("animated.gif", _save(frames[0], "GIF", save_all=True, append_images=frames[1:]))
    put("plain.tif", _save(Image.new("RGB", (30, 30), (90, 9, 9)), "TIFF"))
    put("sixteen_bit.tiff", _save(Image.fromarray(arr16), "TIFF"))
    pages = [Image.new("L", (25, 25), 40 * i) for i in range(2)]
    put("multipage.tiff", _save(pages[0], "TIFF", save_all=True, append_images=pages[1:]))
    put("empty.gif", b"")


LOAD = """
import json, os
from dcgan.data import load_images
s = load_images("folder:{root}", 32, 3, cache_dir="{cache}")
print("RESULT" + json.dumps({{"n": len(s), "shape": list(s.images.shape[1:]), "n_files": s.n_files,
      "skipped": {{os.path.basename(p): r for p, r in s.skipped}}}}))
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The corpus loaded in a separate process with a deadline and a memory cap: a loader that
    opens the FIFO blocks, one that reads /dev/zero fills memory; either fails the cases."""
    base = tmp_path_factory.mktemp("corpus")
    root = base / "corpus"
    build_corpus(root)
    code = LOAD.format(root=root, cache=base / "cache")
    rc, out = run_python(code, timeout=120, env={"DCGAN_MAX_IMAGE_BYTES": str(CAP)}, memory_gb=6)
    line = next((x for x in out.splitlines() if x.startswith("RESULT")), None)
    return root, rc, out, json.loads(line[6:]) if line else None


@pytest.mark.fault("data")
@pytest.mark.parametrize(
    "name", list(EXPECT), ids=[n.encode("ascii", "replace").decode() for n in EXPECT]
)
def test_each_bad_file_is_used_or_skipped_with_a_reason(corpus, name):
    root, rc, out, result = corpus
    assert rc == 0 and result is not None, f"loader hung or crashed (rc {rc}): {out[-1500:]}"
    assert result["shape"] == [3, 32, 32]
    skipped = result["skipped"]
    outcome = EXPECT[name]
    if outcome == "used":
        assert name not in skipped, skipped.get(name)
    elif outcome == "skipped":
        assert name in skipped and skipped[name], f"{name} neither used nor skipped: {skipped}"
    else:
        assert name not in skipped  # a directory is not a file: not counted at all
    used = sum(v == "used" for v in EXPECT.values())
    assert result["n"] == used


@pytest.mark.fault("data", n=2)
def test_a_fifo_and_a_link_to_dev_zero_are_refused_not_read(tmp_path):
    """Issue 17, item 10: a FIFO hung the loader for ever; /dev/zero was read until memory ran
    out. Here they are refused with a reason, in a process with a deadline and a 3 GB cap."""
    root = image_folder(tmp_path / "imgs", n=3)
    os.mkfifo(root / "pipe.png")
    os.symlink("/dev/zero", root / "zero.jpg")
    code = LOAD.format(root=root, cache=tmp_path / "cache")
    rc, out = run_python(code, timeout=60, memory_gb=3)
    assert rc == 0, f"hung or died (rc {rc}): {out[-1500:]}"
    result = json.loads(next(x for x in out.splitlines() if x.startswith("RESULT"))[6:])
    assert result["n"] == 3
    assert "FIFO" in result["skipped"]["pipe.png"]
    assert "character device" in result["skipped"]["zero.jpg"]


@pytest.mark.fault("data")
def test_a_file_swapped_for_a_fifo_after_the_scan_is_refused(tmp_path):
    os.mkfifo(tmp_path / "late.png")
    with pytest.raises(OSError, match="not a regular file"):
        data_module._read_regular(tmp_path / "late.png", 1 << 20)  # returns at once, no block


@pytest.mark.fault("data", n=2)
def test_skipped_and_ignored_files_are_reported_to_the_user(tmp_path, caplog):
    root = image_folder(tmp_path / "imgs", n=4)
    (root / "broken.png").write_bytes(b"not a png")
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.txt").write_text("x")
    (root / "photo.heic").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="dcgan"):
        s = load_images(f"folder:{root}", 32, 1, cache_dir=tmp_path / "cache")
    assert len(s) == 4 and len(s.skipped) == 2
    text = caplog.text
    assert "2 of 6 image files skipped" in text and "broken.png" in text and "empty file" in text
    assert ".heic (1)" in text and ".txt (1)" in text
    listing = next((tmp_path / "cache").glob("images-*.skipped.txt")).read_text()
    assert "broken.png" in listing and "empty.jpg" in listing


@pytest.mark.fault("data", n=3)
def test_missing_empty_and_not_a_folder_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_images(f"folder:{tmp_path / 'nope'}", 32, 3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no image files"):
        load_images(f"folder:{tmp_path / 'empty'}", 32, 3)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is not a directory"):
        load_images(f"folder:{tmp_path / 'file'}", 32, 3)


@pytest.mark.fault("data")
def test_folder_of_only_unusable_files_is_a_clear_error(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_text("nope")
    os.mkfifo(tmp_path / "bad" / "b.png")
    with pytest.raises(ConfigError, match="none of 2 files decoded"):
        load_images(f"folder:{tmp_path / 'bad'}", 32, 3, cache_dir=tmp_path / "c")


@pytest.mark.fault("data")
def test_training_on_a_bad_corpus_completes(tmp_path, monkeypatch):
    monkeypatch.setenv("DCGAN_MAX_IMAGE_BYTES", str(CAP))
    root = tmp_path / "corpus"
    build_corpus(root)
    (root / "fifo.png").unlink()  # in-process here: the FIFO case runs in its own process above
    cfg = RunConfig(
        data=f"folder:{root}", channels=3, g_width=8, d_width=8, batch_size=4, steps=6,
        log_every=3, grid_every=3, snapshot_every=3, checkpoint_every=3,
    )  # fmt: skip
    result = train(
        cfg, tmp_path / "run", images=load_images(cfg.data, 32, 3, cache_dir=tmp_path / "c")
    )
    assert result["status"] == "completed"


# ---- a folder's content is part of a run's identity (issue 17, item 1) --------------------------
def _old_hash(cfg: RunConfig) -> str:
    """RunConfig.hash as it was before data content joined it (for the built-in data sets)."""
    import hashlib

    ignored = {"device", "log_every", "grid_every", "snapshot_every", "checkpoint_every"}
    payload = {k: v for k, v in cfg.to_dict().items() if k not in ignored}
    if payload.get("threads") == 0:
        del payload["threads"]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@pytest.mark.fault("data", n=3)
def test_replacing_a_folders_images_changes_the_run_identity(tmp_path):
    root = image_folder(tmp_path / "imgs", n=6, seed=0)
    cfg = RunConfig(data=f"folder:{root}")
    before = cfg.hash()
    image_folder(root, n=6, seed=1)  # same names, new pixels
    assert cfg.hash() != before
    image_folder(root, n=6, seed=0)  # the old content again: the old identity again
    assert cfg.hash() == before
    for data in ("mnist", "stacked_mnist"):  # built-in sets: identities unchanged
        c = RunConfig(data=data, channels=3 if data == "stacked_mnist" else 1)
        assert c.hash() == _old_hash(c)


@pytest.mark.fault("data")
def test_replacing_a_folders_images_requeues_every_run(tmp_path, monkeypatch):
    """Issue 17, item 1: replace every image of a folder data set and re-run: today '0 newly
    queued' and the old numbers were reported as the new data's."""
    from dcgan import runner
    from dcgan.runner import Paths, run_ablation

    monkeypatch.setattr(runner, "execute_run", fake_execute())
    root = image_folder(tmp_path / "imgs", n=40, seed=0)
    spec = tiny_spec(tmp_path / "specs", data=f"folder:{root}")
    paths = Paths(tmp_path / "results", tmp_path / "reports")

    def ablate():
        lines = []
        run_ablation(str(spec), "tiny", paths=paths, report=False, log=lines.append)
        return next(x for x in lines if "newly queued" in x)

    assert "2 newly queued" in ablate()
    assert "0 newly queued" in ablate()
    image_folder(root, n=40, seed=1)
    assert "2 newly queued" in ablate()


@pytest.mark.fault("data")
def test_data_changed_after_queueing_fails_the_run_with_a_reason(tmp_path):
    from dcgan import preflight

    root = image_folder(tmp_path / "imgs", n=4, seed=0)
    cfg = RunConfig(data=f"folder:{root}")
    planned = cfg.hash()
    image_folder(root, n=4, seed=3)
    with pytest.raises(ConfigError, match="changed after this run was queued"):
        preflight.check_identity(planned, cfg)


@pytest.mark.fault("data")
def test_image_cache_is_keyed_by_content_not_names(tmp_path):
    root = image_folder(tmp_path / "imgs", n=5, seed=0)
    a = load_images(f"folder:{root}", 32, 1, cache_dir=tmp_path / "c")
    image_folder(root, n=5, seed=9)
    b = load_images(f"folder:{root}", 32, 1, cache_dir=tmp_path / "c")
    assert a.key != b.key and not torch.equal(a.images, b.images)
