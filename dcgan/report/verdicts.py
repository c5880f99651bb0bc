"""Plain sentences with numbers: what each arm did, what the ablation found, whether claims hold.

An arm is called better or worse only when its Holm-adjusted paired test within the primary
family says so (and the difference exceeds the execution spread, when measured), equivalent
only when TOST shows it within the declared margin; otherwise "can't tell". Claims are
pre-registered hypotheses: tested only under their stated conditions, in their own Holm family.

`arm_verdicts` returns one ArmVerdict per arm; another module may `downgrade` any of them (e.g.
to "undertrained") before `overall_verdict` and the page use them.

Over 400 lines on purpose: each verdict word's rule sits beside the sentence that states it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from dcgan.report import fmt, stats
from dcgan.results import AblationResults, Claim

AGREE, DISAGREE, CANT_TELL, OUT_OF_SCOPE = "agree", "disagree", "can't tell", "out of scope"
CLAIM_KINDS = ("better", "not_better", "diverges", "info")
LOSS_NOTE = (
    "Losses are not quality measures; they are compared only within one data set and recipe."
)


@dataclass(frozen=True)
class ArmVerdict:
    label: str  # baseline | better | worse | equivalent | can't tell | diverged | no data | ...
    sentence: str
    statistics: str = ""  # the label the statistics alone gave (before any downgrade)


@dataclass(frozen=True)
class ClaimVerdict:
    claim: Claim
    verdict: str | None  # None for 'info' claims: context, not a test
    sentence: str
    conditions: str = ""  # the conditions it is tested under, in words
    family: str = ""  # which family its test belongs to ("" when not tested)


# ---------------------------------------------------------------------------------------------
# Arms


def _estimate(metric: str, e: stats.Estimate) -> str:
    label = fmt.METRIC_LABEL[metric]
    if e.n == 0:
        return f"no {label} from completed runs"
    if not e.has_ci:
        return f"{label} {fmt.metric(metric, e.center)} (1 seed, no CI)"
    kind = "geometric mean" if "log" in e.method else "mean"
    return (
        f"{label} {fmt.metric(metric, e.center)} {fmt.metric_ci(metric, e.lo, e.hi)} "
        f"({kind} of completed runs, {e.label})"
    )


def effect_clause(c: stats.Comparison) -> str:
    """'0.29× base [0.21, 0.40] (paired 95% t-interval on log ratio, n=5)'."""
    if c.scale == "log":
        return (
            f"{fmt.ratio(c.effect.center)} {c.reference} {fmt.ratio_ci(c.effect.lo, c.effect.hi)} "
            f"(paired {c.effect.label})"
        )
    return (
        f"{fmt.metric(c.metric, c.effect.center, signed=True)} vs {c.reference} "
        f"{fmt.metric_ci(c.metric, c.effect.lo, c.effect.hi)} (paired {c.effect.label})"
    )


def difference_clause(c: stats.Comparison, family_size: int | None = None) -> str:
    """The comparison in words: effect, interval, adjusted tests and the decision."""
    n = c.n
    if n < 2:
        return f"too few seeds finished in both this arm and {c.reference} to compare ({n} paired)"
    family = f"{c.family} family of {family_size}" if family_size else f"{c.family} family"
    tests = (
        f"Holm {fmt.p_clause(c.p_adjusted)} in the {family}; "
        f"lower in {fmt.share(c.prob_improvement, n)} seeds"
    )
    decision = c.decision
    margin = fmt.margin(c.margin)
    if decision in (stats.BETTER, stats.WORSE):
        also = f"; within {margin}" if c.equivalent else ""
        return f"{decision} than {c.reference}: {effect_clause(c)}, {tests}{also}"
    if decision == stats.EQUIVALENT:
        return (
            f"equivalent to {c.reference} within {margin}: {effect_clause(c)}, "
            f"TOST Holm {fmt.p_clause(c.tost_p_adjusted)}; lower in "
            f"{fmt.share(c.prob_improvement, n)} seeds"
        )
    if c.significant and c.within_execution_spread:
        why = (
            f"the difference is no larger than the execution spread "
            f"({fmt.ratio(math.exp(c.execution_spread))})"
        )
    else:
        why = (
            f"neither a difference nor equivalence within {margin} is shown "
            f"(TOST Holm {fmt.p_clause(c.tost_p_adjusted)})"
        )
    return f"can't tell from {c.reference} with {fmt.seeds(n)}: {effect_clause(c)}, {tests}; {why}"


def secondary_clause(c: stats.Comparison) -> str:
    return (
        f"{fmt.METRIC_LABEL[c.metric]} (secondary, descriptive): "
        f"{effect_clause(c)}, unadjusted {fmt.p_clause(c.p)}"
    )


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _descriptive_direction(c: stats.Comparison) -> str | None:
    if c.n < 2 or not c.effect.has_ci:
        return None
    null = 1.0 if c.scale == "log" else 0.0
    if c.effect.hi < null:
        return stats.BETTER
    if c.effect.lo > null:
        return stats.WORSE
    return None


def arm_verdict(
    arm: stats.ArmSummary,
    differences: dict[str, stats.Comparison] | None,
    label: str | None = None,
    family_size: int | None = None,
) -> ArmVerdict:
    """One arm in words. label: the decision (stats.arm_decisions, or a sequential one)."""
    if arm.finished == 0 and not arm.done_seeds:
        return ArmVerdict(
            stats.NO_DATA, f"No finished runs yet (0 of {arm.expected}).", stats.NO_DATA
        )
    parts = []
    done = len(arm.done_seeds)
    if arm.diverged:
        at = (
            f", at about step {arm.diverged_at_median:.0f}"
            if fmt.is_number(arm.diverged_at_median)
            else ""
        )
        parts.append(f"Diverged in {arm.diverged} of {fmt.seeds(done)}{at}.")
    if arm.is_baseline or differences is None:
        parts.append(
            f"The reference arm: {_estimate('fid', arm.fid)}; {_estimate('kid', arm.kid)}."
        )
    else:
        fid = differences[stats.PRIMARY_METRIC]
        parts.append(f"{_capitalised(_estimate('fid', arm.fid))}.")
        parts.append(f"{_capitalised(difference_clause(fid, family_size))}.")
        for metric, c in differences.items():
            if metric == stats.PRIMARY_METRIC:
                continue
            fid_direction = fid.decision if fid.decision in (stats.BETTER, stats.WORSE) else None
            if _descriptive_direction(c) != fid_direction:
                parts.append(f"{secondary_clause(c)}.")
        if fid.pairs.imputed:
            imputed = ", ".join(f"{a}/{s} ({st})" for a, s, st in fid.pairs.imputed)
            parts.append(
                f"Scored as the worst FID ({fmt.metric('fid', fid.pairs.worst)}) under the "
                f"failure rule: {imputed}."
            )
    if arm.failures and arm.failures > arm.diverged:
        r = arm.failure_rate
        parts.append(
            f"Failed or diverged: {arm.failures} of {arm.finished} finished runs "
            f"({r.label} {fmt.percent_ci(r.lo, r.hi)})."
        )
    if done < arm.expected:
        parts.append(f"Only {done} of {arm.expected} runs finished with a score.")
    if label is None:
        label = stats.BASELINE if arm.is_baseline else stats.CANT_TELL
    return ArmVerdict(label, " ".join(parts), label)


def arm_verdicts(analysis: stats.Analysis, sequential=None) -> dict[str, ArmVerdict]:
    """Every arm's verdict. With a SequentialOutcome (dcgan.sequential), an arm's decision is
    the sequential rule's (undecided: "can't tell"), not the fixed-n test's."""
    labels = stats.arm_decisions(analysis)
    if sequential is not None:
        for arm, decision in sequential.decisions.items():
            if labels.get(arm) not in (stats.DIVERGED, stats.NO_DATA, stats.BASELINE):
                labels[arm] = stats.CANT_TELL if decision == "continue" else decision
    size = len(analysis.family)
    out = {}
    for a in analysis.arms:
        v = arm_verdict(a, analysis.differences.get(a.arm), labels[a.arm], size)
        if sequential is not None and a.arm in sequential.decisions:
            at = sequential.stopped_at.get(a.arm)
            note = (
                f"Sequential rule: {labels[a.arm]} at n={at}."
                if at
                else f"Sequential rule: undecided after looks at n={', '.join(map(str, sequential.looks_done))}."
            )
            v = replace(v, sentence=f"{v.sentence} {note}")
        out[a.arm] = v
    return out


