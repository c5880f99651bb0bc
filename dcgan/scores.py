"""The one score record (dcgan.metrics.fidelity writes it), summarised for the store and table.

A record is {metric, extractor, name, value, std?, step, kimg, kind, protocol_id, protocol}:
`metric` is a bare key of fidelity.METRICS and `extractor` the feature space, so nothing here
parses a name back. A tidy column is `<metric>_<extractor>` (fid_mnist, precision_randcnn);
the primary extractor's scores also appear under the bare key (fid, kid, precision, ...),
which is what the statistics and the report read. Adding a metric to METRICS adds its columns.
"""

from __future__ import annotations

import math


def column(metric: str, extractor: str) -> str:
    return f"{metric}_{extractor}"


def _finite(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def final_step(records: list[dict], primary: str) -> int | None:
    """The last snapshot with a finite primary FID (a diverged run is scored at its last good
    snapshot), else the last snapshot scored at all."""
    generator = [r for r in records if r["kind"] == "generator" and r["step"] is not None]
    good = [
        r["step"]
        for r in generator
        if r["metric"] == "fid" and r["extractor"] == primary and _finite(r["value"])
    ]
    steps = good or [r["step"] for r in generator]
    return max(steps) if steps else None


def _values(records: list[dict], primary: str) -> dict:
    out: dict = {}
    for r in records:
        out[column(r["metric"], r["extractor"])] = r["value"]
        if r["extractor"] == primary or r["metric"] in ("classes_covered", "class_kl"):
            out.setdefault(r["metric"], r["value"])
            if r["extractor"] == primary:
                out[r["metric"]] = r["value"]
        if r["metric"] == "kid" and r["extractor"] == primary and "std" in r:
            out["kid_std"] = r["std"]
    return out


def summarise(records: list[dict], extractors: list[str]) -> dict:
    """{'final': scores at the final snapshot, 'floor': real-vs-real, 'rows': every generator
    snapshot as [step, kimg, metric, extractor, value]} for the trial's user attributes."""
    primary = extractors[0]
    wanted = [
        r
        for r in records
        if r["extractor"] in extractors or r["metric"].startswith(("class", "modes"))
    ]
    step = final_step(wanted, primary)
    at_end = [r for r in wanted if r["kind"] == "generator" and r["step"] == step]
    final = _values(at_end, primary)
    fid = next((r for r in at_end if r["metric"] == "fid" and r["extractor"] == primary), None)
    if fid is not None:
        final |= {
            "scored_step": step,
            "fid_metric": fid["name"],
            "protocol_id": fid["protocol_id"],
            "protocol": fid["protocol"],
        }
    floor = _values([r for r in wanted if r["kind"] == "floor"], primary)
    rows = sorted(
        [r["step"], r["kimg"], r["metric"], r["extractor"], r["value"]]
        for r in wanted
        if r["kind"] == "generator" and r["step"] is not None
    )
    return {"final": final, "floor": floor, "rows": rows}


def curve(rows: list[list], metric: str, extractor: str) -> list[list]:
    """[[step, value]] of one metric in one feature space."""
    return [[s, v] for s, _, m, e, v in rows if m == metric and e == extractor]
