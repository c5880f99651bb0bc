"""What an ablation will do before it does it: `dcgan ablate NAME --dry-run`, and the ETA model.

For every planned (arm, seed) run: its config hash, budget, and whether it is already done
(completed in this ablation's study), trained (its run folder holds a result: another ablation
trained the same config, so only scoring and recording are left), part-trained (a checkpoint),
waiting or running in the store, or new. The store is read if it exists and never created.

Estimated cost per run = images to train / img/s + scoring at every snapshot + a fixed start-up:
- img/s: the median of finished runs in the store with the same config apart from the seed and
  budget; else of finished runs with the same image size, channels, widths and batch size; else
  DEFAULT_IMG_S (cpu_default, a 1-thread worker beside another) scaled by
  (32 / image size)^2 x (32 / mean width), at most MAX_DEFAULT_IMG_S, and by
  WIDER_ALONE_FACTOR for a run on its own thread count above one (an execution replicate, which
  trains alone on the host). A worker trains on cores / workers threads; measured rates are per
  worker as recorded.
- scoring, per snapshot and 1,000 fakes: SAMPLE_S_PER_1K to generate them once, plus
  FEATURE_S_PER_1K for each feature space scored (its features and metrics). Measured on one
  thread (docs/performance.md, session 5): generation 0.46 s, `mnist` 0.24 s (the class
  histogram included), `randcnn` 0.53 s; `inception` ~6.5 img/s on 2 CPU cores, ~1,000 on a GPU.
The wall-time estimate divides the total by the workers, apart from the runs that train alone.
ETA during a run rescales the same model by the speed actually observed (dcgan/progress.py).
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .rundir import RunDir

# cpu_default (32x32, widths 32, batch 64): a 1-thread worker beside another on the 2 cores, the
# median of 30 such runs of a fresh `activation` ablation (docs/performance.md, session 5).
DEFAULT_IMG_S = 520.0
# A run on more threads than its worker's share of the cores (an execution replicate) runs alone
# on the host (runner.alone_if_wider): one 2-thread run alone trains at 974 img/s (session 5
# layout measure), 1.87x a 1-thread worker beside another. Its wall time is not shared.
WIDER_ALONE_FACTOR = 1.87
MAX_DEFAULT_IMG_S = 4000.0  # tiny nets are bounded by per-step overhead, not FLOPs
SAMPLE_S_PER_1K = 0.46  # cpu_default's G, 1,000 fakes, one thread
FEATURE_S_PER_1K = {"mnist": 0.24, "randcnn": 0.53, "inception": 155.0}  # CPU; see score_seconds
INCEPTION_CUDA_S_PER_1K = 1.0
RUN_OVERHEAD_S = 2.0  # claim, data from the cache, model build, store writes, artifacts
BUDGET_FIELDS = {"seed", "kimg", "steps", "data"}
CADENCE_FIELDS = {"device", "log_every", "grid_every", "snapshot_every", "checkpoint_every"}

STATUS_ORDER = ("done", "running", "waiting", "trained", "partial", "new", "failed")


@dataclass
class PlanRow:
    arm: str
    seed: int
    config_hash: str
    steps: int
    batch_size: int
    status: str  # see STATUS_ORDER
    steps_done: int = 0
    img_s: float = 0.0
    rate_source: str = ""
    est_s: float = 0.0  # seconds left for this run (0 when done)
    replicate: bool = False  # an execution replicate (same arm and seed, another thread count)

    @property
    def kimg(self) -> float:
        return self.steps * self.batch_size / 1000


@dataclass
class Plan:
    name: str
    profile: str
    study_name: str
    store: str  # redacted URL, or a note that there is none yet
    rows: list[PlanRow]
    workers: int
    extractors: tuple[str, ...]
    n_fake: int
    notes: list[str] = field(default_factory=list)

    @property
    def todo(self) -> list[PlanRow]:
        return [r for r in self.rows if r.status != "done"]

    @property
    def est_total_s(self) -> float:
        return sum(r.est_s for r in self.rows)

    @property
    def est_wall_s(self) -> float:
        alone = sum(r.est_s for r in self.rows if r.replicate) if self.workers > 1 else 0.0
        shared = [r for r in self.todo if not (r.replicate and self.workers > 1)]
        return alone + (self.est_total_s - alone) / max(1, min(self.workers, len(shared) or 1))


def arm_key(config: dict) -> str:
    """The config apart from seed, data, budget and cadence: what sets a run's speed."""
    ignored = BUDGET_FIELDS | CADENCE_FIELDS
    return json.dumps({k: v for k, v in sorted(config.items()) if k not in ignored})


