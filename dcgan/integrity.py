"""Check a run folder before a worker trains or scores it; quarantine what is damaged.

A run folder (results/runs/<config hash>) is re-used by every ablation that plans the same
config and by every re-run, so one damaged file (a truncated checkpoint, a cut scores line,
garbage in result.json, a crafted pickle) would fail that run on every re-run. Here each file
is read back as what it claims to be before `train` and `score_run` touch it:

- checkpoint.pt and snapshots/G_step_*.pt: their checksum (dcgan.atomic) and a
  `weights_only` load (a pickle needing anything else is refused, never unpickled);
- result.json, config.json: JSON of this run's config hash;
- scores.jsonl: every line a score record; metrics.jsonl: every line a step record.

A damaged file moves to <run>/quarantine/ (kept, never deleted) with a message, and what it
held is rebuilt: training resumes from the last good checkpoint or restarts (a run is
deterministic for its config and thread count), scores are recomputed. A damaged snapshot
cannot be re-made by resuming, so it sends the run back to step 0 (its checkpoint, result and
scores are quarantined with it). File names and layout are `dcgan.rundir.RunDir`'s.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .atomic import IntegrityError, load_verified
from .config import RunConfig
from .rundir import RunDir

log = logging.getLogger("dcgan")


def _json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _lines(path: Path) -> tuple[list[str], list[int]]:
    """(good lines, numbers of bad lines) of a JSON-lines file of dict records."""
    good, bad = [], []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad.append(i)
            continue
        if isinstance(record, dict):
            good.append(line)
        else:
            bad.append(i)
    return good, bad


def repair_run_dir(run_dir: Path | str | RunDir, cfg: RunConfig) -> list[str]:
    """Quarantine the damaged files of a run folder; returns one message per repair."""
    run = RunDir.of(run_dir)
    if not run.exists():
        return []
    identity = cfg.hash()
    messages: list[str] = []

    def bad(path: Path, why: str, then: str) -> None:
        if run.quarantine(path, why) is not None:
            messages.append(f"{path}: {why}; quarantined, {then}")

    config = run.config
    if config.exists():
        try:
            ok = RunConfig.from_dict(_json(config), where=str(config)).hash() == identity
        except Exception:  # noqa: BLE001  (garbage of any kind)
            ok = False
        if not ok:
            bad(config, "not this run's config", "rewritten from the planned config")
            run.write_config(cfg)

    restart = False
    for snapshot in run.snapshots().values():
        try:
            state = load_verified(snapshot)
            if not isinstance(state, dict):
                raise IntegrityError(f"{snapshot}: not a state dict")
        except (IntegrityError, OSError) as err:
            bad(snapshot, str(err).removeprefix(f"{snapshot}: "), "the run re-trains from step 0")
            restart = True

    checkpoint = run.checkpoint
    if checkpoint.exists():
        why = None
        try:
            state = load_verified(checkpoint)
            if not (isinstance(state, dict) and {"G", "D", "step"} <= set(state)):
                why = "not a training checkpoint"
            elif state.get("config_hash") != identity:
                why = f"made for another config ({state.get('config_hash')})"
        except (IntegrityError, OSError) as err:
            why = str(err).removeprefix(f"{checkpoint}: ")
        if why is not None or restart:
            bad(checkpoint, why or "its snapshots are damaged", "the run re-trains from step 0")
            restart = True

    result = run.result
    if result.exists():
        try:
            saved = _json(result)
            ok = (
                isinstance(saved, dict)
                and saved.get("config_hash") == identity
                and saved.get("status") in ("completed", "diverged")
            )
        except Exception:  # noqa: BLE001
            ok = False
        if not ok or restart:
            bad(
                result,
                "not this run's result" if not ok else "its snapshots are damaged",
                "re-trained",
            )

    scores = run.scores
    if scores.exists():
        try:
            _, broken = _lines(scores)
        except OSError:
            broken = [0]
        if broken or restart:
            why = f"unreadable line(s) {broken[:5]}" if broken else "its snapshots are damaged"
            bad(scores, why, "every snapshot is re-scored")

    metrics = run.metrics
    if metrics.exists():
        lines = metrics.read_text(encoding="utf-8", errors="replace").splitlines()
        good, broken = [], []
        for i, line in enumerate(lines, 1):
            try:
                ok = isinstance(json.loads(line).get("step"), int)
            except (json.JSONDecodeError, AttributeError):
                ok = False
            (good if ok else broken).append(line if ok else i)
        if broken and broken != [
            len(lines)
        ]:  # a last line cut by a kill is normal: resume drops it
            run.rewrite_metric_lines(good)
            messages.append(f"{metrics}: dropped unreadable line(s) {broken[:5]}")
            log.warning("%s: dropped unreadable line(s) %s", metrics, broken[:5])
    return messages
