import json
import math
import pickle

import pytest
import torch

from dcgan.config import ConfigError, RunConfig
from dcgan.schedules import lr_multiplier
from dcgan.train import load_generator, read_metrics, train
from tests.conftest import TINY_RUN as TINY  # noqa: E402  (shared tiny run; `mnist` fixture in conftest)
from tests.train_hooks import train_until


def losses(run_dir):
    return [
        (r["step"], r["d_loss"], r["g_loss"], r["d_real"], r["g_grad_norm"])
        for r in read_metrics(run_dir)
    ]


def test_run_directory_holds_everything(tmp_path, mnist):
    cfg = RunConfig(**TINY)
    result = train(cfg, tmp_path / "run", images=mnist)
    run = tmp_path / "run"
    assert result["status"] == "completed" and result["steps_done"] == 12
    assert RunConfig.from_dict(json.loads((run / "config.json").read_text())) == cfg
    assert [r["step"] for r in read_metrics(run)] == list(range(12))
    assert sorted(p.name for p in (run / "grids").iterdir()) == [
        "step_0000006.png",
        "step_0000012.png",
    ]
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == [
        "G_step_0000006.pt",
        "G_step_0000012.pt",
    ]
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["step"] == 12 and state["config_hash"] == cfg.hash()
    g, loaded_cfg = load_generator(run)
    assert loaded_cfg == cfg and g(torch.randn(2, cfg.nz)).shape == (2, 1, 32, 32)


def test_same_config_and_seed_is_bit_identical(tmp_path, mnist):
    cfg = RunConfig(**TINY, seed=5)
    train(cfg, tmp_path / "a", images=mnist)
    train(cfg, tmp_path / "b", images=mnist)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    other = RunConfig(**TINY, seed=6)
    train(other, tmp_path / "c", images=mnist)
    assert losses(tmp_path / "a") != losses(tmp_path / "c")


@pytest.mark.parametrize(
    "extra",
    [{}, {"g_fresh_noise": True, "g_steps": 2, "lr_schedule": "cosine", "loss": "bce_logits"}],
)
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, mnist, extra):
    cfg = RunConfig(**{**TINY, **extra})
    train(cfg, tmp_path / "whole", images=mnist)
    partial = train_until(cfg, tmp_path / "cut", 6, images=mnist)
    assert partial["status"] == "interrupted"
    # what a kill after the checkpoint leaves behind: log rows past the checkpoint
    with open(tmp_path / "cut" / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 7, "d_loss": 0.0, "g_loss": 0.0}) + "\n" + '{"step": 8, "d_lo')
    resumed = train(cfg, tmp_path / "cut", images=mnist)
    assert resumed["status"] == "completed"
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    for key in a["G"]:
        assert torch.equal(a["G"][key], b["G"][key]), key


def test_finished_run_is_returned_not_retrained(tmp_path, mnist):
    cfg = RunConfig(**TINY)
    first = train(cfg, tmp_path / "r", images=mnist)
    mtime = (tmp_path / "r" / "checkpoint.pt").stat().st_mtime_ns
    assert train(cfg, tmp_path / "r", images=mnist) == first
    assert (tmp_path / "r" / "checkpoint.pt").stat().st_mtime_ns == mtime


def test_resume_with_a_different_config_is_refused(tmp_path, mnist):
    train_until(RunConfig(**TINY), tmp_path / "r", 6, images=mnist)
    with pytest.raises(ConfigError, match="another config"):
        train(RunConfig(**{**TINY, "lr_g": 1e-3}), tmp_path / "r", images=mnist)


def test_non_finite_loss_is_recorded_as_divergence(tmp_path, mnist):
    cfg = RunConfig(
        **{**TINY, "steps": 24, "lr_g": 0.9, "lr_d": 0.9, "beta1_d": 0.0, "beta1_g": 0.0}
    )
    # lr 0.9 alone may not blow up; poison D's weights after the first checkpoint instead
    train_until(cfg, tmp_path / "r", 6, images=mnist)
    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    good = {k: v.clone() for k, v in state["G"].items()}
    first_conv = next(k for k in state["D"] if k.endswith("weight"))
    state["D"][first_conv].fill_(float("nan"))
    torch.save(state, tmp_path / "r" / "checkpoint.pt")
    result = train(cfg, tmp_path / "r", images=mnist)
    assert result["status"] == "diverged"
    assert result["diverged_at_step"] == 6 and "non-finite" in result["divergence_reason"]
    assert read_metrics(tmp_path / "r")[-1]["step"] == 6
    # the last good checkpoint is intact (not overwritten with NaN weights)
    kept = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert kept["step"] == 6 and all(
        torch.isfinite(v).all() for v in kept["G"].values() if v.is_floating_point()
    )
    assert all(torch.equal(kept["G"][k], good[k]) for k in good)


def test_d_winning_outright_is_recorded_as_divergence(tmp_path, mnist):
    cfg = RunConfig(**{**TINY, "diverge_g_loss": 1e-3})  # any real G loss exceeds this
    result = train(cfg, tmp_path / "r", images=mnist)
    assert result["status"] == "diverged" and "D won outright" in result["divergence_reason"]
    assert result["diverged_at_step"] == 2


