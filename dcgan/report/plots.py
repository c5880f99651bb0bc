"""Figures for the report, as PNG bytes ready to embed.

Figures are built on matplotlib's Figure directly (rendered by Agg on savefig), so plotting
never touches pyplot's global state or a GUI backend. Every plot shows finished runs only,
matching the tables; a plot with nothing to show returns None and the page says so.
"""

from __future__ import annotations

import contextlib
import io
import math
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from PIL import Image

from dcgan.report import fmt

DPI = 150  # sharp when enlarged (the report's plots enlarge on click)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
LINESTYLES = ("-", "--", "-.", ":")
BOXES_FROM_SEEDS = 5  # fewer seeds: points only (a box over 3 points says nothing more)
WIDTH_IN = 10.5
FACET_COLUMNS = 4
DIVERGED_COLOR = "#c0392b"
FLOOR_COLOR = "#7f8c8d"
STATUS_COLORS = {"completed": "#34495e", "diverged": DIVERGED_COLOR}
SAMPLE_MAX_PX = 512  # final grids are shown at up to this size
FRAME_PX = 150  # progression frames
MAX_FRAMES = 6
KID_SCALE = 1e3  # plots show KID×10³ like the tables


def arm_palette(arms: list[str]) -> dict[str, tuple]:
    """One colour per arm, the same in every plot."""
    colors = sns.color_palette("colorblind" if len(arms) <= 10 else "husl", len(arms))
    return dict(zip(arms, colors, strict=True))


def arm_styles(arms: list[str]) -> dict[str, dict]:
    """Colour, marker and line style per arm: no two arms look alike, even without colour
    (20 distinct marker x line-style pairs before one repeats)."""
    palette = arm_palette(arms)
    return {
        arm: {"color": palette[arm], "marker": MARKERS[i % len(MARKERS)], "ls": LINESTYLES[i % len(LINESTYLES)]}
        for i, arm in enumerate(arms)
    }  # fmt: skip


def _text(label: str) -> str:
    """Arm names are user text: keep matplotlib from reading '$...$' as mathtext."""
    return str(label).replace("$", r"\$")


