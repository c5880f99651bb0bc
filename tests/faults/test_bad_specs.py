"""Malformed specs and overrides: each rejected before training, naming file, key and valid values."""

import pytest

from dcgan.config import ConfigError
from dcgan.recipes import build_config
from dcgan.specs import load_spec

GOOD_ARMS = '[arms.a]\ng_activation = "relu"\n[arms.b]\ng_activation = "selu"\n'
HEAD = 'question = "q?"\nbase_recipe = "cpu_default"\nbaseline = "a"\n'

# (name, spec text, words the message must contain)
BAD_SPECS = [
    (
        "unknown top-level key",
        HEAD + "qestion = 1\n" + GOOD_ARMS,
        ["qestion", "did you mean", "question"],
    ),
    (
        "typo in arm key",
        HEAD + '[arms.a]\ng_activaton = "relu"\n',
        ["arms.a.g_activaton", "g_activation"],
    ),
    (
        "invalid choice",
        HEAD + '[arms.a]\ng_activation = "selu2"\n',
        ["arms.a.g_activation", "'relu', 'leaky_relu', 'selu'"],
    ),
    ("wrong type", HEAD + '[arms.a]\nbatch_size = "big"\n', ["batch_size", "wrong type"]),
    (
        "negative budget",
        HEAD + GOOD_ARMS + "[profiles.cpu.overrides]\nkimg = -5\n",
        ["kimg=-5", "positive"],
    ),
    ("zero steps", HEAD + GOOD_ARMS + "[profiles.cpu.overrides]\nsteps = 0\n", ["steps=0"]),
    ("NaN learning rate", HEAD + "[arms.a]\nlr_g = nan\n", ["lr_g=nan", "finite"]),
    ("lr above 1", HEAD + "[arms.a]\nlr_d = 5.0\n", ["lr_d=5.0"]),
    (
        "unknown recipe",
        'question = "q?"\nbase_recipe = "dcgan2"\nbaseline = "a"\n' + GOOD_ARMS,
        ["base_recipe", "dcgan2", "tutorial"],
    ),
    (
        "unknown arm recipe",
        HEAD + '[arms.a]\nrecipe = "celeba"\n',
        ["arms.a.recipe", "celeba_logits"],
    ),
    ("empty arms", HEAD + "[arms]\n", ["arms", "at least one"]),
    ("no arms", HEAD, ["arms", "at least one"]),
    (
        "duplicate arm names",
        HEAD + GOOD_ARMS + '[arms.a]\ng_activation = "selu"\n',
        ["not valid TOML"],
    ),
    (
        "baseline not an arm",
        'question = "q?"\nbase_recipe = "cpu_default"\nbaseline = "zzz"\n' + GOOD_ARMS,
        ["baseline", "zzz", "a, b"],
    ),
    (
        "missing question",
        'base_recipe = "cpu_default"\nbaseline = "a"\n' + GOOD_ARMS,
        ["question", "required"],
    ),
    (
        "bad extractor",
        HEAD + GOOD_ARMS + '[profiles.cpu]\nextractor = "vgg"\n',
        ["profiles.cpu.extractor", "mnist, inception"],
    ),
    ("empty seeds", HEAD + GOOD_ARMS + "[profiles.cpu]\nseeds = []\n", ["profiles.cpu.seeds"]),
    ("negative seed", HEAD + GOOD_ARMS + "[profiles.cpu]\nseeds = [-1]\n", ["profiles.cpu.seeds"]),
    ("repeated seed", HEAD + GOOD_ARMS + "[profiles.cpu]\nseeds = [1, 1]\n", ["repeats a seed"]),
    (
        "n_fake too small",
        HEAD + GOOD_ARMS + "[profiles.cpu]\nn_fake = 1\n",
        ["profiles.cpu.n_fake"],
    ),
    (
        "bad width multiplier",
        HEAD + GOOD_ARMS + "[profiles.cpu]\nwidth_multiplier = -2\n",
        ["width_multiplier"],
    ),
    (
        "unknown profile key",
        HEAD + GOOD_ARMS + "[profiles.cpu]\nseed = [1]\n",
        ["profiles.cpu.seed", "seeds"],
    ),
    (
        "bad match_baseline",
        HEAD + '[arms.a]\nmatch_baseline = "flops"\n',
        ["match_baseline", "'images' or 'steps'"],
    ),
    (
        "claim about a missing arm",
        HEAD + GOOD_ARMS + '[[claims]]\nkind = "better"\narm = "a"\nvs = "c"\n',
        ["claims[0].vs", "no arm 'c'"],
    ),
    (
        "claim of unknown kind",
        HEAD + GOOD_ARMS + '[[claims]]\nkind = "maybe"\n',
        ["claims[0].kind", "better"],
    ),
    (
        "unpadded D at 32px",
        HEAD + '[arms.a]\nd_layout = "unpadded_001"\n',
        ["unpadded_001", "image_size=32"],
    ),
    (
        "stacked MNIST in gray",
        HEAD + '[arms.a]\ndata = "stacked_mnist"\n',
        ["stacked_mnist", "channels=3"],
    ),
    (
        "bf16 with Sigmoid+BCELoss",
        HEAD + '[arms.a]\namp = "bf16"\n',
        ["bf16", "unsafe under autocast"],
    ),
    ("not TOML at all", "this is = = not toml", ["not valid TOML"]),
    ("arm is not a table", HEAD + "arms = 3\n", ["arms"]),
]


@pytest.mark.parametrize("name,text,words", BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_malformed_spec_is_rejected_with_file_and_key(tmp_path, name, text, words, tally):
    path = tmp_path / "bad_spec.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    message = str(err.value)
    assert str(path) in message, message
    for word in words:
        assert word in message, (word, message)
    tally("malformed specs rejected before training", 1, 1)


BAD_OVERRIDES = [
    ({"g_steps": -1}, "g_steps"),
    ({"image_size": 100}, "32, 64, 128"),
    ({"nz": "lots"}, "nz"),
    ({"data": "imagenet"}, "folder:PATH"),
]


@pytest.mark.parametrize("overrides,word", BAD_OVERRIDES)
def test_malformed_override_is_rejected(overrides, word, tally):
    with pytest.raises(ConfigError, match=word.replace("(", r"\(")):
        build_config("tutorial", overrides, where="--set")
    tally("malformed overrides rejected", 1, 1)


def test_batch_larger_than_dataset_fails_before_any_run(tmp_path, tally):
    from dcgan.runner import Paths, run_ablation

    path = tmp_path / "big_batch.toml"
    path.write_text(HEAD + "[arms.a]\nbatch_size = 6000\n")
    with pytest.raises(ConfigError, match=r"arms.a: batch_size=6000 is larger than the dataset"):
        run_ablation(
            str(path), "smoke", paths=Paths(tmp_path / "r", tmp_path / "p"), log=lambda s: None
        )
    assert not (tmp_path / "r" / "store.db").exists()
    tally("malformed specs rejected before training", 1, 1)
