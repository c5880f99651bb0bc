"""Deterministic crash points for the fault-injection suite (tests/faults).

`crash_point("name")` does nothing unless DCGAN_CRASH_AT="name:N" is set, in which case the
process SIGKILLs itself the N-th time it passes that point: a kill exactly during a
checkpoint write, a store write or a report render, reproducibly. Cost when unset: one dict
lookup.
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("DCGAN_CRASH_AT", "")
_POINT, _, _COUNT = _SPEC.partition(":")
_seen = 0


def crash_point(name: str) -> None:
    global _seen
    if name != _POINT:
        return
    _seen += 1
    if _seen >= int(_COUNT or 1):
        os.kill(os.getpid(), signal.SIGKILL)
