"""The page: everything a reviewer needs, escaped, self-contained, and robust to part-done runs."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dcgan.report import render_index, render_report, summary
from dcgan.report.render import page_name
from tests.report.conftest import ARMS, SEEDS, build_results

SCRIPT_ARM = "<script>alert(1)</script>"


def test_report_has_verdicts_tables_claims_protocol_and_plots(results, tmp_path):
    path = render_report(results, tmp_path / "out")
    assert path == tmp_path / "out" / "activations.html"
    html = path.read_text()
    assert [p.name for p in path.parent.iterdir()] == ["activations.html"]  # no temp file left
    for expected in [
        results.question,
        # lr 3e-4 has 2 paired seeds: Holm over the family of 2 does not resolve it
        "Resolved vs baseline on FID (Holm over 2 arms): G selu / D selu worse. Can&#39;t tell: lr 3e-4.",
        "Diverged in 2 of 3 seeds, at about step 425.",
        "real vs real (floor)",
        "95% t-interval on log ratio, n=3",
        "Holm p",
        "TOST Holm p",
        "primary family: every arm vs the baseline on FID, Holm-adjusted",
        '2 / 3 <span class="ci">[9%, 99%]<br>Clopper-Pearson</span>',
        "A higher learning rate helps.",
        "g loss: reported 27",
        "inception-v3-compat",
        "c2b19a28b17c28e8036c0648960a3fec0d5594216eccfe8afad46b8baed0c139",
        "git commit",
        "bce arms run in fp32 under AMP.",
        "8 of 9 runs done",
    ]:
        assert expected in html, expected
    assert html.index("Verdict") < html.index("Results per arm") < html.index("Samples")
    figures, final_grids, frames = 5, 3, 5 + 5 + 2  # the diverged seed's grids stop at step 250
    # figures: final scores, training scores, losses, D outputs, and the per-arm budget plot
    images = re.findall(r'<img [^>]*src="data:image/png;base64,', html)
    assert len(images) == figures + final_grids + frames


def test_page_is_self_contained(results, tmp_path):
    html = render_report(results, tmp_path).read_text()
    assert "<script" not in html and "<link" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert set(re.findall(r'src="([a-z]+):', html)) == {"data"}


def test_user_text_is_escaped(tmp_path):
    arms = {"baseline": {}, SCRIPT_ARM: {"lr_g": "<b>3e-4</b>"}, "G selu / D selu": {}}
    results = build_results(tmp_path, arms=arms, name="escape")
    results.notes.append("<img src=x onerror=alert(2)>")
    html = render_report(results, tmp_path / "out").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert SCRIPT_ARM not in html and "<b>3e-4</b>" not in html and "<img src=x" not in html


def test_part_done_ablation_renders_with_banner(tmp_path):
    unfinished = {("lr 3e-4", 2): "missing", ("baseline", 1): "failed"}
    unfinished |= {("G selu / D selu", seed): "waiting" for seed in SEEDS}
    results = build_results(tmp_path, unfinished=unfinished)
    html = render_report(results, tmp_path / "out").read_text()
    assert "4 of 9 runs done" in html
    for arm, seed, status in [
        ("lr 3e-4", 2, "missing"),
        ("baseline", 1, "failed"),
        ("G selu / D selu", 0, "waiting"),
    ]:
        assert f"{arm}/{seed}</span> ({status})" in html
    assert "No finished runs yet (0 of 3)." in html
    assert "Arms with no finished runs are left out of the plots: G selu / D selu." in html
    assert "No sample grid yet" in html


def test_ablation_with_no_finished_runs_renders(tmp_path):
    waiting = {(arm, seed): "waiting" for arm in ARMS for seed in SEEDS}
    html = render_report(build_results(tmp_path, unfinished=waiting), tmp_path / "out").read_text()
    assert "0 of 9 runs done" in html and "No finished runs yet." in html
    assert "nothing to plot yet" in html


def test_one_seed_arms_render_without_cis(tmp_path):
    results = build_results(tmp_path)
    results.runs = results.runs[results.runs["seed"] == 0].reset_index(drop=True)
    html = render_report(results, tmp_path / "out").read_text()
    assert "(1 seed, no CI)" in html and "too few seeds" in html


def test_summary_and_index(results, tmp_path):
    other = build_results(tmp_path / "b", arms={"baseline": {}, SCRIPT_ARM: {}}, name="odd name #1")
    summaries = [summary(results), summary(other)]
    assert summaries[0] == {
        "name": "activations",
        "question": results.question,
        "verdict": "Resolved vs baseline on FID (Holm over 2 arms): G selu / D selu worse. "
        "Can't tell: lr 3e-4.",
        "runs_done": 8,
        "runs_expected": 9,
        "profile": "smoke",
    }
    html = render_index(summaries, tmp_path).read_text()
    assert 'href="activations.html"' in html and 'href="odd%20name%20%231.html"' in html
    assert "&lt;script&gt;" in html and SCRIPT_ARM not in html


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "index"])
def test_unsafe_page_names_are_refused(name):
    with pytest.raises(ValueError, match="cannot be a file name"):
        page_name(name)


def test_diverged_runs_are_shown_per_seed_and_scored_worst_in_comparisons(results, tmp_path):
    """Semantics changed (issue 14): the per-arm FID is the geometric mean of completed runs; a
    diverged run shows its last good score per seed (marked †) and takes the worst score in the
    paired comparison."""
    selu = results.runs[results.runs["arm"] == "G selu / D selu"]
    html = render_report(results, tmp_path).read_text()
    for seed, fid, status in zip(selu["seed"], selu["fid"], selu["status"], strict=True):
        mark = "†" if status == "diverged" else ""
        assert f"{seed}</span>:&nbsp;{fid:.1f}{mark}" in html
    assert "2 at worst score" in html
    completed = selu[selu["status"] == "completed"]["fid"]
    assert f"{np.exp(np.log(completed).mean()):.1f}" in html


def _recorded(cpu: str) -> dict:
    env = {"cpu": cpu, "cpu_count": 2, "gpu": None, "device": "cpu", "torch_threads": 2,
           "packages": {"torch": "2.14.1"}, "git_commit": "abc"}  # fmt: skip
    return {"environments": [env], "complete": True}


def test_where_the_runs_trained_is_shown_and_a_mixture_flagged(tmp_path):
    from dcgan import environment

    results = build_results(tmp_path)
    runs = [_recorded("CPU Alpha")] * 5 + [_recorded("CPU Beta"), None]
    results.setup["provenance"] = environment.summarise(runs)
    html = render_report(results, tmp_path / "out").read_text()
    assert "Where the runs trained" in html
    assert "Mixed: runs come from 2 environments" in html
    assert "CPU Alpha, 2 cores; torch 2.14.1; git abc" in html and "(5 runs)" in html
    assert "CPU Beta" in html and "(1 run)" in html
    assert "not recorded: 1 run " in html and "torch threads: 2 (6 runs)" in html

    results.setup["provenance"] = environment.summarise([_recorded("CPU Alpha")] * 2)
    html = render_report(results, tmp_path / "out").read_text()
    assert "Mixed:" not in html and "one environment for all 2 runs that recorded it" in html


def test_runs_that_recorded_no_environment_are_not_given_the_renderers(tmp_path):
    from dcgan import environment

    results = build_results(tmp_path)
    results.setup["provenance"] = environment.summarise([None, None])
    html = render_report(results, tmp_path / "out").read_text()
    assert "not recorded by any of the 2 finished runs" in html
    assert environment.cpu_model() not in html.split('id="provenance"')[1].split("</aside>")[0]
    del results.setup["provenance"]  # results built without collect: nothing invented either
    html = render_report(results, tmp_path / "out").read_text()
    section = html.split('id="provenance"')[1].split("</aside>")[0]
    assert "not recorded" in section and environment.cpu_model() not in section


def test_an_arm_the_gate_stops_reads_undertrained_in_the_difference_table_too(tmp_path):
    """The statistics resolve it (better at the end), but its FID still falls steeply: the
    table's decision must not say 'better' beside a verdict that says 'no verdict'."""
    results = build_results(tmp_path, {"baseline": {}, "slow": {"lr_g": 1e-4}})
    curves = results.curves
    still_falling = (curves["arm"] == "slow") & (curves["metric"] == "fid")
    curves.loc[still_falling, "value"] *= 1 + 9 * (1 - curves.loc[still_falling, "step"] / 1000)
    html = render_report(results, tmp_path / "out").read_text()
    table = html[html.index("Difference to the baseline") : html.index("Nondeterminism")]
    fid_row = table[table.index("primary") : table.index("secondary")]
    assert '<span class="badge undertrained">undertrained</span>' in fid_row
    assert "the test alone: better" in fid_row
    assert '<span class="badge better">' not in table


def test_a_speed_ratio_with_seeds_that_never_reached_the_threshold_reads_as_a_lower_bound(tmp_path):
    """Such a seed is counted at the budget's end, so the ratio is only a bound: printed as a
    measurement with an interval it would look like a measured slowness (recipes, session 9)."""
    results = build_results(tmp_path, {"baseline": {}, "never": {"lr_g": 1e-4}})
    curves = results.curves
    curves.loc[(curves["arm"] == "never") & (curves["metric"] == "fid"), "value"] *= 50
    html = render_report(results, tmp_path / "out").read_text()
    table = html[html.index("Verdicts against the budget") :]
    row = table[table.index('<td class="arm">never') :]
    row = row[: row.index("</tr>")]
    assert "0 of 3 seeds reached it" in row
    assert "&ge; " in row and "lower bound: 3 of 3 seeds never reached it" in row
    base = table[table.index('<td class="arm">baseline') :]
    assert "lower bound" not in base[: base.index("</tr>")]
