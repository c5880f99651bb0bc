"""A run directory: the one place that knows its layout.

    config.json                   the RunConfig
    metrics.jsonl                 one row per step: losses, D(x), D(G(z)), lr, grad norms
    grids/step_XXXXXXX.png        samples from fixed noise (`dcgan.sampling.sample`)
    snapshots/G_step_XXXXXXX.pt   generator weights for FID-over-training
    checkpoint.pt                 everything needed to resume bit-identically
    result.json                   written last: completed or diverged, timings, final losses,
                                  and the provenance of the run (`dcgan.environment`)
    scores.jsonl                  one line per score record (`dcgan.metrics.fidelity`)
    curves.json                   per-step logs downsampled for the result store
    quarantine/                   damaged files moved aside, never deleted (`dcgan.integrity`)
    .lock                         held while a worker trains or scores the run

Every write goes through `dcgan.atomic` (temp file, fsync, rename): a reader or a resumed run
sees the old file or the new one, never half. The one exception is `append_metrics`:
metrics.jsonl is append-only while training and cut back to the checkpoint on resume
(`truncate_metrics`, atomic), and readers skip a last line cut short by a kill.

Snapshot and grid file names carry their step (7 digits); `snapshot_step` / `grid_step` parse a
name back, for the files here and for copies of them elsewhere (result-store artifacts keep the
file name).
"""

from __future__ import annotations

import fcntl
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .atomic import (
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    quarantine,
)

CONFIG = "config.json"
RESULT = "result.json"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
SCORES = "scores.jsonl"
CURVES = "curves.json"
SNAPSHOTS = "snapshots"
GRIDS = "grids"
QUARANTINE = "quarantine"
LOCK = ".lock"

_SNAPSHOT = re.compile(r"^G_step_(\d+)\.pt$")
_GRID = re.compile(r"^step_(\d+)\.png$")


def snapshot_name(step: int) -> str:
    return f"G_step_{step:07d}.pt"


def grid_name(step: int) -> str:
    return f"step_{step:07d}.png"


def snapshot_step(name: str) -> int | None:
    """'G_step_0000250.pt' -> 250; None for any other name."""
    match = _SNAPSHOT.match(name)
    return int(match.group(1)) if match else None


def grid_step(name: str) -> int | None:
    """'step_0000250.png' -> 250; None for any other name."""
    match = _GRID.match(name)
    return int(match.group(1)) if match else None