def downgrade(
    by_arm: dict[str, ArmVerdict], arm: str, label: str, reason: str
) -> dict[str, ArmVerdict]:
    """A copy of by_arm with arm's verdict replaced by label (e.g. 'undertrained'), the reason
    first in its sentence; the statistical label is kept in `statistics`."""
    old = by_arm[arm]
    out = dict(by_arm)
    out[arm] = ArmVerdict(label, f"{reason} {old.sentence}".strip(), old.statistics or old.label)
    return out


_OVERALL_ORDER = (
    (stats.BETTER, None),
    (stats.WORSE, None),
    (stats.EQUIVALENT, "Equivalent to the baseline within {margin}"),
    (stats.CANT_TELL, "Can't tell"),
    (stats.DIVERGED, "Diverged or failed in every finished seed"),
    (stats.NO_DATA, "No finished runs"),
)


def overall_verdict(
    analysis: stats.Analysis, baseline: str, by_arm: dict[str, ArmVerdict] | None = None
) -> str:
    """One line for the index: which arms differ from the baseline on FID, family-wise."""
    by_arm = by_arm if by_arm is not None else arm_verdicts(analysis)
    if all(v.label == stats.NO_DATA for v in by_arm.values()):
        return "No finished runs yet."
    by_label: dict[str, list[str]] = {}
    for arm, verdict in by_arm.items():
        by_label.setdefault(verdict.label, []).append(arm)
    resolved = [
        f"{arm} {label}" for label in (stats.BETTER, stats.WORSE) for arm in by_label.get(label, [])
    ]
    n = len(analysis.family)
    family = f"Holm over {n} arm{'' if n == 1 else 's'}"
    parts = [
        f"Resolved vs {baseline} on FID ({family}): {', '.join(resolved)}"
        if resolved
        else f"No arm differs resolvably from {baseline} on FID ({family})"
    ]
    known = {label for label, _ in _OVERALL_ORDER} | {stats.BASELINE}
    for label, title in _OVERALL_ORDER:
        if title and by_label.get(label):
            parts.append(
                f"{title.format(margin=fmt.margin(analysis.margin))}: {', '.join(by_label[label])}"
            )
    for label, arms in by_label.items():  # labels other modules added (e.g. undertrained)
        if label not in known:
            parts.append(f"{_capitalised(label)}: {', '.join(arms)}")
    return ". ".join(parts) + "."


