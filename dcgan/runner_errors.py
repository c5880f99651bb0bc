"""One line for any error the command line prints: no traceback, no secret.

`one_line(err)`: the error's first line (StoreError, ConfigError and RunsFailed already are
one line) with every storage password redacted; an unexpected exception also names its type
and says how to see the traceback (DCGAN_TRACEBACK=1)."""

from __future__ import annotations

from .config import ConfigError


def one_line(err: BaseException) -> str:
    from .store import redact_text

    text = str(err).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(err, ConfigError) or type(err).__name__ == "RunsFailed":
        return redact_text(text.replace("\n", " "))
    if isinstance(err, OSError) and getattr(err, "filename", None):
        first = f"{err.filename}: {err.strerror or first}"
    return redact_text(
        f"{type(err).__name__}: {first} (unexpected; DCGAN_TRACEBACK=1 shows the traceback)"
    )