def _jsonl(text: str) -> list[dict]:
    """Dict rows of a JSON-lines text; a line that does not parse (cut by a kill) is skipped."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


class RunDir:
    """The files of one run folder. Cheap to build; touches the disk only when asked."""

    def __init__(self, path: Path | str | RunDir):
        self.path = path.path if isinstance(path, RunDir) else Path(path)

    @classmethod
    def of(cls, where: Path | str | RunDir) -> RunDir:
        return where if isinstance(where, RunDir) else cls(where)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    # ---- paths ------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def result(self) -> Path:
        return self.path / RESULT

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def scores(self) -> Path:
        return self.path / SCORES

    @property
    def curves(self) -> Path:
        return self.path / CURVES

    @property
    def snapshots_dir(self) -> Path:
        return self.path / SNAPSHOTS

    @property
    def grids_dir(self) -> Path:
        return self.path / GRIDS

    @property
    def quarantine_dir(self) -> Path:
        return self.path / QUARANTINE

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK

    def snapshot(self, step: int) -> Path:
        return self.snapshots_dir / snapshot_name(step)

    def grid(self, step: int) -> Path:
        return self.grids_dir / grid_name(step)

    def exists(self) -> bool:
        return self.path.is_dir()

    # ---- listings ---------------------------------------------------------------------------
    def snapshots(self) -> dict[int, Path]:
        """{step: path} of the generator snapshots, in step order."""
        return dict(sorted(_stepped(self.snapshots_dir, snapshot_step)))

    def grids(self) -> list[tuple[int, Path]]:
        """[(step, path)] of the sample grids, in step order."""
        return sorted(_stepped(self.grids_dir, grid_step))

    def latest_snapshot(self) -> tuple[int, Path] | None:
        snapshots = self.snapshots()
        return max(snapshots.items()) if snapshots else None

    def latest_grid(self) -> tuple[int, Path] | None:
        grids = self.grids()
        return grids[-1] if grids else None

    # ---- reads ------------------------------------------------------------------------------
    def read_config_dict(self) -> dict:
        return json.loads(self.config.read_text())

    def read_config(self):
        from .config import RunConfig

        return RunConfig.from_dict(self.read_config_dict(), where=str(self.config))

    def read_result(self) -> dict | None:
        """result.json, or None when the run has not finished (or it is not a JSON object)."""
        try:
            result = json.loads(self.result.read_text())
        except (OSError, ValueError):
            return None
        return result if isinstance(result, dict) else None

    def read_metrics(self) -> list[dict]:
        """Rows of metrics.jsonl; a line cut short by a kill is ignored."""
        return _jsonl(self.metrics.read_text()) if self.metrics.exists() else []

    def read_score_lines(self) -> list[dict]:
        """The raw lines of scores.jsonl as written (`fidelity.read_scores` upgrades them)."""
        if not self.scores.exists():
            return []
        return [json.loads(line) for line in self.scores.read_text().splitlines() if line.strip()]

    def read_curves(self) -> dict | None:
        try:
            return json.loads(self.curves.read_text())
        except (OSError, ValueError):
            return None

    def resume_step(self) -> int:
        """The step `train` would start from here: the result's steps_done, else the
        checkpoint's step, else 0 (also 0 when those files cannot be read: train says why)."""
        import torch

        try:
            if self.result.exists():
                return int(json.loads(self.result.read_text())["steps_done"])
            if self.checkpoint.exists():
                state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
                return int(state["step"])
        except (OSError, ValueError, KeyError, TypeError, RuntimeError):
            pass
        return 0

    def last_logged_step(self) -> int:
        """One past the last step in metrics.jsonl (0 if none), reading only the file's tail."""
        try:
            with open(self.metrics, "rb") as fh:
                fh.seek(0, 2)
                fh.seek(max(0, fh.tell() - 4096))
                lines = fh.read().splitlines()
        except OSError:
            return 0
        for line in reversed(lines):
            try:
                return int(json.loads(line)["step"]) + 1
            except (ValueError, KeyError, TypeError):
                continue
        return 0

    def provenance(self) -> dict | None:
        """Where the run was trained, as `train` recorded it in result.json (None: not recorded,
        e.g. a run finished before runs recorded it, or one not finished)."""
        result = self.read_result()
        return (result or {}).get("provenance")

    # ---- writes (atomic) --------------------------------------------------------------------
    def write_config(self, cfg) -> None:
        atomic_write_json(self.config, cfg.to_dict())

    def write_result(self, result: dict) -> None:
        atomic_write_json(self.result, result)

    def write_checkpoint(self, state: dict) -> None:
        atomic_torch_save(state, self.checkpoint)

    def write_snapshot(self, step: int, state: dict) -> Path:
        path = self.snapshot(step)
        atomic_torch_save(state, path)
        return path

    def write_grid(self, step: int, png: bytes) -> Path:
        path = self.grid(step)
        atomic_write_bytes(path, png)
        return path

    def write_scores(self, records: Iterable[dict]) -> None:
        """Rewrite scores.jsonl with these lines (each a JSON object, keys sorted)."""
        atomic_write_text(
            self.scores, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        )

    def write_curves(self, curves: dict[str, Any]) -> Path:
        """curves.json, atomically (a reader or an artifact upload never sees half a file)."""
        atomic_write_text(self.curves, json.dumps(curves))
        return self.curves

    def rewrite_metrics(self, rows: Iterable[dict]) -> None:
        atomic_write_text(self.metrics, "".join(json.dumps(r) + "\n" for r in rows))

    def rewrite_metric_lines(self, lines: Iterable[str]) -> None:
        """Rewrite metrics.jsonl with these lines as they are (a repair keeps good lines)."""
        atomic_write_text(self.metrics, "".join(line + "\n" for line in lines))

    def truncate_metrics(self, before_step: int) -> None:
        """Keep the rows of steps before `before_step` (a resumed run re-logs the rest)."""
        self.rewrite_metrics(r for r in self.read_metrics() if r["step"] < before_step)

    def append_metrics(self, rows: Iterable[dict]) -> None:
        """Append step rows: the one non-atomic write (see the module docstring)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.metrics, "a") as fh:
            fh.write("".join(json.dumps(r) + "\n" for r in rows))

    def quarantine(self, path: Path, reason: str) -> Path | None:
        """Move a damaged file of this run into quarantine/ (kept, never deleted)."""
        return quarantine(path, reason, self.quarantine_dir)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive: two ablations planning the same config never train it at the same time."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.lock_file, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _stepped(folder: Path, parse) -> Iterator[tuple[int, Path]]:
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        step = parse(path.name)
        if step is not None and path.is_file():
            yield step, path
