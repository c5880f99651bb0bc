import math

import pytest

from dcgan.config import ConfigError, RunConfig, parse_overrides
from dcgan.recipes import RECIPES, build_config


def test_defaults_are_valid_and_hash_is_stable():
    assert RunConfig().hash() == RunConfig().hash()
    assert RunConfig(seed=1).hash() != RunConfig(seed=0).hash()
    # execution-only fields do not change the run's identity (resume on another device)
    assert RunConfig(device="cpu").hash() == RunConfig(device="auto").hash()


@pytest.mark.parametrize(
    "key,value,expect",
    [
        ("g_activation", "selu2", "'relu', 'leaky_relu', 'selu'"),
        ("d_activation", "relu", "'leaky_relu', 'selu'"),
        ("g_upsample", "bilinear", "'conv_transpose', 'upsample_conv'"),
        ("loss", "hinge", "'bce', 'bce_logits'"),
        ("init", "xavier", "'dcgan', 'pytorch_default'"),
        ("lr_schedule", "warmup", "'constant', 'step_decay'"),
        ("image_size", 48, "32, 64, 128"),
        ("channels", 2, "1, 3"),
        ("device", "tpu", "'auto', 'cpu', 'cuda'"),
    ],
)
def test_invalid_choice_names_key_and_valid_values(key, value, expect):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict({key: value}, where="spec.toml")
    message = str(err.value)
    assert key in message and repr(value) in message and expect in message
    assert "spec.toml" in message


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(
        ConfigError, match=r"unknown key 'g_activaton'.*did you mean 'g_activation'"
    ):
        RunConfig.from_dict({"g_activaton": "selu"})


@pytest.mark.parametrize(
    "values",
    [
        {"lr_g": float("nan")},
        {"lr_d": -1e-4},
        {"batch_size": 0},
        {"kimg": -5},
        {"steps": 0},
        {"beta1_g": 1.0},
        {"g_steps": 0},
        {"seed": -1},
        {"data": "imagenet"},
        {"data": "folder:"},
        {"batch_size": 12.5},
        {"g_last_bn": "maybe"},
        {"d_layout": "unpadded_001", "image_size": 128},
        {"amp": "bf16", "loss": "bce"},
        {"data": "stacked_mnist", "channels": 1},
    ],
)
def test_invalid_values_are_rejected(values):
    with pytest.raises(ConfigError):
        RunConfig.from_dict(values)


def test_cli_overrides_are_coerced_by_field_type():
    cfg = RunConfig.from_dict(
        parse_overrides(["batch_size=32", "lr_g=1e-3", "g_last_bn=true", "steps=none"])
    )
    assert (
        cfg.batch_size == 32
        and math.isclose(cfg.lr_g, 1e-3)
        and cfg.g_last_bn
        and cfg.steps is None
    )
    with pytest.raises(ConfigError, match="not key=value"):
        parse_overrides(["batch_size"])


def test_budget_in_images_or_steps():
    assert RunConfig(kimg=6.4, batch_size=64).total_steps == 100
    assert RunConfig(kimg=6.4, batch_size=64, steps=7).total_steps == 7


def test_every_recipe_builds_and_unknown_recipe_lists_choices():
    for name in RECIPES:
        build_config(name)
    with pytest.raises(ConfigError, match="unknown recipe 'dcgan2'.*tutorial"):
        build_config("dcgan2")
