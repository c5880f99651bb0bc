"""Every fast-path piece of `dcgan.train.Run` computes what the canonical loop computes.

From the same initial weights, batches and noise, a few steps of the fast path and of
`dcgan.perf.canonical` (pytorch/examples' DCGAN loop) give the same losses, D outputs and weights,
whatever each piece is set to. Negative controls (another lr, noise or batch) show that the
comparison can fail.

Why float64 for most tests: in fp32, any change of kernel (channels_last picks other conv
algorithms; so does another thread count) moves gradients by rounding, and Adam's first
steps turn the sign of near-zero gradients (BatchNorm makes some exactly zero in exact
arithmetic) into +-lr updates, so fp32 runs of the *same* canonical loop on 1 vs 2 threads
already differ by 1e-5 to 5e-4 after 5 steps. In float64 that noise is ~1e-16 and the comparison
can be tight (1e-5) while still testing the same maths. Pieces that keep the kernels
unchanged (D-grad skipping, uint8 data, windowed reads) are also checked in fp32, bit-exact.
"""

from __future__ import annotations

import json

import pytest
import torch

from dcgan.data import load_images
from dcgan.models import build_models
from dcgan.perf.canonical import canonical_steps_exact, image_folder_loader, write_png_folder
from dcgan.recipes import build_config
from dcgan.train import METRIC_NAMES, epoch_order, read_metrics, train
from tests.train_hooks import run_class

N_STEPS = 5
RTOL = 1e-5
COMPARED = ("d_loss", "g_loss", "d_real", "d_fake", "d_fake_after_d_step")


@pytest.fixture(scope="module")
def mnist():
    return load_images("mnist", 32, 1)


@pytest.fixture
def float64():
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(default)


def config(**overrides):
    return build_config("cpu_default", {"device": "cpu", **overrides})


def fast_steps(cfg, images, run_dir, n=N_STEPS, skip_d_weight_grads=True, sync_every_step=False):
    """n fast-path steps, recording the batches and noise it drew; per-step rows as floats."""
    run = run_class(skip_d_weight_grads)(cfg, run_dir, images)
    batches, noises = [], []
    real_batch, noise_batch = run.real_batch, run.noise_batch
    dtype = torch.get_default_dtype()  # the models' dtype (see `float64`)
    run.real_batch = lambda: batches.append(real_batch().to(dtype)) or batches[-1]
    run.noise_batch = lambda: noises.append(noise_batch()) or noises[-1]
    window = []
    for _ in range(n):
        values = run.train_step()
        window.append(values.tolist() if sync_every_step else values)
        run.step += 1
    rows = [dict(zip(METRIC_NAMES, torch.as_tensor(v).tolist(), strict=True)) for v in window]
    return rows, run, batches, noises


def canonical_on(cfg, batches, noises):
    """The canonical loop on the fast path's inputs, in the default memory format."""
    nets = build_models(cfg)
    contiguous = [b.contiguous() for b in batches]
    return canonical_steps_exact(cfg, contiguous, noises, nets), nets


def assert_rows_close(fast, canonical, rtol=RTOL):
    assert len(fast) == len(canonical)
    for step, (f, c) in enumerate(zip(fast, canonical, strict=True)):
        for key in COMPARED:
            assert f[key] == pytest.approx(c[key], rel=rtol, abs=0), f"step {step} {key}"


def assert_weights_close(a: torch.nn.Module, b: torch.nn.Module, rtol=RTOL, atol=1e-9):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x.contiguous(), y.contiguous(), rtol=rtol, atol=atol, msg=name)


@pytest.mark.parametrize("channels_last", [True, False])
def test_fast_path_equals_canonical(tmp_path, mnist, float64, channels_last):
    cfg = config(channels_last=channels_last)
    fast, run, batches, noises = fast_steps(cfg, mnist, tmp_path)
    if channels_last:  # the piece is really on
        assert run.D.main[2].weight.is_contiguous(memory_format=torch.channels_last)
        assert batches[0].is_contiguous(memory_format=torch.channels_last)
    canonical, (g, d) = canonical_on(cfg, batches, noises)
    assert_rows_close(fast, canonical)
    assert_weights_close(run.G, g)
    assert_weights_close(run.D, d)


@pytest.mark.parametrize(
    "overrides",
    [
        {"loss": "bce_logits", "d_loss_reduction": "mean", "g_fresh_noise": True},
        {"g_steps": 2, "lr_g": 3e-4, "beta1_d": 0.6},
    ],
)
def test_other_arms_equal_canonical(tmp_path, mnist, float64, overrides):
    cfg = config(**overrides)
    fast, run, batches, noises = fast_steps(cfg, mnist, tmp_path)
    assert len(noises) == N_STEPS * (1 + cfg.g_steps - (not cfg.g_fresh_noise))
    canonical, (g, d) = canonical_on(cfg, batches, noises)
    assert_rows_close(fast, canonical)
    assert_weights_close(run.G, g)
    assert_weights_close(run.D, d)


