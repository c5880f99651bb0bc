"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half.

Write to a temporary file in the same directory, fsync, then rename over the target.

Torch files written here also carry their own checksum: a `torch.save` file is a ZIP archive,
and the sha256 of the archive is stored in the archive's comment field (which every ZIP reader,
`torch.load` included, ignores). `load_verified` checks it before unpickling anything, so a
flipped bit in a cached feature file or a checkpoint is noticed instead of changing a score;
`quarantine` moves a damaged file aside (never deletes it) so that it is rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from .faults import crash_point

log = logging.getLogger("dcgan")

_EOCD = b"PK\x05\x06"  # ZIP end-of-central-directory record: 22 bytes + a comment
_TAG = b"dcgan-sha256:"


class IntegrityError(ValueError):
    """A file that fails its checksum or cannot be read back as what it claims to be."""


def atomic_write(path: Path | str, write: Callable[[IO[bytes]], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600 files; results are meant to be shared
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        crash_point("atomic_write")  # a kill here leaves only a temp file behind
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


# ---- checksummed torch files ----------------------------------------------------------------
def with_checksum(blob: bytes) -> bytes:
    """A torch.save archive with its sha256 in the ZIP comment (unchanged if not a plain ZIP)."""
    if len(blob) < 22 or blob[-22:-18] != _EOCD or blob[-2:] != b"\x00\x00":
        return blob  # not the layout torch writes today: stored without a checksum
    comment = _TAG + hashlib.sha256(blob).hexdigest().encode()
    return blob[:-2] + struct.pack("<H", len(comment)) + comment


def verify_checksum(blob: bytes) -> bool | None:
    """True: the checksum matches; False: it does not; None: the file carries none."""
    end = blob.rfind(_TAG)
    if end < 22 or blob[end - 22 : end - 18] != _EOCD:
        return None
    comment = blob[end:]
    if struct.unpack("<H", blob[end - 2 : end])[0] != len(comment):
        return False
    original = blob[: end - 2] + b"\x00\x00"
    return hashlib.sha256(original).hexdigest().encode() == comment[len(_TAG) :]


def save_with_checksum(obj: Any, path: Path | str) -> None:
    """torch.save, atomically, with the archive's sha256 stored inside it."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, with_checksum(buffer.getvalue()))


def atomic_torch_save(obj: Any, path: Path | str) -> None:
    save_with_checksum(obj, path)


def load_verified(
    path: Path | str, *, require_checksum: bool = False, map_location: Any = "cpu"
) -> Any:
    """torch.load(weights_only=True) after checking the file's checksum.

    Raises IntegrityError naming the file when the checksum fails, when there is none and
    `require_checksum`, or when the content cannot be loaded (truncated, not a torch file, or a
    pickle that needs more than tensors and plain containers: never loaded with
    weights_only=False).
    """
    path = Path(path)
    blob = path.read_bytes()
    ok = verify_checksum(blob)
    if ok is False:
        raise IntegrityError(f"{path}: checksum mismatch (the file was changed or damaged)")
    if ok is None and require_checksum:
        raise IntegrityError(f"{path}: carries no checksum (written by an older version)")
    try:
        return torch.load(io.BytesIO(blob), map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001  (torch raises many types for damaged files)
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            first = (
                "holds objects other than tensors and plain containers (refused, never unpickled)"
            )
        raise IntegrityError(
            f"{path}: not a readable torch file: {type(err).__name__}: {first}"
        ) from None


def quarantine(path: Path | str, reason: str, into: Path | str | None = None) -> Path | None:
    """Move a damaged file aside (into `into`, default a `quarantine/` folder beside it) and say so.

    Nothing is deleted: the file is kept for inspection under a timestamped name."""
    path = Path(path)
    if not path.exists():
        return None
    folder = Path(into) if into is not None else path.parent / "quarantine"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    dest = folder / f"{path.name}.{stamp}.{os.getpid()}"
    os.replace(path, dest)
    log.warning("quarantined %s (%s); moved to %s and rebuilt", path, reason, dest)
    return dest
