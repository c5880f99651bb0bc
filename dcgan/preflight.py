"""What `ablate` checks before the first step trains, and how it accounts for failed runs.

Before training (`runner._check_inputs` calls `check_run` for every planned run, with the
data loaded): a device the machine lacks, an `n_fake` the data cannot hold out, sizes past
`spec_checks.LIMITS`. Each is one ConfigError line naming the spec, the arm or profile key and
what would be valid, instead of a traceback after every run has trained.

After the workers: `failed_runs` lists planned runs that did not complete (failed, never ran,
left waiting); `ablate` writes the table and the report of everything that did finish, then
raises RunsFailed so that the command exits non-zero.
"""

from __future__ import annotations

from optuna.trial import TrialState

from . import spec_checks, store
from .config import ConfigError, RunConfig


class RunsFailed(RuntimeError):
    """Some planned runs did not complete; the table and report hold the rest."""

    def __init__(self, name: str, profile: str, planned: int, failed: list[str], page=None):
        self.failed, self.page = failed, page
        shown = "; ".join(failed[:5]) + ("; ..." if len(failed) > 5 else "")
        super().__init__(
            f"{name} [{profile}]: {len(failed)} of {planned} planned runs did not complete "
            f"({shown}); re-run the same command to retry them"
        )


def check_run(spec, run, n_images: int, n_fake: int | None) -> None:
    cfg: RunConfig = run.config
    where = f"{spec.path}: arms.{run.arm}"
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"{where}: device='cuda' but this machine has no CUDA device; "
                "use device='auto' (a GPU when there is one) or 'cpu'"
            )
    if cfg.amp == "bf16":
        import torch

        if cfg.device == "cpu" or not torch.cuda.is_available():
            raise ConfigError(
                f"{where}: amp='bf16' needs a CUDA device (on this CPU it would train fp32 under "
                "another run identity); use amp='off' here"
            )
    if n_fake is not None and not (2 <= n_fake <= n_images - 2):
        raise ConfigError(
            f"{spec.path}: n_fake={n_fake}: scoring holds out n_fake real images and needs at "
            f"least 2 left; the data {cfg.data!r} has {n_images} images, so n_fake must be "
            f"2..{max(2, n_images - 2)} (set the profile's n_fake)"
        )
    spec_checks.check_limits(cfg, where)


def check_identity(planned_hash: str | None, cfg: RunConfig) -> None:
    """A run's identity includes its data's content: if the data changed after the run was
    queued, training it now would record the new data's numbers under the old identity."""
    if planned_hash is not None and planned_hash != cfg.hash():
        raise ConfigError(
            f"the data {cfg.data!r} changed after this run was queued (identity {planned_hash}, "
            f"now {cfg.hash()}); re-run `ablate` to plan it on the current data"
        )


def failed_runs(study, planned) -> list[str]:
    """'arm seed N: reason' for every planned run without a completed (or live) trial."""
    grouped = store.trials_by_key(study)
    out = []
    for run in planned:
        trials = grouped.get((run.arm, run.seed, run.config.hash()), [])
        states = {t.state for t in trials}
        if states & {TrialState.COMPLETE, TrialState.RUNNING}:
            continue  # done, or being trained by a live worker elsewhere
        last = max(trials, key=lambda t: t.number, default=None)
        if last is None:
            reason = "never queued"
        elif last.state == TrialState.WAITING:
            reason = "still waiting (no worker took it)"
        else:
            reason = str(last.user_attrs.get("failure", "failed"))
        out.append(f"{run.arm} seed {run.seed}: {store.redact_text(reason)}")
    return out


def check_plan(spec, planned) -> None:
    """Say when a profile makes two arms the same run (e.g. `smoke` sets one batch size for
    every arm of `recipes`): allowed, trained once and shared, but the comparison is void."""
    import logging

    first = {}
    for run in planned:
        if run.seed == planned[0].seed and getattr(run, "execution", 0) == 0:
            first.setdefault(run.arm, run.config)
    for arm, other in spec_checks.duplicate_arms(first, spec.baseline):
        logging.getLogger("dcgan").warning(
            "%s: arms %r and %r plan the same runs under this profile (trained once, shared; "
            "their comparison measures nothing)",
            spec.path, arm, other,
        )  # fmt: skip