def shape_key(config: dict) -> tuple:
    """What sets a run's speed apart from its recipe: tensor shapes and its own thread count."""
    keys = ("image_size", "channels", "g_width", "d_width", "batch_size", "threads")
    return tuple(config.get(k) for k in keys)


def default_img_s(config: dict) -> float:
    size = config.get("image_size", 32)
    width = (config.get("g_width", 32) + config.get("d_width", 32)) / 2
    # Pixels scale the cost; narrower nets save less than their FLOPs (small convolutions run
    # far below the CPU's peak): `recipes` at 64x64 with widths 16 trained at 263 img/s beside
    # another worker (session 6), where (32 / width)^2 predicted 520 and (32 / width) 260.
    rate = min(MAX_DEFAULT_IMG_S, DEFAULT_IMG_S * (32 / size) ** 2 * (32 / width))
    return rate * (WIDER_ALONE_FACTOR if config.get("threads", 0) > 1 else 1.0)


@dataclass
class Rates:
    """Measured training img/s of finished runs in the store, by arm key and by shape."""

    by_arm: dict[str, list[float]] = field(default_factory=dict)
    by_shape: dict[tuple, list[float]] = field(default_factory=dict)

    def add(self, config: dict, img_s: float) -> None:
        if not (isinstance(img_s, int | float) and math.isfinite(img_s) and img_s > 0):
            return
        self.by_arm.setdefault(arm_key(config), []).append(float(img_s))
        self.by_shape.setdefault(shape_key(config), []).append(float(img_s))

    def rate(self, config: dict) -> tuple[float, str]:
        same = self.by_arm.get(arm_key(config))
        if same:
            return statistics.median(same), f"measured ({len(same)} runs of this config)"
        similar = self.by_shape.get(shape_key(config))
        if similar:
            return statistics.median(similar), f"measured ({len(similar)} runs of this shape)"
        return default_img_s(config), "default"


def measured_rates(storage) -> Rates:
    """Every finished ablation run in the store (any ablation: rates depend on the config only)."""
    import optuna
    from optuna.trial import TrialState

    rates = Rates()
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if not summary.study_name.startswith("ablate/"):
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            config, result = t.user_attrs.get("config"), t.user_attrs.get("result") or {}
            if config and result.get("steps_done"):
                rates.add(config, result.get("images_per_s"))
    return rates


@dataclass(frozen=True)
class TimeSplit:
    """Where the wall time of an ablation's runs went (runs trained start to finish in one go)."""

    runs: int
    median_run_s: float  # claim to tell
    median_training_s: float  # the run's own training clock
    not_training_share: float  # of the runs' summed wall time: scoring, store writes, uploads

    def describe(self) -> str:
        return (
            f"time per run ({self.runs} runs trained start to finish here): median "
            f"{self.median_run_s:.0f} s, of which training {self.median_training_s:.0f} s; "
            f"{self.not_training_share:.0%} of the runs' time was not training (scoring every "
            f"snapshot, store writes, uploads)"
        )


