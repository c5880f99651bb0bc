"""K seeds packed into one network end exactly where K separate runs end."""

from __future__ import annotations

import pytest
import torch

from dcgan.config import ConfigError
from dcgan.data import load_images
from dcgan.perf.packed import PACKED_METRICS, PackedRun
from dcgan.recipes import build_config
from dcgan.train import METRIC_NAMES, Run

N_STEPS = 4
SEEDS = (0, 1, 2)
RTOL = 1e-5


@pytest.fixture(scope="module")
def mnist():
    return load_images("mnist", 32, 1)


@pytest.fixture
def float64():
    """As in test_fastpath: fp32 kernel changes (grouped vs dense convs) move Adam's early
    steps by rounding; float64 tests the same maths tightly."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(default)


def config(seed, **overrides):
    return build_config("cpu_default", {"device": "cpu", "seed": seed, **overrides})


def solo(cfg, images, run_dir):
    """Run alone for N_STEPS; its rows (the packed metrics) and G, D."""
    run = Run(cfg, run_dir, images)
    real_batch = run.real_batch
    run.real_batch = lambda: real_batch().to(torch.get_default_dtype())
    rows = []
    for _ in range(N_STEPS):
        values = dict(zip(METRIC_NAMES, run.train_step().tolist(), strict=True))
        rows.append([values[name] for name in PACKED_METRICS])
        run.step += 1
    return torch.tensor(rows, dtype=torch.float32), run.G, run.D  # Run logs fp32


def packed(cfgs, images):
    run = PackedRun(cfgs, images)
    rows = []
    for _ in range(N_STEPS):
        rows.append(run.train_step())
        run.step += 1
    return torch.stack(rows, dim=1), run.unpacked()  # (K, steps, metrics)


def assert_same_model(a: torch.nn.Module, b: torch.nn.Module):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x.contiguous(), y.contiguous(), rtol=RTOL, atol=1e-9, msg=name)


@pytest.mark.parametrize(
    "overrides", [{}, {"channels_last": False, "loss": "bce_logits", "g_fresh_noise": True}]
)
def test_each_packed_model_equals_its_run_alone(tmp_path, mnist, float64, overrides):
    cfgs = [config(seed, **overrides) for seed in SEEDS]
    rows, models = packed(cfgs, mnist)
    for k, cfg in enumerate(cfgs):
        solo_rows, g, d = solo(cfg, mnist, tmp_path / str(k))
        torch.testing.assert_close(rows[k].float(), solo_rows, rtol=RTOL, atol=0)
        assert_same_model(models[k][0], g)
        assert_same_model(models[k][1], d)


def test_comparison_can_fail(tmp_path, mnist, float64):
    """Negative control: model 0 of the pack is not seed 1 trained alone."""
    rows, models = packed([config(0), config(1)], mnist)
    solo_rows, g, _ = solo(config(1), mnist, tmp_path)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(rows[0].float(), solo_rows, rtol=RTOL, atol=0)
    with pytest.raises(AssertionError):
        assert_same_model(models[0][0], g)


def test_only_seeds_may_differ(mnist):
    with pytest.raises(ConfigError, match="but the seed"):
        PackedRun([config(0), config(1, lr_d=3e-4)], mnist)