def test_skipping_d_weight_grads_in_g_step_changes_nothing(tmp_path, mnist):
    """fp32, default layout: skipping changes no kernel's result, so it is bit-exact."""
    cfg = config(channels_last=False)
    skip, run_skip, batches, noises = fast_steps(cfg, mnist, tmp_path / "a")
    full, run_full, _, _ = fast_steps(cfg, mnist, tmp_path / "b", skip_d_weight_grads=False)
    assert skip == full
    assert_weights_close(run_skip.D, run_full.D, rtol=0, atol=0)
    assert_weights_close(run_skip.G, run_full.G, rtol=0, atol=0)
    canonical, (g, d) = canonical_on(cfg, batches, noises)
    assert_rows_close(skip, canonical)
    assert_weights_close(run_skip.G, g)


def test_skipping_really_skips(tmp_path, mnist):
    """With skipping, D's grads after a step are the D step's alone (and D trains again
    next step); without, the G step has added its own on top: the canonical loop's waste."""
    cfg = config()
    grads = {}
    for skip in (True, False):
        run = run_class(skip)(cfg, tmp_path / str(skip), mnist)
        run.train_step()
        assert all(p.requires_grad for p in run.D.parameters())
        grads[skip] = [p.grad.clone() for p in run.D.parameters()]
    assert any(not torch.allclose(a, b) for a, b in zip(grads[True], grads[False], strict=True))


def test_uint8_resident_batches_equal_totensor_normalize(tmp_path, mnist):
    """The fast path's uint8 -> [-1, 1] is bit-identical to decoding the same images from PNG
    through ImageFolder + ToTensor + Normalize(0.5, 0.5), and so are the steps trained on them."""
    cfg = config(channels_last=False)
    fast, _, batches, noises = fast_steps(cfg, mnist, tmp_path / "run")
    root = write_png_folder(mnist.images, tmp_path / "png")
    dataset = image_folder_loader(root, cfg, workers=0).dataset
    order, b = epoch_order(cfg.seed, 0, len(mnist)), cfg.batch_size
    decoded = [
        torch.stack([dataset[int(i)][0] for i in order[k * b : (k + 1) * b]])
        for k in range(N_STEPS)
    ]
    for ours, theirs in zip(batches, decoded, strict=True):
        assert torch.equal(ours, theirs)
    canonical, _ = canonical_on(cfg, decoded, noises)
    assert_rows_close(fast, canonical)


def test_values_read_every_n_steps_equal_item_every_step(tmp_path, mnist):
    """train() keeps values on the device and reads them every log_every steps: its log is
    bit-identical to the same steps read with .item() each step, and equals the canonical's."""
    cadence = {"grid_every": 100, "snapshot_every": 100, "checkpoint_every": 100}
    cfg = config(channels_last=False, steps=7, log_every=3, **cadence)
    train(cfg, tmp_path / "train", images=mnist)
    logged = read_metrics(tmp_path / "train")
    per_step, _, batches, noises = fast_steps(
        cfg, mnist, tmp_path / "steps", n=7, sync_every_step=True
    )
    assert [r["step"] for r in logged] == list(range(7))
    assert [{k: r[k] for k in METRIC_NAMES} for r in logged] == per_step
    canonical, _ = canonical_on(cfg, batches, noises)
    assert_rows_close(logged, canonical)
    result = json.loads((tmp_path / "train" / "result.json").read_text())
    assert result["final_d_fake"] == pytest.approx(sum(r["d_fake"] for r in logged[-3:]) / 3)


def test_fp32_channels_last_first_step_equals_canonical(tmp_path, mnist):
    """In fp32 the channels_last kernels agree with the default ones on everything computed
    before the first optimiser step (later steps drift by Adam-amplified rounding)."""
    cfg = config(channels_last=True)
    fast, _, batches, noises = fast_steps(cfg, mnist, tmp_path, n=1)
    canonical, _ = canonical_on(cfg, batches, noises)
    for key in ("d_loss", "d_real", "d_fake"):
        assert fast[0][key] == pytest.approx(canonical[0][key], rel=RTOL, abs=0), key


@pytest.mark.parametrize("change", ["lr", "noise", "batch"])
def test_comparison_can_fail(tmp_path, mnist, float64, change):
    """Negative controls: a 1% different lr, one other noise draw or one other image in one
    batch is caught by the same checks."""
    cfg = config()
    fast, _, batches, noises = fast_steps(cfg, mnist, tmp_path)
    if change == "lr":
        cfg = config(lr_d=cfg.lr_d * 1.01)
    if change == "noise":
        noises[3] = torch.randn_like(noises[3])
    if change == "batch":
        batches[2] = torch.cat([batches[3][:1], batches[2][1:]])
    canonical, _ = canonical_on(cfg, batches, noises)
    with pytest.raises(AssertionError):
        assert_rows_close(fast, canonical)


@pytest.mark.slow
def test_compiled_step_equals_canonical(tmp_path, mnist, float64):
    cfg = config(compile=True)
    fast, run, batches, noises = fast_steps(cfg, mnist, tmp_path)
    canonical, (g, d) = canonical_on(cfg, batches, noises)
    assert_rows_close(fast, canonical)
    assert_weights_close(run.G, g)
    assert_weights_close(run.D, d)
