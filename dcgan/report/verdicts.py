"""Plain sentences with numbers: what each arm did, what the ablation found, whether claims hold.

Only resolved differences (see stats.Difference.resolved) are ever called better or worse.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dcgan.report import fmt, stats
from dcgan.results import AblationResults, Claim

AGREE, DISAGREE, CANT_TELL = "agree", "disagree", "can't tell"
CLAIM_KINDS = ("better", "not_better", "diverges", "info")


@dataclass(frozen=True)
class ArmVerdict:
    label: str  # baseline | better | worse | not resolved | diverged | no data
    sentence: str


@dataclass(frozen=True)
class ClaimVerdict:
    claim: Claim
    verdict: str | None  # None for 'info' claims: context, not a test
    sentence: str


def _estimate(metric: str, e: stats.Estimate) -> str:
    label = fmt.METRIC_LABEL[metric]
    if e.n == 0:
        return f"no {label} yet"
    if not e.has_ci:
        return f"{label} {fmt.metric(metric, e.mean)} (1 seed, no CI)"
    return f"{label} {fmt.metric(metric, e.mean)} {fmt.metric_ci(metric, e.lo, e.hi)}"


def difference_clause(d: stats.Difference) -> str:
    """'4.1 worse than baseline (paired 95% CI [...], p=..., d_z=...)', or why it is unresolved."""
    n = d.paired.n
    if n < 2:
        return f"too few seeds scored in both this arm and {d.reference} to compare ({n} paired)"
    ci = fmt.metric_ci(d.metric, d.paired.lo, d.paired.hi)
    if d.resolved:
        return (
            f"{fmt.metric(d.metric, abs(d.paired.mean))} {d.direction} than {d.reference} "
            f"(paired 95% CI {ci}, {fmt.p_clause(d.p)}, d_z={fmt.effect(d.d_z)}, {fmt.seeds(n)})"
        )
    return (
        f"not distinguishable from {d.reference} with {fmt.seeds(n)} "
        f"(paired CI {ci}, {fmt.p_clause(d.p)})"
    )


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def arm_verdict(
    arm: stats.ArmSummary, differences: dict[str, stats.Difference] | None
) -> ArmVerdict:
    done = len(arm.done_seeds)
    if done == 0:
        return ArmVerdict("no data", f"No finished runs yet (0 of {arm.expected}).")
    parts = []
    if arm.diverged:
        at = (
            f", at about step {arm.diverged_at_median:.0f}"
            if fmt.is_number(arm.diverged_at_median)
            else ""
        )
        parts.append(f"Diverged in {arm.diverged} of {fmt.seeds(done)}{at}.")
    fid_direction = None
    if arm.is_baseline or differences is None:
        parts.append(
            f"The reference arm: {_estimate('fid', arm.fid)}, {_estimate('kid', arm.kid)}."
        )
    else:
        fid, kid = differences["fid"], differences["kid"]
        fid_direction = fid.direction
        parts.append(f"{_capitalised(_estimate('fid', arm.fid))}, {difference_clause(fid)}.")
        if kid.direction != fid.direction:
            parts.append(f"{fmt.METRIC_LABEL['kid']} {difference_clause(kid)}.")
    if done < arm.expected:
        parts.append(f"Only {done} of {arm.expected} runs finished.")
    if arm.is_baseline:
        label = "baseline"
    elif arm.diverged == done:
        label = "diverged"
    else:
        label = fid_direction or "not resolved"
    return ArmVerdict(label, " ".join(parts))


def arm_verdicts(analysis: stats.Analysis) -> dict[str, ArmVerdict]:
    return {a.arm: arm_verdict(a, analysis.differences.get(a.arm)) for a in analysis.arms}


def overall_verdict(analysis: stats.Analysis, baseline: str) -> str:
    """One line for the index: which arms differ resolvably from the baseline on FID."""
    by_arm = arm_verdicts(analysis)
    if all(v.label == "no data" for v in by_arm.values()):
        return "No finished runs yet."
    by_label: dict[str, list[str]] = {}
    for arm, verdict in by_arm.items():
        by_label.setdefault(verdict.label, []).append(arm)
    resolved = [
        f"{arm} {label}" for label in ("better", "worse") for arm in by_label.get(label, [])
    ]
    parts = [
        f"Resolved vs {baseline} on FID: {', '.join(resolved)}"
        if resolved
        else f"No arm differs resolvably from {baseline} on FID"
    ]
    for label, title in (
        ("not resolved", "Not resolved"),
        ("diverged", "Diverged in every finished seed"),
        ("no data", "No finished runs"),
    ):
        if by_label.get(label):
            parts.append(f"{title}: {', '.join(by_label[label])}")
    return ". ".join(parts) + "."


def _measured_column(runs: pd.DataFrame, key: str) -> str | None:
    for column in (key, f"final_{key}"):
        if column in runs.columns:
            return column
    return None


def reported_vs_measured(claim: Claim, runs: pd.DataFrame) -> str:
    """'g loss: reported 27, measured 45.2 (mean of 3 seeds)' for each value the document gives."""
    if not claim.reported:
        return ""
    if claim.arm is None:
        return (
            "Reported: "
            + ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in claim.reported.items())
            + "."
        )
    done = stats.scored(runs[runs["arm"] == claim.arm])
    pieces = []
    for key, value in claim.reported.items():
        column = _measured_column(done, key)
        measured = stats.mean_ci(done[column]) if column else stats.mean_ci([])
        ours = (
            f"measured {fmt.general(measured.mean)} (mean of {fmt.seeds(measured.n)})"
            if measured.n
            else "not measured"
        )
        pieces.append(f"{key.replace('_', ' ')}: reported {value:g}, {ours}")
    return f"{claim.arm}: " + "; ".join(pieces) + "."


def _fid_claim(claim: Claim, results: AblationResults) -> tuple[str, str]:
    vs = claim.vs or results.baseline
    d = stats.compare(results.runs, claim.arm, vs, "fid")
    measured = (
        f"{claim.arm} − {vs} FID {fmt.metric('fid', d.paired.mean, signed=True)} "
        f"(paired 95% CI {fmt.metric_ci('fid', d.paired.lo, d.paired.hi)}, "
        f"{fmt.p_clause(d.p)}, {fmt.seeds(d.paired.n)})"
    )
    if d.paired.n < 2:
        return CANT_TELL, f"Fewer than 2 seeds scored in both {claim.arm} and {vs}."
    if claim.kind == "better":
        verdict = {"better": AGREE, "worse": DISAGREE}.get(d.direction, CANT_TELL)
        why = {AGREE: "resolved better", DISAGREE: "resolved worse", CANT_TELL: "not resolved"}
    else:
        verdict = DISAGREE if d.direction == "better" else AGREE
        why = {AGREE: "not resolved better", DISAGREE: "resolved better"}
    return verdict, f"{measured}: {why[verdict]}."


def _divergence_claim(arm: stats.ArmSummary) -> tuple[str, str]:
    done = len(arm.done_seeds)
    if done == 0:
        return CANT_TELL, f"{arm.arm} has no finished runs."
    verdict = AGREE if 2 * arm.diverged > done else DISAGREE if arm.diverged == 0 else CANT_TELL
    return verdict, f"{arm.arm} diverged in {arm.diverged} of {fmt.seeds(done)}."


def claim_verdict(claim: Claim, results: AblationResults, analysis: stats.Analysis) -> ClaimVerdict:
    if claim.kind not in CLAIM_KINDS:
        raise ValueError(f"claim kind {claim.kind!r} is not one of {', '.join(CLAIM_KINDS)}")
    reported = reported_vs_measured(claim, results.runs)
    arms = {a.arm: a for a in analysis.arms}
    if claim.kind == "info":
        return ClaimVerdict(claim, None, reported or "Context only; nothing to measure.")
    needed = [claim.arm] if claim.kind == "diverges" else [claim.arm, claim.vs or results.baseline]
    missing = [a for a in needed if a not in arms]
    if missing:
        return ClaimVerdict(claim, CANT_TELL, f"Arm {missing[0]!r} is not in this ablation.")
    if claim.kind == "diverges":
        verdict, sentence = _divergence_claim(arms[claim.arm])
    else:
        verdict, sentence = _fid_claim(claim, results)
    return ClaimVerdict(claim, verdict, f"{sentence} {reported}".strip())


def claim_verdicts(results: AblationResults, analysis: stats.Analysis) -> list[ClaimVerdict]:
    return [claim_verdict(c, results, analysis) for c in results.claims]