@contextlib.contextmanager
def _style() -> Iterator[None]:
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.8):
        yield


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def finished_curves(curves: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Curve rows of completed or diverged runs only (running ones would move under the reader)."""
    done = runs[runs["status"].isin(("completed", "diverged"))][["arm", "seed"]]
    return curves.merge(done, on=["arm", "seed"])


def _seed_band(curves: pd.DataFrame, metric: str, smooth: bool, x: str = "step") -> pd.DataFrame:
    """Per (arm, x): mean over seeds and the min-max band; optionally a rolling mean first."""
    rows = curves[curves["metric"] == metric].sort_values(["arm", "seed", x])
    if rows.empty:
        return pd.DataFrame(columns=["arm", x, "mean", "lo", "hi", "n"])
    if smooth:
        rows = rows.assign(
            value=rows.groupby(["arm", "seed"])["value"].transform(
                lambda v: v.rolling(max(1, len(v) // 20), min_periods=1).mean()
            )
        )
    stats = rows.groupby(["arm", x])["value"].agg(mean="mean", lo="min", hi="max", n="size")
    return stats.reset_index()


def _draw_band(
    ax, band: pd.DataFrame, color, label: str, scale: float = 1.0, marker=None, ls: str = "-",
    x: str = "step",
) -> None:  # fmt: skip
    """Mean line, full where every seed has data, faded where some have stopped (diverged).
    Markers: the arm's own (at most ~12 per line), else dots on short curves."""
    marker = marker or ("o" if len(band) <= 12 else None)
    every = max(1, len(band) // 12)
    all_seeds = band["n"] == band["n"].max()
    partial = (
        ~all_seeds | ~all_seeds.shift(1, fill_value=True) | ~all_seeds.shift(-1, fill_value=True)
    )
    mean = band["mean"] * scale
    ax.plot(
        band[x], mean.where(all_seeds), color=color, lw=1.6, ls=ls, label=_text(label),
        marker=marker, ms=4, markevery=every,
    )  # fmt: skip
    if not all_seeds.all():
        ax.plot(
            band[x], mean.where(partial), color=color, lw=1.2, ls=ls, alpha=0.45,
            marker=marker, ms=3, markevery=every,
        )  # fmt: skip
    ax.fill_between(band[x], band["lo"] * scale, band["hi"] * scale, color=color, alpha=0.18, lw=0)


def training_scores(curves: pd.DataFrame, arms: list[str], palette: dict) -> bytes | None:
    """FID and KID against kimg (arms with other batch sizes line up by images seen), one line
    per arm (mean over seeds, band min-max). FID on a log axis: the end of training, where
    verdicts are made, is otherwise a flat line at the bottom of the early phase's range."""
    bands = {m: _seed_band(curves, m, smooth=False, x="kimg") for m in ("fid", "kid")}
    if all(b.empty for b in bands.values()):
        return None
    with _style():
        fig = Figure(figsize=(WIDTH_IN, 3.4))
        axes = fig.subplots(1, 2)
        for ax, (metric, band) in zip(axes, bands.items(), strict=True):
            scale = KID_SCALE if metric == "kid" else 1.0
            styles = arm_styles(arms)
            for arm in arms:
                arm_band = band[band["arm"] == arm]
                if not arm_band.empty:
                    style = styles[arm]
                    _draw_band(
                        ax, arm_band, palette[arm], arm, scale, style["marker"], style["ls"], "kimg"
                    )
            log_y = metric == "fid" and bool((band["lo"] > 0).all())
            if log_y:
                ax.set_yscale("log")
            ax.set(
                xlabel="kimg (thousands of images seen)",
                ylabel=fmt.METRIC_LABEL[metric] + (" (log scale)" if log_y else ""),
                title=f"{fmt.METRIC_LABEL[metric]} during training (lower is better)",
            )
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(
            handles,
            labels,
            loc="lower center",
            ncol=min(len(labels), 4),
            frameon=False,
            bbox_to_anchor=(0.5, -0.02 - 0.05 * math.ceil(len(labels) / 4)),
        )
        fig.tight_layout()
        return _png(fig)


def _facets(n: int, row_height: float = 2.3) -> tuple[Figure, list]:
    columns = min(FACET_COLUMNS, n)
    rows = math.ceil(n / columns)
    fig = Figure(figsize=(WIDTH_IN, row_height * rows + 0.6))
    axes = np.atleast_1d(
        fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
    ).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def _per_arm_pair(
    curves: pd.DataFrame,
    arms: list[str],
    metrics: dict[str, str],
    colors: tuple[str, str],
    title: str,
    diverged_at: dict[str, list[float]] | None = None,
    smooth: bool = False,
    log_y: bool = False,
    ylabel: str = "",
) -> bytes | None:
    """Small multiples, one panel per arm, two metrics per panel."""
    bands = {m: _seed_band(curves, m, smooth) for m in metrics}
    shown = [a for a in arms if any((b["arm"] == a).any() for b in bands.values())]
    if not shown:
        return None
    log_y = log_y and all((b["lo"] > 0).all() for b in bands.values())
    if log_y:
        low = min(b["lo"].min() for b in bands.values() if not b.empty)
        high = max(b["hi"].max() for b in bands.values() if not b.empty)
        log_ticks = LogLocator(subs=(1.0,) if high / low > 100 else (1.0, 2.0, 5.0))
    with _style():
        fig, axes = _facets(len(shown))
        for ax, arm in zip(axes, shown, strict=True):
            for (metric, label), color in zip(metrics.items(), colors, strict=True):
                band = bands[metric]
                if (band["arm"] == arm).any():
                    _draw_band(ax, band[band["arm"] == arm], color, label)
            for step in (diverged_at or {}).get(arm, []):
                ax.axvline(step, color=DIVERGED_COLOR, ls=":", lw=1.2)
            ax.set_title(_text(arm), fontsize=9)
            if log_y:
                ax.set_yscale("log")
                ax.yaxis.set_major_locator(log_ticks)
                ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
                ax.yaxis.set_minor_formatter(NullFormatter())
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper right", ncol=2, frameon=False)
        fig.suptitle(title, x=0.01, ha="left", fontsize=10)
        fig.supxlabel("step", fontsize=9)
        if ylabel:
            fig.supylabel(ylabel + (" (log scale)" if log_y else ""), fontsize=9)
        fig.tight_layout()
        return _png(fig)


def losses(curves: pd.DataFrame, runs: pd.DataFrame, arms: list[str]) -> bytes | None:
    diverged = runs[runs["status"] == "diverged"].dropna(subset=["diverged_at_step"])
    diverged_at = diverged.groupby("arm")["diverged_at_step"].apply(list).to_dict()
    return _per_arm_pair(
        curves,
        arms,
        {"d_loss": "D loss", "g_loss": "G loss"},
        ("#1f77b4", "#ff7f0e"),
        "Losses (rolling mean over ~5% of training)",
        diverged_at=diverged_at,
        smooth=True,
        log_y=True,
        ylabel="loss",
    )


def discriminator_outputs(curves: pd.DataFrame, arms: list[str]) -> bytes | None:
    return _per_arm_pair(
        curves,
        arms,
        {"d_real": "D(x)", "d_fake": "D(G(z))"},
        ("#2ca02c", "#9467bd"),
        "Discriminator outputs on real and generated batches",
        smooth=True,
        ylabel="mean D output (probability)",
    )


def _final_scores_legend(floor: dict | None) -> list[Line2D]:
    handles = [
        Line2D([], [], ls="", marker="o", color=color, label=f"{status} run")
        for status, color in STATUS_COLORS.items()
    ]
    if floor:
        handles.append(Line2D([], [], ls="--", color=FLOOR_COLOR, label="real vs real (floor)"))
    return handles


def final_scores(runs: pd.DataFrame, arms: list[str], floor: dict | None) -> bytes | None:
    """Final FID and KID per seed: one dot per seed (red: diverged), a box over the seeds."""
    done = runs[runs["status"].isin(("completed", "diverged"))].copy()
    done["kid"] = pd.to_numeric(done["kid"], errors="coerce") * KID_SCALE
    done["fid"] = pd.to_numeric(done["fid"], errors="coerce")
    shown = [a for a in arms if done.loc[done["arm"] == a, "fid"].notna().any()]
    if not shown:
        return None
    done = done[done["arm"].isin(shown)].assign(arm=lambda d: d["arm"].map(_text))
    order = [_text(a) for a in shown]
    with _style():
        fig = Figure(figsize=(WIDTH_IN, 0.42 * len(shown) + 1.3))
        axes = fig.subplots(1, 2, sharey=True)
        for ax, metric in zip(axes, ("fid", "kid"), strict=True):
            sns.stripplot(
                data=done,
                x=metric,
                y="arm",
                order=order,
                ax=ax,
                hue="status",
                hue_order=list(STATUS_COLORS),
                palette=STATUS_COLORS,
                size=5.5,
                jitter=0.12,
                legend=False,
            )
            if done.groupby("arm")[metric].count().max() >= BOXES_FROM_SEEDS:
                ax.boxplot(  # with fewer seeds the points alone show everything
                    [done.loc[done["arm"] == arm, metric].dropna() for arm in order],
                    positions=range(len(order)),
                    orientation="horizontal",
                    widths=0.55,
                    showfliers=False,
                    patch_artist=True,
                    boxprops={"facecolor": "#dfe6ee", "edgecolor": "#8795a6", "linewidth": 0.9},
                    medianprops={"color": "#34495e", "linewidth": 1.2},
                    whiskerprops={"color": "#8795a6"},
                    capprops={"color": "#8795a6"},
                    manage_ticks=False,  # keep the stripplot's categorical axis
                    zorder=0.5,
                )
            if floor and fmt.is_number(floor.get(metric)):
                scale = KID_SCALE if metric == "kid" else 1.0
                ax.axvline(floor[metric] * scale, color=FLOOR_COLOR, ls="--", lw=1.2)
            ax.set(xlabel=f"final {fmt.METRIC_LABEL[metric]} (lower is better)", ylabel="")
        fig.legend(
            handles=_final_scores_legend(floor),
            loc="upper center",
            ncol=3,
            frameon=False,
            bbox_to_anchor=(0.5, 1.08),
        )
        fig.tight_layout()
        return _png(fig)


def _encode(image: Image.Image, max_px: int) -> bytes:
    image = image.convert("RGB")
    image.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def sample_grid(path: Path) -> bytes | None:
    """The grid PNG re-encoded at a bounded size; None when the file is missing or unreadable."""
    try:
        with Image.open(path) as image:
            return _encode(image, SAMPLE_MAX_PX)
    except OSError:
        return None


def progression(frames: list[tuple[int, Path]]) -> list[tuple[int, bytes]]:
    """Up to MAX_FRAMES evenly spaced grids from first to last step, as small thumbnails."""
    frames = sorted(frames)
    if len(frames) > MAX_FRAMES:
        picks = np.unique(np.linspace(0, len(frames) - 1, MAX_FRAMES).round().astype(int))
        frames = [frames[i] for i in picks]
    thumbnails = []
    for step, path in frames:
        try:
            with Image.open(path) as image:
                thumbnails.append((step, _encode(image, FRAME_PX)))
        except OSError:
            continue
    return thumbnails


def budget_ratios(trajectories: dict, arms: list[str], palette: dict) -> bytes | None:
    """Each arm's FID / baseline FID (paired by seed, t-interval on log) against kimg.

    One facet per arm: a verdict is final only if the band stays on one side of 1 to the end.
    """
    shown = [a for a in arms if a in trajectories and trajectories[a].deltas]
    if not shown:
        return None
    with _style():
        fig, axes = _facets(len(shown), row_height=2.4)
        for ax, arm in zip(axes, shown, strict=False):
            deltas = trajectories[arm].deltas
            kimg = [d.kimg for d in deltas]
            ax.plot(
                kimg,
                [d.ratio.value for d in deltas],
                color=palette[arm],
                marker="o",
                ms=2.5,
                lw=1.4,
            )
            ax.fill_between(
                kimg,
                [d.ratio.lo for d in deltas],
                [d.ratio.hi for d in deltas],
                color=palette[arm],
                alpha=0.2,
                lw=0,
            )
            ax.axhline(1.0, color=FLOOR_COLOR, lw=1, ls="--")
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            stab = trajectories[arm].stability
            # wrapped to the facet's width: side by side, four one-line sentences overlapped
            width = 120 // min(FACET_COLUMNS, len(shown))
            sentence = stab.sentence if stab else ""
            if trajectories[arm].gate.trained is False:  # the gate speaks first, as in the verdict
                sentence = "undertrained: no verdict; " + sentence
            title = _text(arm) + (f"\n{textwrap.fill(sentence, width)}" if sentence else "")
            ax.set(
                xlabel="kimg (thousands of images seen)", ylabel="FID / baseline FID", title=title
            )
        for ax in axes[len(shown) :]:
            ax.set_visible(False)
        fig.tight_layout()
        return _png(fig)
