"""Plots return PNG bytes, show finished runs only, and return None when there is nothing to plot."""

from __future__ import annotations

import io

from PIL import Image

from dcgan.report import plots, stats

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(data: bytes | None) -> bool:
    return data is not None and data.startswith(PNG_MAGIC)


def test_every_plot_renders(results):
    arms = stats.arm_names(results)
    curves = plots.finished_curves(results.curves, results.runs)
    assert _is_png(plots.training_scores(curves, arms, plots.arm_palette(arms)))
    assert _is_png(plots.losses(curves, results.runs, arms))
    assert _is_png(plots.discriminator_outputs(curves, arms))
    assert _is_png(plots.final_scores(results.runs, arms, results.floor))


def test_plots_use_finished_runs_only(results):
    results.runs.loc[
        (results.runs["arm"] == "baseline") & (results.runs["seed"] == 0), "status"
    ] = "running"
    curves = plots.finished_curves(results.curves, results.runs)
    assert set(curves.loc[curves["arm"] == "baseline", "seed"]) == {1, 2}


def test_nothing_to_plot_gives_none(results):
    arms = stats.arm_names(results)
    empty = results.curves.iloc[0:0]
    assert plots.training_scores(empty, arms, plots.arm_palette(arms)) is None
    assert plots.losses(empty, results.runs, arms) is None
    assert plots.discriminator_outputs(empty, arms) is None
    assert plots.final_scores(results.runs.assign(status="waiting"), arms, results.floor) is None


def test_arm_names_with_dollar_signs_are_not_mathtext(results):
    runs = results.runs.replace({"arm": {"lr 3e-4": "lr $x$ {"}})
    assert _is_png(plots.final_scores(runs, stats.arm_names(results) + ["lr $x$ {"], None))


def test_progression_keeps_first_and_last_frames(tmp_path):
    frames = []
    for step in range(0, 1100, 100):
        path = tmp_path / f"{step}.png"
        Image.new("RGB", (512, 512), (step % 255, 0, 0)).save(path)
        frames.append((step, path))
    thumbnails = plots.progression(frames[::-1])
    steps = [step for step, _ in thumbnails]
    assert len(steps) == plots.MAX_FRAMES and steps[0] == 0 and steps[-1] == 1000
    assert steps == sorted(steps)
    width, _ = Image.open(io.BytesIO(thumbnails[0][1])).size
    assert width == plots.FRAME_PX


def test_unreadable_grid_is_skipped(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert plots.sample_grid(tmp_path / "absent.png") is None
    assert plots.sample_grid(broken) is None
    assert plots.progression([(0, broken)]) == []
