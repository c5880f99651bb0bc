"""Divergence and resources: NaN/Inf, an exploding generator and a full disk end as recorded
outcomes with the previous checkpoint intact."""

import errno

import optuna
import pytest
import torch
from optuna.trial import TrialState

from dcgan import atomic, store
from dcgan.config import RunConfig
from dcgan.preflight import RunsFailed
from dcgan.runner import Paths, run_ablation
from dcgan.train import train
from tests.conftest import TINY_RUN as TINY  # noqa: E402  (shared tiny run; `mnist` fixture in conftest)
from tests.train_hooks import train_until


@pytest.mark.fault("disk/corruption")
@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_non_finite_weights_end_as_diverged(tmp_path, mnist, poison):
    cfg = RunConfig(**TINY)
    train_until(cfg, tmp_path / "r", 6, images=mnist)
    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    key = next(k for k in state["G"] if k.endswith("weight"))
    state["G"][key].fill_(poison)
    torch.save(state, tmp_path / "r" / "checkpoint.pt")
    result = train(cfg, tmp_path / "r", images=mnist)
    assert result["status"] == "diverged" and result["diverged_at_step"] == 6
    assert torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)["step"] == 6


@pytest.mark.fault("resources")
def test_exploding_generator_loss_is_recorded(tmp_path, mnist):
    """D trained 50,000x faster than G wins outright: G's loss explodes past the limit and
    the run ends as a recorded divergence, not an exception and not a silent 'completed'."""
    cfg = RunConfig(**{**TINY, "steps": 40, "lr_d": 0.05, "lr_g": 1e-6, "diverge_g_loss": 8.0})
    result = train(cfg, tmp_path / "r", images=mnist)
    assert result["status"] == "diverged" and "D won outright" in result["divergence_reason"]
    assert result["final_g_loss"] > 8.0


@pytest.mark.fault("disk/corruption")
def test_disk_full_fails_the_run_keeps_the_checkpoint_and_retries(tmp_path, monkeypatch):
    paths = Paths(tmp_path / "results", tmp_path / "reports")
    real_write = atomic.atomic_write
    calls = {"checkpoints": 0}

    def full_disk(path, write):
        if str(path).endswith("checkpoint.pt"):
            calls["checkpoints"] += 1
            if (
                calls["checkpoints"] == 2
            ):  # the first checkpoint lands, the second finds the disk full
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, write)

    monkeypatch.setattr(atomic, "atomic_write", full_disk)
    with pytest.raises(RunsFailed, match="No space left on device"):  # the command fails
        run_ablation("loss", "smoke", seeds=[0], paths=paths, report=False, log=lambda s: None)
    study = optuna.load_study(
        study_name="ablate/loss/smoke", storage=store.open_storage(paths.default_storage)
    )
    failed = [t for t in study.get_trials() if t.state == TrialState.FAIL]
    assert len(failed) == 1 and "No space left" in failed[0].user_attrs["failure"]
    run_dir = paths.runs / failed[0].user_attrs["config_hash"]
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == 12  # intact
    monkeypatch.setattr(atomic, "atomic_write", real_write)
    run_ablation("loss", "smoke", seeds=[0], paths=paths, report=False, log=lambda s: None)
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["arm"] for t in done) == ["bce", "bce_logits"]