# ---------------------------------------------------------------------------------------------
# Claims


def _measured_column(runs: pd.DataFrame, key: str) -> str | None:
    for column in (key, f"final_{key}"):
        if column in runs.columns:
            return column
    return None


def reported_vs_measured(claim: Claim, runs: pd.DataFrame) -> str:
    """'g loss: reported 27, measured 45.2 (mean of 3 seeds)' for each value the document gives.

    Only for claims in scope: figures from other data or recipes are listed, not compared.
    """
    if not claim.reported:
        return ""
    reported = ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in claim.reported.items())
    if claim.arm is None or not claim.in_scope:
        return f"{claim.source} reported: {reported} (not compared with ours: other conditions)."
    done = stats.scored(stats.primary_runs(runs[runs["arm"] == claim.arm]))
    pieces = []
    for key, value in claim.reported.items():
        column = _measured_column(done, key)
        measured = stats.mean_ci(done[column]) if column else stats.mean_ci([])
        ours = (
            f"measured {fmt.general(measured.center)} (mean of {fmt.seeds(measured.n)})"
            if measured.n
            else "not measured"
        )
        pieces.append(f"{key.replace('_', ' ')}: reported {value:g}, {ours}")
    note = f" {LOSS_NOTE}" if any("loss" in k for k in claim.reported) else ""
    return f"{claim.arm}: " + "; ".join(pieces) + "." + note


def conditions(claim: Claim, margin: float) -> str:
    """'measure fid · recipe pokemon · data ... · margin ±10% · scope in'."""
    parts = []
    if claim.measure:
        parts.append(f"measure {claim.measure}")
    for key in ("recipe", "data", "budget"):
        if getattr(claim, key):
            parts.append(f"{key} {getattr(claim, key)}")
    if claim.kind in ("better", "not_better"):
        parts.append(f"margin {fmt.margin(claim.margin if claim.margin is not None else margin)}")
    if claim.criterion:
        parts.append("criterion " + _criterion_text(claim.criterion))
    parts.append("scope in" if claim.in_scope else f"scope out: {claim.out_of_scope_reason}")
    return " · ".join(parts)


def _criterion_text(criterion: dict[str, float]) -> str:
    words = {"g_loss_above": "final G loss > {:g}", "d_loss_below": "final D loss < {:g}"}
    return " and ".join(words[k].format(v) for k, v in criterion.items())


def _meets_criterion(criterion: dict[str, float], g_loss: float, d_loss: float) -> bool:
    ok = True
    if "g_loss_above" in criterion:
        ok &= math.isfinite(g_loss) and g_loss > criterion["g_loss_above"]
    if "d_loss_below" in criterion:
        ok &= math.isfinite(d_loss) and d_loss < criterion["d_loss_below"]
    return bool(ok)


