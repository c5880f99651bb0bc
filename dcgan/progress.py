"""Progress of a whole ablation: one line (or a tqdm bar on a terminal) and a live report.

A monitor thread in the process that started the ablation polls the store (its own
connection) and the run folders every second or two; it never writes to the store:

    activation [cpu] 7/18 runs · training G_relu-D_selu/1 step 410/625, G_selu-D_selu/1
    step 120/625 · scoring G_relu-D_leaky_relu/2 · 3 min elapsed · ETA 5 min

- runs done: COMPLETE trials of the ablation's study among the planned (arm, seed, hash);
- in flight: RUNNING trials; the step is the last line of the run's metrics.jsonl, and a run
  whose folder already holds result.json is scoring (training is over, the trial is not);
- ETA: the plan's per-run estimate (dcgan/plan.py: measured img/s in the store, scoring per
  snapshot) until a run has finished and 5% of the work is done; then the pace observed since
  the first run started (start-up excluded).

On a terminal it draws a tqdm bar on stderr; otherwise it logs one line per finished run and
one a minute while runs are in flight. As runs finish it re-renders the ablation's report,
marked "in progress: k of N runs" (throttled so that rendering costs at most ~10% of the time);
the runner's final render replaces it.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .plan import duration, last_step
from .rundir import RunDir

MAX_SHOWN = 3  # runs in flight named on the line; the rest are counted
OBSERVED_AFTER = 0.05  # share of the estimated work done before the observed speed is trusted


def worker_log(message: str) -> None:
    """A worker's line: on a terminal, clear the progress bar's line first."""
    prefix = "\r\x1b[K" if sys.stdout.isatty() else ""
    print(prefix + message, flush=True)


@dataclass
class InFlight:
    arm: str
    seed: int
    phase: str  # training | scoring
    step: int
    total: int

    def describe(self) -> str:
        if self.phase == "scoring":
            return f"{self.arm}/{self.seed}"
        return f"{self.arm}/{self.seed} step {self.step}/{self.total}"


@dataclass
class Snapshot:
    done: int
    total: int
    failed: int
    in_flight: list[InFlight]
    elapsed_s: float
    eta_s: float | None


def format_line(label: str, snap: Snapshot) -> str:
    parts = [f"{label} {snap.done}/{snap.total} runs"]
    for phase in ("training", "scoring"):
        runs = [r for r in snap.in_flight if r.phase == phase]
        if runs:
            shown = ", ".join(r.describe() for r in runs[:MAX_SHOWN])
            more = f" (+{len(runs) - MAX_SHOWN} more)" if len(runs) > MAX_SHOWN else ""
            parts.append(f"{phase} {shown}{more}")
    if snap.failed:
        parts.append(f"{snap.failed} failed (retried on the next ablate)")
    parts.append(f"{duration(snap.elapsed_s)} elapsed")
    if snap.done < snap.total:
        parts.append(f"ETA {duration(snap.eta_s)}" if snap.eta_s is not None else "ETA ?")
    return " · ".join(parts)


class AblationMonitor:
    """Polls the store and run folders; draws the progress and re-renders the live report."""

    def __init__(
        self,
        *,
        label: str,
        study_name: str,
        storage_url: str,
        runs_dir: Path,
        planned: list,  # specs.PlannedRun
        estimates: dict[tuple, float],  # (arm, seed, hash) -> seconds (plan.run_seconds)
        workers: int,
        log: Callable[[str], None] = print,
        bar: bool = False,
        live_report: Callable[[], None] | None = None,
        interval_s: float = 1.0,
        log_every_s: float = 60.0,
        live_min_interval_s: float = 20.0,
    ) -> None:
        self.label, self.study_name, self.storage_url = label, study_name, storage_url
        self.runs_dir, self.workers, self._log = Path(runs_dir), max(1, workers), log
        self.keys = [(r.arm, r.seed, r.config.hash()) for r in planned]
        self.totals = {k: r.config.total_steps for k, r in zip(self.keys, planned, strict=True)}
        self.estimates = {k: max(estimates.get(k, 1.0), 1e-3) for k in self.keys}
        for key, run in zip(self.keys, planned, strict=True):
            if run.execution:  # a replicate trains alone: it holds every worker
                self.estimates[key] *= self.workers
        self.live_report = live_report
        self.interval_s, self.log_every_s = interval_s, log_every_s
        self.live_min_interval_s = live_min_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar = None
        self._want_bar = bar
        self._started = time.monotonic()
        self._done_at_start: set | None = None
        self._active_since: float | None = None
        self._last_done = -1
        self._last_logged = 0.0
        self._last_render = 0.0
        self._render_cost = 0.0
        self._rendered_done = -1
        self._render_failed = False
        self._render_thread: threading.Thread | None = None
        self._study = None
        self.last: Snapshot | None = None

    # -- lifecycle --
    def start(self) -> AblationMonitor:
        self._started = time.monotonic()
        try:
            self._connect()
            snap = self.poll()
        except Exception as err:  # progress is a nicety: never stop an ablation for it
            self._log(f"{self.label}: no progress display ({type(err).__name__}: {err})")
            return self
        if self._want_bar:
            from tqdm import tqdm

            self._bar = tqdm(
                total=snap.total, initial=snap.done, file=sys.stderr, dynamic_ncols=True,
                bar_format=self.label + " {n_fmt}/{total_fmt} runs |{bar:12}| {desc}", leave=True,
            )  # fmt: skip
        self._thread = threading.Thread(target=self._loop, name="dcgan-progress", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Snapshot | None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._render_thread is not None:  # a live page must never land after the final one
            self._render_thread.join()
        try:
            if self._study is not None:
                self._show(self.poll(), final=True)
        except Exception:
            pass
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        return self.last

    def __enter__(self) -> AblationMonitor:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log(self, message: str) -> None:
        """For workers in this process: print above the bar instead of through it."""
        if self._bar is not None:
            from tqdm import tqdm

            tqdm.write(message, file=sys.stdout)
        else:
            self._log(message)

    # -- polling --
    def _connect(self) -> None:
        import optuna

        from . import store

        storage = store.open_storage(self.storage_url)
        self._study = optuna.load_study(study_name=self.study_name, storage=storage)

    def poll(self) -> Snapshot:
        from optuna.trial import TrialState

        from . import store

        grouped = store.trials_by_key(self._study)
        done, failed, in_flight = set(), 0, []
        for key in self.keys:
            states = {t.state for t in grouped.get(key, [])}
            if TrialState.COMPLETE in states:
                done.add(key)
            elif TrialState.RUNNING in states:
                run_dir = self.runs_dir / key[2]
                if RunDir(run_dir).result.exists():
                    in_flight.append(InFlight(key[0], key[1], "scoring", 0, self.totals[key]))
                else:
                    step = min(last_step(run_dir), self.totals[key])
                    in_flight.append(InFlight(key[0], key[1], "training", step, self.totals[key]))
            elif states and TrialState.WAITING not in states:
                failed += 1
        now = time.monotonic()
        if self._done_at_start is None:
            self._done_at_start = set(done)
        if self._active_since is None and (in_flight or done - self._done_at_start):
            self._active_since = now  # start-up (data, reference features) is not run time
        elapsed = now - self._started
        snap = Snapshot(len(done), len(self.keys), failed, in_flight, elapsed, None)
        snap.eta_s = self._eta(done, in_flight, now - (self._active_since or now))
        self.last = snap
        return snap

    def _eta(self, done: set, in_flight: list[InFlight], active_s: float) -> float | None:
        """The model's estimate until a run has finished here and 5% of the work is done; then
        the observed pace: seconds since work started x work left / work done."""
        start = self._done_at_start or set()
        todo = [k for k in self.keys if k not in start]
        if not todo:
            return 0.0
        total = sum(self.estimates[k] for k in todo)
        flying = {(r.arm, r.seed): r for r in in_flight}
        work = 0.0
        for k in todo:
            if k in done:
                work += self.estimates[k]
            elif (k[0], k[1]) in flying:
                r = flying[(k[0], k[1])]
                fraction = 0.95 if r.phase == "scoring" else r.step / max(1, r.total)
                work += self.estimates[k] * fraction
        left = max(0.0, total - work)
        finished_here = len(done & set(todo))
        if finished_here and work >= OBSERVED_AFTER * total and active_s > 0:
            return active_s * left / work
        running = max(1, min(self.workers, len(todo) - len(done & set(todo))))
        return left / running

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                snap = self.poll()
                self._show(snap)
                self._maybe_render(snap)
            except Exception:  # a busy store or a half-written file: try again next tick
                continue

    def _show(self, snap: Snapshot, final: bool = False) -> None:
        line = format_line(self.label, snap)
        if self._bar is not None:
            self._bar.n = snap.done
            # the line without its "label k/N runs" head, which the bar shows itself
            self._bar.set_description_str(
                line.split(" · ", 1)[1] if " · " in line else "", refresh=False
            )
            self._bar.refresh()
            return
        now = time.monotonic()
        changed = snap.done != self._last_done
        if final and not changed:
            return
        if changed or (snap.in_flight and now - self._last_logged >= self.log_every_s):
            if self._last_done >= 0 or snap.done < snap.total:
                self._log(line)
            self._last_done, self._last_logged = snap.done, now

    def _maybe_render(self, snap: Snapshot) -> None:
        """Start a re-render in its own thread (the progress line keeps moving meanwhile)."""
        if self.live_report is None or self._render_failed:
            return
        if self._render_thread is not None and self._render_thread.is_alive():
            return
        if snap.done <= max(self._rendered_done, 0) or snap.done >= snap.total:
            return  # nothing new, or the runner's final render is next
        wait = max(self.live_min_interval_s, 10 * self._render_cost)
        if time.monotonic() - self._last_render < wait and self._rendered_done >= 0:
            return
        self._rendered_done = snap.done
        self._render_thread = threading.Thread(target=self._render, name="dcgan-live-report")
        self._render_thread.start()

    def _render(self) -> None:
        started = time.monotonic()
        try:
            self.live_report()
        except Exception as err:
            self._render_failed = True
            self.log(f"{self.label}: live report not written ({type(err).__name__}: {err})")
            return
        self._render_cost = time.monotonic() - started
        self._last_render = time.monotonic()


def estimates_for(planned: list, storage, paths, extractors: tuple[str, ...], n_fake: int) -> dict:
    """Seconds per planned run (plan.py's model), for the ETA; 0 for work already done."""
    from . import plan

    try:
        rates = plan.measured_rates(storage)
    except Exception:
        rates = plan.Rates()
    out = {}
    for run in planned:
        config = run.config.to_dict()
        status, steps_done = plan.file_status(Path(paths.runs) / run.config.hash())
        img_s, _ = rates.rate(config)
        if status == "trained":
            out[(run.arm, run.seed, run.config.hash())] = plan.RUN_OVERHEAD_S
        else:
            out[(run.arm, run.seed, run.config.hash())] = plan.run_seconds(
                config, img_s, extractors, n_fake, steps_done
            )
    return out


def is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def eta_text(seconds: float | None) -> str:
    return "?" if seconds is None or not math.isfinite(seconds) else duration(seconds)


def for_ablation(
    *, spec, profile: str, planned: list, study_name: str, storage, storage_url: str, paths,
    extractors: tuple[str, ...], n_fake: int, workers: int, log, show: bool | None, report: bool,
    seeds: list[int] | None, data: str | None,
):  # fmt: skip
    """The monitor `run_ablation` runs its workers under (None: show=False, no progress)."""
    if show is False:
        return None
    bar = is_terminal() if show is None else show and is_terminal()
    live = (
        _live_report(spec, profile, study_name, storage_url, paths, seeds, data) if report else None
    )
    return AblationMonitor(
        label=f"{spec.name} [{profile}]", study_name=study_name, storage_url=storage_url,
        runs_dir=paths.runs, planned=planned,
        estimates=estimates_for(planned, storage, paths, extractors, n_fake),
        workers=workers, log=log, bar=bar, live_report=live,
    )  # fmt: skip


def _live_report(spec, profile, study_name, storage_url, paths, seeds, data):
    opened: dict = {}

    def render() -> None:
        import optuna

        from . import store
        from .collect import collect_results
        from .report import render_report

        if "storage" not in opened:
            opened["storage"] = store.open_storage(storage_url)
        storage = opened["storage"]
        study = optuna.load_study(study_name=study_name, storage=storage)
        results = collect_results(spec, profile, study, storage, paths, seeds=seeds, data=data)
        render_report(results, paths.reports, in_progress=True)

    return render
