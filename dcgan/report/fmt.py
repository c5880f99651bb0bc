"""Numbers as the report prints them: one place decides units, decimals and missing values.

KID is printed ×10³ so its values read like ordinary numbers (0.0042 -> 4.20).
"""

from __future__ import annotations

import math
import numbers

MISSING = "—"
METRIC_LABEL = {"fid": "FID", "kid": "KID×10³"}
_SCALE = {"fid": 1.0, "kid": 1e3}
_DECIMALS = {"fid": 1, "kid": 2}


def is_number(x) -> bool:
    return isinstance(x, numbers.Real) and math.isfinite(x)


def metric(name: str, x: float, signed: bool = False) -> str:
    """A FID or KID value (or difference) in display units."""
    if not is_number(x):
        return MISSING
    sign = "+" if signed else ""
    return f"{x * _SCALE[name]:{sign}.{_DECIMALS[name]}f}"


def metric_ci(name: str, lo: float, hi: float) -> str:
    if not (is_number(lo) and is_number(hi)):
        return MISSING
    return f"[{metric(name, lo)}, {metric(name, hi)}]"


def p_value(p: float) -> str:
    """Three significant digits below 0.1, so 0.0496 never prints as a misleading 0.05."""
    if not is_number(p):
        return MISSING
    if p < 0.001:
        return "<0.001"
    return f"{p:.3g}" if p < 0.1 else f"{p:.2f}"


def p_clause(p: float) -> str:
    text = p_value(p)
    return f"p{text}" if text.startswith("<") else f"p={text}"


def general(x: float) -> str:
    """Losses, modes, KL: three significant digits, whatever their scale."""
    return f"{x:.3g}" if is_number(x) else MISSING


def duration(seconds: float) -> str:
    if not is_number(seconds):
        return MISSING
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def rate(x: float) -> str:
    return f"{x:,.0f}" if is_number(x) else MISSING


def effect(d_z: float) -> str:
    if isinstance(d_z, numbers.Real) and math.isinf(d_z):
        return "+∞" if d_z > 0 else "-∞"
    return f"{d_z:.1f}" if is_number(d_z) else MISSING


def seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def ratio(x: float) -> str:
    """A ratio to the baseline: '0.29×' (three significant digits, at least two decimals)."""
    if not is_number(x):
        return MISSING
    return f"{x:.2f}×" if x < 10 else f"{x:.3g}×"


def ratio_ci(lo: float, hi: float) -> str:
    if not (is_number(lo) and is_number(hi)):
        return MISSING
    return f"[{ratio(lo)[:-1]}, {ratio(hi)[:-1]}]"


def margin(m: float) -> str:
    """An equivalence margin on the ratio scale: '±10%'."""
    return f"±{m:.0%}" if is_number(m) else MISSING


def percent(x: float) -> str:
    return f"{x:.0%}" if is_number(x) else MISSING


def percent_ci(lo: float, hi: float) -> str:
    if not (is_number(lo) and is_number(hi)):
        return MISSING
    return f"[{lo:.0%}, {hi:.0%}]"


def share(fraction: float, n: int) -> str:
    """Probability of improvement as seeds: '4.5 of 5' (ties count half)."""
    if not is_number(fraction):
        return MISSING
    k = fraction * n
    return f"{k:g} of {n}"


def interval(e) -> str:
    """The label every interval carries: '95% t-interval on log, n=5'."""
    return e.label if e.n else MISSING