def scope_problem(claim: Claim, results: AblationResults) -> str:
    """Why the claim cannot be tested here ('' when it can): declared or from its conditions."""
    if not claim.in_scope:
        return claim.out_of_scope_reason
    data = str(results.setup.get("data", "") or "")
    if claim.data and data and claim.data != data:
        return f"claimed on {claim.data}; this ablation trains on {data}"
    if claim.recipe:
        arm_recipe = results.arms.get(claim.arm or "", {}).get("recipe")
        ours = arm_recipe or results.setup.get("base recipe")
        if ours and claim.recipe != ours:
            return f"claimed under the {claim.recipe} recipe; this ablation uses {ours}"
    return ""


@dataclass(frozen=True)
class _Test:
    claim: Claim
    p: float  # the test that decides agree/disagree
    tost_p: float = float("nan")
    comparison: stats.Comparison | None = None
    failures: int = 0
    finished: int = 0


def _failures(claim: Claim, results: AblationResults) -> tuple[int, int]:
    rows = stats.primary_runs(results.runs)
    rows = rows[(rows["arm"] == claim.arm) & rows["status"].isin(stats.FINISHED_STATUSES)]
    k = 0
    for status, fid, g, d in zip(
        rows["status"],
        pd.to_numeric(rows["fid"], errors="coerce"),
        pd.to_numeric(rows["final_g_loss"], errors="coerce"),
        pd.to_numeric(rows["final_d_loss"], errors="coerce"),
        strict=True,
    ):
        failed = stats.is_failure(str(status), float(fid))
        if claim.criterion:
            failed = failed or _meets_criterion(claim.criterion, float(g), float(d))
        k += bool(failed)
    return k, len(rows)


def _claim_test(claim: Claim, results: AblationResults, margin: float) -> _Test:
    if claim.kind == "diverges":
        k, n = _failures(claim, results)
        more, fewer = stats.binomial_majority_p(k, n)
        return _Test(claim, min(more, fewer) if n else float("nan"), failures=k, finished=n)
    c = stats.compare(
        results.runs, claim.arm, claim.vs or results.baseline, "fid",
        family=stats.CLAIMS, margin=claim.margin if claim.margin is not None else margin,
    )  # fmt: skip
    return _Test(claim, c.p, c.tost_p, c)


def _fid_claim_verdict(
    t: _Test, p_adj: float, q_adj: float, spread: float, size: int
) -> tuple[str, str]:
    c = replace(t.comparison, p_adjusted=p_adj, tost_p_adjusted=q_adj, execution_spread=spread)
    if c.n < 2:
        return CANT_TELL, f"Fewer than 2 seeds finished in both {c.arm} and {c.reference}."
    decision = c.decision
    if t.claim.kind == "better":
        verdict = (
            AGREE if decision == stats.BETTER
            else DISAGREE if decision in (stats.WORSE, stats.EQUIVALENT)
            else CANT_TELL
        )  # fmt: skip
    else:  # not_better: needs evidence, a resolved 'worse' or equivalence
        if decision == stats.BETTER and not c.equivalent:
            verdict = DISAGREE
        elif decision in (stats.WORSE, stats.EQUIVALENT) or (
            decision == stats.BETTER and c.equivalent
        ):
            verdict = AGREE
        else:
            verdict = CANT_TELL
    measured = (
        f"{c.arm} vs {c.reference}: {effect_clause(c)}; Holm {fmt.p_clause(c.p_adjusted)} and "
        f"TOST within {fmt.margin(c.margin)} Holm {fmt.p_clause(c.tost_p_adjusted)} in the claims "
        f"family of {size}; lower in {fmt.share(c.prob_improvement, c.n)} seeds"
    )
    return verdict, f"{measured}: {decision}."


def _criterion_against_document(claim: Claim) -> str:
    g, d = claim.reported.get("g_loss", math.nan), claim.reported.get("d_loss", math.nan)
    meets = _meets_criterion(claim.criterion, g, d)
    return (
        f"Failure criterion: {_criterion_text(claim.criterion)}; {claim.source}'s own figures "
        f"(G {g:g}, D {d:g}) {'meet' if meets else 'would not meet'} it."
    )


