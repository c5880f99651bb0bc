"""Deterministic crash points for the fault-injection suite (tests/faults).

`crash_point("name")` does nothing unless DCGAN_CRASH_AT="name:N" is set, in which case the
process SIGKILLs itself the N-th time it passes that point: a kill exactly during a
checkpoint write, a store write or a report render, reproducibly. Cost when unset: one string
comparison.

Points: `train_step`, `atomic_write` (after the temp file is written, before the rename),
`score`, `store_tell`, `report`, and `store_write` (before every write to the result store:
each claim, attribute, state change, heartbeat and enqueue; see dcgan/store.py).

`arm("name:N")` re-arms the point in a running process (a forked test child).
"""

from __future__ import annotations

import os
import signal

_POINT = ""
_COUNT = 1
_seen = 0


def arm(spec: str) -> None:
    """Set the crash point from a 'name:N' string ('' disarms) and reset its counter."""
    global _POINT, _COUNT, _seen
    point, _, count = spec.partition(":")
    _POINT, _COUNT, _seen = point, int(count or 1), 0


def passes(name: str) -> int:
    """How many times this process passed the armed point (for tests counting store writes)."""
    return _seen if name == _POINT else 0


def crash_point(name: str) -> None:
    global _seen
    if name != _POINT:
        return
    _seen += 1
    if _seen >= _COUNT > 0:
        os.kill(os.getpid(), signal.SIGKILL)


arm(os.environ.get("DCGAN_CRASH_AT", ""))