def test_batch_larger_than_dataset_fails_before_training(tmp_path, mnist):
    with pytest.raises(ConfigError, match="larger than the dataset"):
        train(RunConfig(**{**TINY, "batch_size": 8192}), tmp_path / "r", images=mnist)
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_checkpoint_with_code_in_it_is_refused(tmp_path, mnist):
    train_until(RunConfig(**TINY), tmp_path / "r", 6, images=mnist)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    state["payload"] = Evil()
    torch.save(state, tmp_path / "r" / "checkpoint.pt")
    with pytest.raises(pickle.UnpicklingError):
        train(RunConfig(**TINY), tmp_path / "r", images=mnist)


def test_step_decay_follows_004_as_intended():
    g = lr_multiplier("step_decay", "G", 10_000, steps_per_epoch=10, final_ratio=0.01)
    d = lr_multiplier("step_decay", "D", 10_000, steps_per_epoch=10, final_ratio=0.01)
    assert g(0) == d(0) == 1.0 and g(9) == 1.0
    assert math.isclose(d(10), 0.8) and math.isclose(g(10), 0.9)  # end of epoch 0
    # epochs 0..12 finished: D decays at 0, 10; G at 0, 10, 11, 12
    assert math.isclose(d(130), 0.8**2) and math.isclose(g(130), 0.9**4)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "exponential"])
def test_decay_schedules_start_at_one_and_end_at_final_ratio(schedule):
    f = lr_multiplier(schedule, "G", 100, 10, 0.01)
    assert math.isclose(f(0), 1.0) and math.isclose(f(100), 0.01, rel_tol=1e-9)
    assert all(f(s) >= f(s + 1) for s in range(100))


def test_config_hashes_are_unchanged():
    """Run folders are named by these: a change would orphan every finished run."""
    assert RunConfig().hash() == "f6d62679772ebad4"
    assert RunConfig(**TINY).hash() == "2d209d87179e0341"


def test_grids_show_the_samples_fid_scores(tmp_path, mnist):
    """The grid at a step is the one sampling policy on the fixed grid noise (dcgan.sampling)."""
    import io

    import numpy as np
    from PIL import Image
    from torchvision.utils import make_grid

    from dcgan.rundir import RunDir
    from dcgan.sampling import sample
    from dcgan.train import EVAL_NOISE_SEED, GRID_SIZE

    cfg = RunConfig(**TINY)
    train(cfg, tmp_path / "r", images=mnist)
    g, _ = load_generator(tmp_path / "r", 12)
    if cfg.channels_last:
        g = g.to(memory_format=torch.channels_last)
    z = torch.randn(GRID_SIZE, cfg.nz, generator=torch.Generator().manual_seed(EVAL_NOISE_SEED))
    png = RunDir(tmp_path / "r").grid(12).read_bytes()
    shown = torch.from_numpy(np.array(Image.open(io.BytesIO(png)).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(shown, make_grid(sample(g, z), nrow=8))


def test_result_records_where_the_run_trained(tmp_path, mnist):
    from dcgan.rundir import RunDir

    result = train(RunConfig(**TINY), tmp_path / "r", images=mnist)
    assert result["provenance"]["complete"] is True
    (env,) = result["provenance"]["environments"]
    assert env["cpu"] and env["device"] == "cpu" and env["git_commit"]
    assert env["torch_threads"] == torch.get_num_threads()
    assert {"torch", "torchvision", "torch-fidelity", "optuna"} <= set(env["packages"])
    assert "not installed" not in env["packages"].values()
    assert RunDir(tmp_path / "r").provenance() == result["provenance"]


def test_a_run_resumed_elsewhere_lists_both_environments(tmp_path, mnist, monkeypatch):
    from dcgan import environment

    cfg = RunConfig(**TINY)
    train_until(cfg, tmp_path / "r", 6, images=mnist)
    train_until(cfg, tmp_path / "r", 6, images=mnist)  # the same machine again: listed once
    here = environment.provenance("cpu")
    monkeypatch.setattr(environment, "provenance", lambda device: here | {"cpu": "Other CPU"})
    result = train(cfg, tmp_path / "r", images=mnist)
    assert [e["cpu"] for e in result["provenance"]["environments"]] == [here["cpu"], "Other CPU"]
    assert result["provenance"]["complete"] is True


def test_a_run_resumed_from_an_older_checkpoint_says_its_start_is_unrecorded(tmp_path, mnist):
    cfg = RunConfig(**TINY)
    train_until(cfg, tmp_path / "r", 6, images=mnist)
    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    del state["provenance"]  # as checkpoints were written before runs recorded it
    torch.save(state, tmp_path / "r" / "checkpoint.pt")
    result = train(cfg, tmp_path / "r", images=mnist)
    assert result["provenance"]["complete"] is False
    assert len(result["provenance"]["environments"]) == 1