def _divergence_verdict(t: _Test, p_adj: float) -> tuple[str, str]:
    claim, k, n = t.claim, t.failures, t.finished
    if n == 0:
        return CANT_TELL, f"{claim.arm} has no finished runs."
    rate = stats.clopper_pearson(k, n)
    rule = "failed or diverged (the training loop's rule)"
    if claim.criterion:
        rule += f", or ended with {_criterion_text(claim.criterion)}"
    text = (
        f"{claim.arm}: {k} of {n} finished runs {rule}: {fmt.percent(rate.center)}, "
        f"{rate.label} {fmt.percent_ci(rate.lo, rate.hi)}; exact binomial test of 'most seeds "
        f"fail', Holm {fmt.p_clause(p_adj)} in the claims family."
    )
    if claim.criterion and claim.reported:
        g, d = claim.reported.get("g_loss", math.nan), claim.reported.get("d_loss", math.nan)
        if not _meets_criterion(claim.criterion, g, d):
            return CANT_TELL, (
                f"The criterion ({_criterion_text(claim.criterion)}) would not classify "
                f"{claim.source}'s own figures (G {g:g}, D {d:g}) as a failure, so it cannot "
                f"test this claim. {text}"
            )
        text += f" {claim.source}'s own figures (G {g:g}, D {d:g}) meet the criterion."
    if p_adj < stats.ALPHA:
        return (AGREE if 2 * k > n else DISAGREE), text
    return CANT_TELL, text


def claim_verdicts(results: AblationResults, analysis: stats.Analysis) -> list[ClaimVerdict]:
    """Every claim: out of scope (with why), context, or tested in the claims family (Holm)."""
    margin = analysis.margin
    arms = {a.arm for a in analysis.arms}
    out: dict[int, ClaimVerdict] = {}
    tests: dict[int, _Test] = {}
    for i, claim in enumerate(results.claims):
        if claim.kind not in CLAIM_KINDS:
            raise ValueError(f"claim kind {claim.kind!r} is not one of {', '.join(CLAIM_KINDS)}")
        cond = conditions(claim, margin)
        reported = reported_vs_measured(claim, results.runs)
        problem = scope_problem(claim, results)
        if problem:
            if claim.criterion and claim.reported:
                reported += " " + _criterion_against_document(claim)
            out[i] = ClaimVerdict(
                claim, OUT_OF_SCOPE if claim.kind != "info" else None,
                f"Out of scope here: {problem}. {reported}".strip(), cond,
            )  # fmt: skip
            continue
        if claim.kind == "info":
            out[i] = ClaimVerdict(
                claim, None, reported or "Context only; nothing to measure.", cond
            )
            continue
        needed = (
            [claim.arm] if claim.kind == "diverges" else [claim.arm, claim.vs or results.baseline]
        )
        missing = [a for a in needed if a not in arms]
        if missing:
            out[i] = ClaimVerdict(
                claim, CANT_TELL, f"Arm {missing[0]!r} is not in this ablation.", cond
            )
            continue
        tests[i] = _claim_test(claim, results, margin)
    keys = list(tests)
    p_adj = dict(zip(keys, stats.holm([tests[i].p for i in keys]), strict=True))
    fid_keys = [i for i in keys if tests[i].comparison is not None]
    q_adj = dict(zip(fid_keys, stats.holm([tests[i].tost_p for i in fid_keys]), strict=True))
    spread = analysis.execution.rms if analysis.execution else float("nan")
    for i in keys:
        t = tests[i]
        if t.comparison is not None:
            verdict, sentence = _fid_claim_verdict(t, p_adj[i], q_adj[i], spread, len(keys))
        else:
            verdict, sentence = _divergence_verdict(t, p_adj[i])
        reported = reported_vs_measured(t.claim, results.runs)
        out[i] = ClaimVerdict(
            t.claim, verdict, f"{sentence} {reported}".strip(), conditions(t.claim, margin),
            stats.FAMILY_DESCRIPTION[stats.CLAIMS],
        )  # fmt: skip
    return [out[i] for i in range(len(results.claims))]


def claim_verdict(claim: Claim, results: AblationResults, analysis: stats.Analysis) -> ClaimVerdict:
    """One claim tested alone (a family of one)."""
    single = replace(results, claims=[claim])
    return claim_verdicts(single, analysis)[0]


__all__ = [
    "AGREE", "DISAGREE", "CANT_TELL", "OUT_OF_SCOPE", "ArmVerdict", "ClaimVerdict",
    "arm_verdict", "arm_verdicts", "downgrade", "overall_verdict", "claim_verdicts",
    "claim_verdict", "difference_clause", "reported_vs_measured",
]  # fmt: skip
