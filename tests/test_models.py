import pytest
import torch

from dcgan.config import RunConfig
from dcgan.models import build_models, count_parameters, generate
from dcgan.recipes import RECIPES, build_config

# The documents' own code gives these counts (../shared/DESIGN.md section 1).
PINNED = {
    "tutorial": (3_576_704, 2_765_568),
    "anime512": (3_576_704, 2_765_568),
    "default_init": (3_576_704, 2_765_568),
    "celeba_logits": (12_658_438, 430_625),
    # 004 = 003 + BatchNorm(64) after D's first conv: +128 parameters
    "pokemon": (3_576_704, 2_765_568 + 128),
}


@pytest.mark.parametrize("recipe", sorted(PINNED))
def test_recipe_parameter_counts_and_shapes(recipe):
    cfg = build_config(recipe)
    g, d = build_models(cfg)
    assert (count_parameters(g), count_parameters(d)) == PINNED[recipe]
    x = g(torch.randn(2, cfg.nz))
    assert x.shape == (2, 3, 64, 64)
    assert x.min() >= -1 and x.max() <= 1
    out = d(x)
    assert out.shape == (2,)
    if cfg.loss == "bce":
        assert ((out >= 0) & (out <= 1)).all()


def test_all_recipes_pinned():
    assert set(RECIPES) - {"cpu_default"} == set(PINNED)


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("upsample", ["conv_transpose", "upsample_conv"])
def test_sizes_channels_and_upsampling(size, upsample):
    cfg = RunConfig(image_size=size, channels=1, g_width=8, d_width=8, g_upsample=upsample)
    g, d = build_models(cfg)
    x = g(torch.randn(3, cfg.nz))
    assert x.shape == (3, 1, size, size)
    assert d(x).shape == (3,)
    if upsample == "upsample_conv":
        assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in list(g.main)[3:])


def test_unpadded_001_at_32px_keeps_its_unpadded_stride_one_layout():
    """The recipes' cpu scale: 001's D minus its fourth block, every map as its docstring says."""
    cfg = build_config("celeba_logits", {"image_size": 32, "channels": 1, "d_width": 8})
    _, d = build_models(cfg)
    x = torch.randn(2, 1, 32, 32)
    sizes = []
    for layer in d.main:
        x = layer(x)
        if isinstance(layer, torch.nn.Conv2d):
            sizes.append(x.shape[-1])
            assert layer.padding == (0, 0) and layer.bias is not None
    assert sizes == [15, 6, 3, 1]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules()) == 3


def test_same_shapes_share_initial_weights_across_arms():
    """Common random numbers: arms that differ only in activation start identical."""
    g1, d1 = build_models(RunConfig(g_activation="relu", seed=3))
    g2, d2 = build_models(RunConfig(g_activation="selu", d_activation="selu", seed=3))
    for a, b in zip(
        list(g1.parameters()) + list(d1.parameters()),
        list(g2.parameters()) + list(d2.parameters()),
        strict=True,
    ):
        assert torch.equal(a, b)
    g3, _ = build_models(RunConfig(seed=4))
    assert not torch.equal(next(g1.parameters()), next(g3.parameters()))


def test_init_schemes_differ():
    g_dcgan, _ = build_models(RunConfig(init="dcgan"))
    g_default, _ = build_models(RunConfig(init="pytorch_default"))
    w1, w2 = next(g_dcgan.parameters()), next(g_default.parameters())
    assert abs(w1.std().item() - 0.02) < 0.002
    assert abs(w2.std().item() - 0.02) > 0.002


def test_generate_leaves_model_untouched_and_is_batch_size_independent():
    g, _ = build_models(RunConfig(g_width=8))
    before = {k: v.clone() for k, v in g.state_dict().items()}
    z = torch.randn(500, 100)
    a = generate(g, z, batch_size=250)
    b = torch.cat([generate(g, z[:250], batch_size=250), generate(g, z[250:], batch_size=250)])
    assert torch.equal(a, b)
    for k, v in g.state_dict().items():
        assert torch.equal(v, before[k]), k