def time_split(study) -> TimeSplit | None:
    """The trial's wall clock (claimed to told) against the run's own training clock, over the
    completed trials that trained their run from step 0: a re-used run (trained for another
    ablation) or a resumed one (its clock carries earlier launches) would read as negative."""
    from optuna.trial import TrialState

    pairs = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        result = t.user_attrs.get("result") or {}
        training = result.get("wall_s")
        if not (t.datetime_start and t.datetime_complete and isinstance(training, int | float)):
            continue
        total = (t.datetime_complete - t.datetime_start).total_seconds()
        if result.get("steps_done") and 0 < training <= total:
            pairs.append((total, float(training)))
    if not pairs:
        return None
    totals, trainings = zip(*pairs, strict=True)
    return TimeSplit(
        runs=len(pairs),
        median_run_s=statistics.median(totals),
        median_training_s=statistics.median(trainings),
        not_training_share=1 - sum(trainings) / sum(totals),
    )


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def score_seconds(config: dict, extractors: str | Sequence[str], n_fake: int) -> float:
    """Scoring every snapshot of one run in every feature space (the real features are cached):
    the fakes are generated once per snapshot and featurised once per space."""
    steps = _total_steps(config)
    snapshots = math.ceil(steps / max(1, config.get("snapshot_every", steps)))
    per_1k = SAMPLE_S_PER_1K
    for extractor in [extractors] if isinstance(extractors, str) else extractors:
        per_1k += FEATURE_S_PER_1K.get(extractor, FEATURE_S_PER_1K["mnist"])
        if extractor == "inception" and (config.get("device") == "cuda" or cuda_available()):
            per_1k += INCEPTION_CUDA_S_PER_1K - FEATURE_S_PER_1K["inception"]
    return snapshots * per_1k * n_fake / 1000


def _total_steps(config: dict) -> int:
    if config.get("steps"):
        return int(config["steps"])
    return max(1, math.ceil(config.get("kimg", 20.0) * 1000 / config.get("batch_size", 64)))


def run_seconds(
    config: dict,
    img_s: float,
    extractors: str | Sequence[str],
    n_fake: int,
    steps_done: int = 0,
) -> float:
    left = max(0, _total_steps(config) - steps_done) * config.get("batch_size", 64)
    return RUN_OVERHEAD_S + left / img_s + score_seconds(config, extractors, n_fake)


def last_step(run_dir: Path) -> int:
    """The last logged step of a run folder (metrics.jsonl's last line), 0 if none."""
    return RunDir(run_dir).last_logged_step()


def file_status(run_dir: Path) -> tuple[str, int]:
    """('trained', steps) when the folder holds a result, ('partial', step) with a checkpoint."""
    run = RunDir(run_dir)
    if run.result.exists():
        try:
            return "trained", int((run.read_result() or {})["steps_done"])
        except (KeyError, ValueError, TypeError):
            return "trained", 0
    if run.checkpoint.exists():
        return "partial", run.last_logged_step()
    return "new", 0


def _open_existing_store(url: str):
    """The store if it exists; None for a SQLite file that is not there (never created here)."""
    from . import store

    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
        return None
    return store.open_storage(url)


