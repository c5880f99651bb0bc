"""The notebook API: an ablation's results as one tidy table, in one call.

    import dcgan
    table, results = dcgan.load_results("activation")            # the cpu profile
    table.groupby(["g_activation", "d_activation"])["fid"].mean()

`table` has one row per planned run (arm x seed, unfinished ones included with their status)
and the columns: ablation, profile, arm, seed, one column per factor the spec varies (named
after its RunConfig field, e.g. g_activation), status, every score (fid, kid, kid_std, modes,
kl, ...), then the rest of the run's record (steps, wall time, img/s, final losses, metric
names, config hash) and run_dir, the run's folder. `results` is the AblationResults the report
renders (curves, grids, protocol, floor, setup, claims).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

from .config import ConfigError
from .locations import reports_dir, results_dir
from .results import AblationResults

LEAD_COLUMNS = ["ablation", "profile", "arm", "seed"]
SCORE_COLUMNS = ["status", "fid", "kid", "kid_std", "precision", "recall", "modes", "kl"]


class Loaded(NamedTuple):
    table: pd.DataFrame
    results: AblationResults


def tidy_table(results: AblationResults, factors: list[str], runs_dir: Path) -> pd.DataFrame:
    frame = results.runs.copy()
    frame.insert(0, "ablation", results.name.removesuffix("-" + results.profile))
    frame.insert(1, "profile", results.profile)
    frame["run_dir"] = [str(Path(runs_dir) / h) for h in frame["config_hash"]]
    lead = LEAD_COLUMNS + [f for f in factors if f in frame.columns]
    scores = [c for c in SCORE_COLUMNS if c in frame.columns and c not in lead]
    rest = [c for c in frame.columns if c not in lead and c not in scores]
    return frame[lead + scores + rest].reset_index(drop=True)


def load_results(
    name: str,
    profile: str = "cpu",
    *,
    results: str | Path | None = None,
    storage: str | None = None,
    seeds: list[int] | None = None,
    data: str | None = None,
) -> Loaded:
    """(table, results) of ablation `name` under `profile`, read from the store; trains nothing.

    `results`: the results folder (default $DCGAN_RESULTS, else ./results); `storage`: an
    Optuna storage URL (default $DCGAN_STORAGE, else RESULTS/store.db); `seeds`, `data`: as
    given to `dcgan ablate` (the study of `--data X` is a different one).
    """
    import optuna

    from . import store
    from .collect import collect_results, factor_values, store_error
    from .locations import Paths, storage_url, study_name
    from .specs import load_spec

    paths = Paths(results_dir(results), reports_dir())
    url = storage_url(storage, paths)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
        raise ConfigError(
            f"no result store at {url[len('sqlite:///') :]}: run `dcgan ablate {name} --profile "
            f"{profile}` first, or pass results=/path/to/results (or set $DCGAN_RESULTS)"
        )
    spec = load_spec(name)
    opened = store.open_storage(url)
    sname = study_name(spec, profile, data)
    try:
        study = optuna.load_study(study_name=sname, storage=opened)
    except KeyError:
        known = {
            s.study_name for s in optuna.get_all_study_summaries(opened, include_best_trial=False)
        }
        raise store_error(name, profile, url, known) from None
    loaded = collect_results(spec, profile, study, opened, paths, seeds=seeds, data=data)
    factors = list(factor_values(spec.plan(profile, seeds, data)))
    return Loaded(tidy_table(loaded, factors, paths.runs), loaded)
