"""Ablation studies as optuna-dashboard shows them: every trial readable, the plots working.

An ablation is one Optuna study whose trials are enqueued runs (dcgan/store.py). Left alone the
dashboard shows "Objective 0", "Trial 0..17" and empty plots; this module gives it:

- metric names: the objective is the FID under the profile's protocol (e.g. `fid_mnist_1k`);
- parameters: every factor the spec varies (a RunConfig field whose value differs between the
  arms) and the seed, set on the waiting trials when they are enqueued, with distributions
  Optuna accepts for every later trial too: int/float factors as Int/FloatDistribution over
  the values the plan uses, anything else as CategoricalDistribution over its values in plan
  order. Hyperparameter importance and slice plots then work.
- intermediate values: the FID at every scored snapshot, at the images seen there (the x axis
  tuning trials have too);
- a note per finished trial, "arm X · seed k", with its factors, scores and run folder;
- the rendered report, attached to the study as one artifact that each final render replaces.

Nothing here may stop an ablation: every function logs and gives up on an error.

`dcgan dashboard` (`command_dashboard`) serves optuna-dashboard over the store: ablations and
tuning studies alike, on loopback unless --host says otherwise.
"""

from __future__ import annotations

import argparse
import io
import ipaddress
import json
import math
import socket
import sys
import uuid
from pathlib import Path

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    check_distribution_compatibility,
)
from optuna.trial import TrialState

ARTIFACTS_ATTR_PREFIX = "artifacts:"  # optuna.artifacts' study system attribute per artifact
REPORT_FILENAME = "report.html"


def _distribution(values: list) -> BaseDistribution:
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) == len(values) and all(math.isfinite(v) for v in numbers):
        if all(isinstance(v, int) for v in numbers):
            return IntDistribution(min(numbers), max(numbers))
        return FloatDistribution(float(min(numbers)), float(max(numbers)))
    return CategoricalDistribution(list(values))


def factor_distributions(planned: list) -> dict[str, BaseDistribution]:
    from .collect import factor_values

    arms = [run for run in planned if not getattr(run, "execution", False)]  # not replicates
    out = {name: _distribution(values) for name, values in factor_values(arms).items()}
    seeds = sorted({run.seed for run in planned})
    out["seed"] = IntDistribution(min(seeds), max(seeds))
    return out