def plan_ablation(
    name: str,
    profile: str = "cpu",
    *,
    seeds: list[int] | None = None,
    data: str | None = None,
    workers: int | None = None,
    paths=None,
    storage_url: str | None = None,
) -> Plan:
    from . import store
    from .locations import Paths, study_name
    from .locations import storage_url as resolve_storage
    from .specs import load_spec

    paths = paths or Paths()
    spec = load_spec(name)
    planned = spec.plan(profile, seeds, data)
    prof = spec.profile(profile)
    extractors = tuple(prof.extractors or (prof.extractor,))
    url = resolve_storage(storage_url, paths)
    storage = _open_existing_store(url)
    sname = study_name(spec, profile, data)
    states: dict[tuple, set] = {}
    rates = Rates()
    notes = []
    if storage is None:
        where = f"{store.redact(url)} (does not exist yet)"
    else:
        where = store.redact(url)
        rates = measured_rates(storage)
        import optuna

        try:
            study = optuna.load_study(study_name=sname, storage=storage)
            for key, trials in store.trials_by_key(study).items():
                states[key] = {t.state.name for t in trials}
        except KeyError:
            notes.append(f"study {sname} is not in the store yet")
    rows = []
    for run in planned:
        config = run.config.to_dict()
        key = (run.arm, run.seed, run.config.hash())
        seen = states.get(key, set())
        status, steps_done = file_status(paths.runs / run.config.hash())
        if "COMPLETE" in seen:
            status = "done"
        elif "RUNNING" in seen:
            status, steps_done = "running", last_step(paths.runs / run.config.hash())
        elif "WAITING" in seen and status == "new":
            status = "waiting"
        img_s, source = rates.rate(config)
        if status == "done":
            est = 0.0
        elif status == "trained":  # scores are cached in the run folder; only recording is left
            est = RUN_OVERHEAD_S
        else:
            est = run_seconds(config, img_s, extractors, prof.n_fake, steps_done)
        rows.append(
            PlanRow(run.arm, run.seed, run.config.hash(), run.config.total_steps,
                    run.config.batch_size, status, steps_done, img_s, source, est,
                    bool(getattr(run, "execution", 0)))
        )  # fmt: skip
    to_train = sum(r.status not in ("done", "trained") for r in rows)
    if workers is None:
        workers = 1 if cuda_available() else max(1, min(os.cpu_count() or 1, 8, to_train or 1))
    return Plan(spec.name, profile, sname, where, rows, workers, extractors, prof.n_fake, notes)


def duration(seconds: float) -> str:
    """Rounded for people: 45 s, 12 min, 1 h 05 min."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


def format_plan(plan: Plan) -> str:
    counts = {s: sum(r.status == s for r in plan.rows) for s in STATUS_ORDER}
    names = {id(r): r.arm + (" (replicate)" if r.replicate else "") for r in plan.rows}
    w = max([3] + [len(n) for n in names.values()])
    lines = [
        f"{plan.name} [{plan.profile}]: {len(plan.rows)} runs planned, store {plan.store}",
        "",
        f"  {'arm':<{w}} {'seed':>4}  {'config':<8}  {'steps':>6} x {'batch':<5} {'kimg':>7}  {'img/s':>6}  {'est.':>7}  status",
    ]
    for r in plan.rows:
        status = r.status
        if r.status in ("partial", "running") and r.steps_done:
            status += f" (step {r.steps_done}/{r.steps})"
        rate = f"{r.img_s:,.0f}" + ("*" if r.rate_source == "default" else "")
        est = "-" if r.status == "done" else duration(r.est_s)
        lines.append(
            f"  {names[id(r)]:<{w}} {r.seed:>4}  {r.config_hash[:8]:<8}  {r.steps:>6} x {r.batch_size:<5} "
            f"{r.kimg:>7.1f}  {rate:>6}  {est:>7}  {status}"
        )
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    lines += ["", f"status: {summary}"]
    todo = [r for r in plan.rows if r.status not in ("done", "trained")]
    if not plan.todo:
        lines.append("nothing to train: `dcgan ablate` would only re-render the report")
    else:
        kimg = sum(r.kimg * (1 - r.steps_done / max(1, r.steps)) for r in todo)
        lines.append(
            f"to train: {len(todo)} runs, {kimg:,.0f} kimg; estimated {duration(plan.est_total_s)} of "
            f"worker time, ~{duration(plan.est_wall_s)} wall with {plan.workers} worker(s) "
            f"(scoring: {', '.join(plan.extractors)}, {plan.n_fake:,} fakes per snapshot)"
        )
    if any(r.rate_source == "default" for r in plan.todo):
        lines.append(
            f"* img/s not measured in this store yet: a default ({DEFAULT_IMG_S:.0f} img/s for "
            "cpu_default on a 1-thread worker beside another, scaled by image size and width, "
            f"x{WIDER_ALONE_FACTOR} for a 2-thread replicate, which trains alone; see dcgan/plan.py)"
        )
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)
