"""`dcgan tune SPACE`: Optuna searches RunConfig overrides for the best FID.

The search space is a TOML file (ablations/tune_*.toml), validated like an ablation spec
(dcgan/tune_space.py). Trials live in the same store as ablations: SQLite under results/, or
PostgreSQL to share one study between machines. The trial budget belongs to the study, not to
a process: `--trials N` tops the study up to N trials (finished, running and waiting ones count;
dcgan/tune_study.py) and every worker, on any machine, claims waiting trials with the store's
compare-and-set until none is left, so N trials run, each once, however many workers take part.
Workers are the ablations' engine (dcgan/worker.py); a trial trains a planned, content-addressed
run in results/runs/<config hash>, scored like an ablation's (dcgan/tune_trial.py). A worker that
dies leaves its trial RUNNING: the store's heartbeats (or, on the same host, its dead pid) fail
it and Optuna's RetryHeartbeatStaleTrialCallback enqueues it again with the same parameters,
and the retry resumes the run from its checkpoint. `dcgan dashboard` (dcgan/dashboard.py)
shows the studies.

Modules, lowest first: tune_space (the schema) <- tune_study (the study: set-up, budget, best
trial) <- tune_trial (one trial; worker processes) <- tune (this command).
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna
from optuna.trial import TrialState

from . import store
from .config import ConfigError
from .data import load_images
from .locations import Paths
from .locations import storage_url as resolve_storage
from .tune_space import load_space
from .tune_study import export_best, open_study, top_up
from .tune_trial import TuneJob, work
from .worker import spawn_workers


def run_tuning(
    space_name: str | Path,
    n_trials: int,
    profile: str = "cpu",
    *,
    workers: int = 1,
    storage_url: str | None = None,
    paths: Paths | None = None,
    threads: int | None = None,
    log=print,
) -> optuna.Study:
    """Top the study up to n_trials and run workers (each on `threads` torch threads, by
    default its share of the cores) until no trial is waiting."""
    import optuna_dashboard

    from .metrics.fidelity import reference_features

    space, paths = load_space(space_name), paths or Paths()
    obj = space.profile(profile).objective
    url = resolve_storage(storage_url, paths)
    storage = store.open_storage(url)
    study = open_study(space, profile, storage)
    # The real features, computed once here and cached for every worker; a missing dataset or
    # a broken extractor fails now rather than in each trial.
    base = space.config(profile, {})
    images = load_images(base.data, base.image_size, base.channels)
    protocol = obj.protocol(images)
    reference_features(images, protocol)
    study.set_metric_names(obj.metric_names(protocol))
    study.set_user_attr("space_file", str(space.path))
    study.set_user_attr("base_recipe", space.base_recipe)
    study.set_user_attr("profile", profile)
    study.set_user_attr(
        "search_space", {n: [list(p.fields), p.describe()] for n, p in space.params.items()}
    )
    if optuna_dashboard.get_note(study) != space.note(profile):
        optuna_dashboard.save_note(study, space.note(profile))
    added = top_up(study, storage, n_trials, space.reference)
    log(
        f"{study.study_name}: budget {n_trials} trials, {added} newly queued, store {store.redact(url)}"
    )
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    jobs = [TuneJob(str(space.path), profile, url, paths, threads, i) for i in range(workers)]
    if workers == 1:
        work(jobs[0], log, images={(base.data, base.image_size, base.channels): images})
    else:
        spawn_workers(work, jobs, "dcgan-tune", log)
    counts = {
        s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState
    }
    log(f"{study.study_name}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return study


def command_tune(argv: list[str]) -> int:
    from .cli_args import _paths, _storage, command_parser

    p = command_parser("tune")
    args = p.parse_args(argv)
    if args.trials is None and args.export_best is None:
        p.error("give --trials N, --export-best PATH, or both")
    if args.trials is not None and args.trials < 1:
        raise ConfigError(f"--trials {args.trials}: must be >= 1")
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: must be >= 1")
    space = load_space(args.space)
    name = space.study_name(space.profile(args.profile).name)
    paths, storage_url = _paths(args), _storage(args)
    if args.trials is not None:
        study = run_tuning(
            space.path, args.trials, args.profile, workers=args.workers, storage_url=storage_url,
            paths=paths,
        )  # fmt: skip
    else:
        try:
            study = optuna.load_study(
                study_name=name, storage=store.open_storage(resolve_storage(storage_url, paths))
            )
        except KeyError:
            raise ConfigError(
                f"no study {name!r} in the store yet: run with --trials N first"
            ) from None
    if args.export_best is not None:
        source = export_best(study, args.export_best)["source"]
        print(
            f"best: trial {source['trial']}, {source['score']} -> {args.export_best} (--recipe {args.export_best})"
        )
    return 0