def _study_distributions(study: optuna.Study) -> dict[str, BaseDistribution]:
    seen: dict[str, BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, dist in trial.distributions.items():
            seen.setdefault(name, dist)
    return seen


def _compatible(dists: dict, study: optuna.Study, log) -> dict[str, BaseDistribution]:
    """The distributions Optuna will accept beside the study's earlier trials.

    A spec's factors can change under a study: a new budget changes an equal-steps arm's
    `steps` from 750 to 1,375, and Optuna refuses a categorical whose choices differ from the
    study's. Such a factor keeps the study's distribution when it covers every new value;
    otherwise it is left off the new trials (said once), so the others still reach the
    dashboard."""
    seen = _study_distributions(study)
    out = {}
    for name, dist in dists.items():
        old = seen.get(name)
        try:
            if old is not None:
                check_distribution_compatibility(old, dist)
            out[name] = dist
        except ValueError:
            if isinstance(old, CategoricalDistribution) and isinstance(dist, CategoricalDistribution) and set(dist.choices) <= set(old.choices):  # fmt: skip
                out[name] = old
            else:
                log(f"dashboard: factor {name!r} not set on new trials: its values {list(getattr(dist, 'choices', []))} differ from those of the study's earlier trials {list(getattr(old, 'choices', []))}, and Optuna allows one set per study")  # fmt: skip
    return out


def _param_values(config: dict, seed: int, names) -> dict:
    return {name: (seed if name == "seed" else config.get(name)) for name in names}


def set_trial_params(study: optuna.Study, storage, planned: list, log=print) -> int:
    """Give every waiting trial without parameters its factors and seed; returns how many."""
    try:
        dists = _compatible(factor_distributions(planned), study, log)
        by_key = {(r.arm, r.seed, r.config.hash()): r for r in planned}
        count = 0
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            attrs = t.user_attrs
            run = by_key.get((attrs.get("arm"), attrs.get("seed"), attrs.get("config_hash")))
            if run is None or t.params:
                continue
            values = _param_values(run.config.to_dict(), run.seed, dists)
            for name, dist in dists.items():
                value = values[name]
                if isinstance(dist, FloatDistribution):
                    value = float(value)
                storage.set_trial_param(t._trial_id, name, dist.to_internal_repr(value), dist)
            count += 1
        return count
    except Exception as err:  # e.g. a spec whose factors changed since the study was made
        log(f"dashboard: trial parameters not set ({type(err).__name__}: {err})")
        return 0


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trial_note(trial, attrs: dict) -> str:
    """Markdown: "arm X · seed k", the factors, the scores and where the run lives."""
    user = trial.user_attrs if hasattr(trial, "user_attrs") else {}
    arm, seed = user.get("arm", "?"), user.get("seed", "?")
    result, scores = attrs.get("result") or {}, attrs.get("scores") or {}
    lines = [f"## arm {arm} · seed {seed}", ""]
    fid = scores.get("fid")
    metric = scores.get("fid_metric", "fid")
    status = result.get("status", attrs.get("status", "?"))
    summary = f"**{status}**"
    if isinstance(fid, int | float) and math.isfinite(fid):
        summary += f", {metric} **{fid:.1f}**"
    if result.get("steps_done") is not None:
        summary += f" after {result['steps_done']} of {result.get('total_steps', '?')} steps"
    if result.get("images_per_s"):
        summary += f" ({result['images_per_s']:,.0f} img/s, {result.get('wall_s', 0):.0f} s)"
    lines += [summary, ""]
    if result.get("divergence_reason"):
        lines += [f"Diverged at step {result.get('diverged_at_step')}: {result['divergence_reason']}", ""]  # fmt: skip
    params = getattr(trial, "params", {}) or {}
    if params:
        lines += ["| factor | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in params.items()]
        lines.append("")
    lines.append(
        f"config `{user.get('config_hash', '?')}` · run folder `{attrs.get('run_dir', '?')}`"
    )
    return "\n".join(lines)


def record_run(trial: optuna.Trial, attrs: dict, log=print) -> None:
    """In the worker, once a run is scored: metric names, FID per snapshot, the trial's note."""
    try:
        scores = attrs.get("scores") or {}
        metric = scores.get("fid_metric")
        if metric and trial.study.metric_names != [metric]:
            trial.study.set_metric_names([metric])
        for images, value in attrs.get("fid_curve") or []:  # [images seen, FID] (runner)
            if images is not None and isinstance(value, int | float) and math.isfinite(value):
                trial.report(float(value), int(images))
        import optuna_dashboard

        optuna_dashboard.save_note(trial, trial_note(trial, attrs))
    except Exception as err:
        log(f"dashboard: trial {trial.number} not annotated ({type(err).__name__}: {err})")


def attach_report(study: optuna.Study, page: Path, artifacts_dir: Path, log=print) -> None:
    """The report as the study's artifact: one per study, replaced (same id) on each render."""
    try:
        from . import store

        artifact_store = store.artifact_store(artifacts_dir)
        artifact_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"dcgan-report:{study.study_name}"))
        artifact_store.write(artifact_id, io.BytesIO(Path(page).read_bytes()))
        meta = {
            "artifact_id": artifact_id,
            "filename": Path(page).name if Path(page).name else REPORT_FILENAME,
            "mimetype": "text/html",
            "encoding": None,
        }
        study._storage.set_study_system_attr(
            study._study_id, ARTIFACTS_ATTR_PREFIX + artifact_id, json.dumps(meta)
        )
    except Exception as err:
        log(f"dashboard: report not attached to {study.study_name} ({type(err).__name__}: {err})")


# ---- the command ---------------------------------------------------------------------------
def dashboard_args(argv: list[str]) -> argparse.Namespace:
    from .cli_args import command_parser

    return command_parser("dashboard").parse_args(argv)


def is_loopback(host: str) -> bool:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
        return all(ipaddress.ip_address(a).is_loopback for a in addresses)
    except (socket.gaierror, ValueError):
        return False


def command_dashboard(argv: list[str]) -> int:
    """optuna-dashboard, on loopback unless --host says otherwise: it has no authentication
    and can edit the store."""
    import optuna_dashboard

    from . import store
    from .cli_args import _paths, _storage
    from .locations import storage_url

    args = dashboard_args(argv)
    paths = _paths(args)
    url = storage_url(_storage(args), paths)
    args.artifact_dir = args.artifact_dir or paths.artifacts
    if not is_loopback(args.host):
        print(f"warning: --host {args.host} is not loopback: the dashboard has no authentication and can edit the store; anyone who reaches it can", file=sys.stderr)  # fmt: skip
    print(f"optuna-dashboard on http://{args.host}:{args.port} over {store.redact(url)}, artifacts in {args.artifact_dir}", flush=True)  # fmt: skip
    optuna_dashboard.run_server(
        store.open_storage(url),
        host=args.host,
        port=args.port,
        artifact_store=store.artifact_store(args.artifact_dir),
    )
    return 0
