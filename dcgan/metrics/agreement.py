"""Do two feature spaces agree? Rank agreement and OOD counts over scored runs.

`python -m dcgan.metrics.agreement RUN_DIR... [--score] [--plot docs/img]` reads each run's
scores.jsonl (current protocol only), and reports, per metric, Spearman's rank correlation
between two extractors over every scored generator snapshot and over the runs' last
snapshots, and how many snapshots each OOD rule flags. With --score it first scores the runs
under both extractors (score_run: incremental, appends to scores.jsonl; run it on copies of
run folders you must not write to).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..rundir import RunDir
from . import ood
from .fidelity import FEATURE_METRICS, METRICS, read_scores, score_run, select


def run_labels(run_dirs: list[Path]) -> dict[str, str]:
    """Each run named by the config fields in which the runs differ (e.g. its arm and seed)."""
    configs = {}
    for run_dir in run_dirs:
        try:
            configs[Path(run_dir).name] = RunDir(run_dir).read_config_dict()
        except (OSError, ValueError):
            configs[Path(run_dir).name] = {}
    keys = sorted({k for c in configs.values() for k in c})
    differ = [k for k in keys if len({json.dumps(c.get(k)) for c in configs.values()}) > 1]
    return {
        name: " ".join(f"{k}={c.get(k)}" for k in differ) or name for name, c in configs.items()
    }


def snapshot_table(run_dirs: list[Path], extractors: tuple[str, str]) -> list[dict]:
    """One row per (run, step) of generator records: {run, label, step, kimg, metric_extractor:
    value}."""
    rows = []
    labels = run_labels(run_dirs)
    for run_dir in run_dirs:
        by_step: dict[int, dict] = {}
        for r in select(read_scores(run_dir), kind="generator"):
            if r["extractor"] not in extractors and r["metric"] in FEATURE_METRICS:
                continue
            name = Path(run_dir).name
            row = by_step.setdefault(
                r["step"],
                {"run": name, "label": labels[name], "step": r["step"], "kimg": r["kimg"]},
            )
            row[f"{r['metric']}_{r['extractor']}"] = r["value"]
        rows += [by_step[s] for s in sorted(by_step)]
    return rows


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    pairs = [(x, y) for x, y in zip(a, b, strict=True) if math.isfinite(x) and math.isfinite(y)]
    if len(pairs) < 3:
        return math.nan
    return float(spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic)


def agreement(rows: list[dict], extractors: tuple[str, str]) -> dict:
    a, b = extractors
    last: dict[str, dict] = {}
    for row in rows:
        if row["step"] >= last.get(row["run"], {"step": -1})["step"]:
            last[row["run"]] = row
    out: dict = {"snapshots": len(rows), "runs": len(last), "spearman": {}, "spearman_last": {}}
    for metric in FEATURE_METRICS:
        ka, kb = f"{metric}_{a}", f"{metric}_{b}"
        have = [r for r in rows if ka in r and kb in r]
        out["spearman"][metric] = spearman([r[ka] for r in have], [r[kb] for r in have])
        finals = [r for r in last.values() if ka in r and kb in r]
        out["spearman_last"][metric] = spearman([r[ka] for r in finals], [r[kb] for r in finals])
    # What an ablation verdict needs: at the same step, do both spaces order two runs alike?
    out["same_step_pairs"] = {}
    for metric in FEATURE_METRICS:
        ka, kb = f"{metric}_{a}", f"{metric}_{b}"
        agree = total = 0
        for i, r in enumerate(rows):
            for q in rows[i + 1 :]:
                if q["step"] != r["step"] or q["run"] == r["run"]:
                    continue
                if not all(k in x and math.isfinite(x[k]) for x in (r, q) for k in (ka, kb)):
                    continue
                da, db = r[ka] - q[ka], r[kb] - q[kb]
                if da == 0 or db == 0:
                    continue
                total += 1
                agree += (da > 0) == (db > 0)
        out["same_step_pairs"][metric] = {"agree": agree, "pairs": total}
    flags = {}
    for extractor in extractors:
        key = f"ood_norm_frac_{extractor}"
        flags[f"ood_norm_frac_{extractor} > {ood.OOD_NORM_FRAC_LIMIT}"] = sum(
            r.get(key, 0) > ood.OOD_NORM_FRAC_LIMIT for r in rows
        )
    flags["classes_covered < 10"] = sum(r.get("classes_covered_mnist", 10) < 10 for r in rows)
    flags["classes_covered <= 2"] = sum(r.get("classes_covered_mnist", 10) <= 2 for r in rows)
    out["flagged"] = flags
    # agreement inside and outside the OOD regime (flagged in either space)
    limit = ood.OOD_NORM_FRAC_LIMIT
    inside = [r for r in rows if all(r.get(f"ood_norm_frac_{e}", 0) <= limit for e in extractors)]
    outside = [r for r in rows if r not in inside]
    out["spearman_fid_in_distribution"] = spearman(
        [r.get(f"fid_{a}", math.nan) for r in inside], [r.get(f"fid_{b}", math.nan) for r in inside]
    )
    out["spearman_fid_flagged"] = spearman(
        [r.get(f"fid_{a}", math.nan) for r in outside],
        [r.get(f"fid_{b}", math.nan) for r in outside],
    )
    out["flagged_snapshots"] = len(outside)
    return out


def plot(rows: list[dict], extractors: tuple[str, str], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = extractors
    paths = []
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, metric in zip(axes, ("fid", "kid", "precision"), strict=True):
        ka, kb = f"{metric}_{a}", f"{metric}_{b}"
        flagged = [r.get(f"ood_norm_frac_{a}", 0) > ood.OOD_NORM_FRAC_LIMIT for r in rows]
        for is_flagged, colour, label in ((False, "tab:blue", "in distribution"), (True, "tab:red", f"ood_norm_frac_{a} > {ood.OOD_NORM_FRAC_LIMIT}")):  # fmt: skip
            pick = [r for r, f in zip(rows, flagged, strict=True) if f == is_flagged]
            ax.scatter([r[ka] for r in pick], [r[kb] for r in pick], s=10, c=colour, label=label)
        if metric == "fid":
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(f"{metric} ({a})")
        ax.set_ylabel(f"{metric} ({b})")
        ax.set_title(f"{metric}: {METRICS[metric].better} is better")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path = Path(out_dir) / "metrics-agreement.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    paths.append(path)

    runs = sorted({r["run"] for r in rows})
    labels = {r["run"]: r.get("label", r["run"]) for r in rows}
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    for run in runs:
        mine = [r for r in rows if r["run"] == run]
        kimg = [r["kimg"] for r in mine]
        for ax, key in zip(axes, (f"fid_{a}", f"fid_{b}", f"ood_norm_frac_{a}", "classes_covered_mnist"), strict=True):  # fmt: skip
            ax.plot(kimg, [r.get(key, math.nan) for r in mine], "-", lw=1, label=labels[run])
            ax.set_title(key)
            ax.set_xlabel("kimg")
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    if len(runs) <= 12:
        axes[-1].legend(fontsize=6)
    fig.tight_layout()
    path = Path(out_dir) / "metrics-curves.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dcgan.metrics.agreement")
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--extractors", nargs=2, default=["mnist", "randcnn"])
    parser.add_argument("--score", action="store_true", help="score the runs first (writes!)")
    parser.add_argument("--n-fake", type=int, default=1000)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    extractors = tuple(args.extractors)
    if args.score:
        import torch

        torch.set_num_threads(1)
        for run_dir in args.run_dirs:
            score_run(run_dir, list(extractors), n_fake=args.n_fake, device="cpu")
            print(f"scored {run_dir}", flush=True)
    rows = snapshot_table(args.run_dirs, extractors)
    result = agreement(rows, extractors)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": result, "rows": rows}, indent=1))
    if args.plot:
        for path in plot(rows, extractors, args.plot):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
