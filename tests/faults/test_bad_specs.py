"""Malformed specs and overrides: each rejected while the spec loads (or before the first
step trains), in one line naming the file, the key and what would be valid."""

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
        ["profiles.cpu.extractor", "'vgg' is not valid", "mnist", "inception"],
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
        "unpadded D at 128px",
        HEAD + '[arms.a]\nd_layout = "unpadded_001"\nimage_size = 128\n',
        ["unpadded_001", "image_size=128"],
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


TWO = GOOD_ARMS
# Cases found by trying the suite as an adversarial new user (issue 17): each crashed later, as a
# traceback after training, or was silently misread.
MORE_BAD_SPECS = [
    ("top-level seeds repeat", HEAD + "seeds = [0, 0]\n" + TWO, ["seeds", "repeats a seed"]),
    ("seeds as a string", HEAD + 'seeds = "01"\n' + TWO, ["seeds", "'01'", "list of integers"]),
    ("seeds as a number", HEAD + "seeds = 3\n" + TWO, ["seeds", "list of integers"]),
    ("seeds as booleans", HEAD + "seeds = [true]\n" + TWO, ["seeds", "integers"]),
    ("fractional seed", HEAD + "seeds = [0.5]\n" + TWO, ["seeds", "integers"]),
    (
        "profile seeds as a string",
        HEAD + TWO + '[profiles.cpu]\nseeds = "012"\n',
        ["profiles.cpu.seeds"],
    ),
    (
        "an arm sets seed",
        HEAD + "[arms.a]\nseed = 3\n[arms.b]\nseed = 4\n",
        ["arms.a.seed", "seeds"],
    ),
    (
        "a profile overrides seed",
        HEAD + TWO + "[profiles.cpu.overrides]\nseed = 1\n",
        ["profiles.cpu.overrides.seed"],
    ),
    ("notes as a string", HEAD + 'notes = "one note"\n' + TWO, ["notes", "list of strings"]),
    ("notes of numbers", HEAD + "notes = [1, 2]\n" + TWO, ["notes", "list of strings"]),
    ("sources as a string", HEAD + 'sources = "003"\n' + TWO, ["sources", "[[sources]]"]),
    ("sources of numbers", HEAD + "sources = [1, 2]\n" + TWO, ["sources[0]", "table"]),
    (
        "a source with a number",
        HEAD + TWO + "[[sources]]\ndocument = 3\n",
        ["sources[0].document", "string"],
    ),
    ("claims as a table", HEAD + TWO + "[claims]\nkind = 'info'\n", ["claims", "list"]),
    ("claims of strings", HEAD + 'claims = ["better"]\n' + TWO, ["claims[0]", "table"]),
    (
        "reported as text",
        HEAD + TWO + '[[claims]]\nkind = "info"\nreported = { fid = "low" }\n',
        ["claims[0].reported.fid", "number"],
    ),
    (
        "reported NaN",
        HEAD + TWO + '[[claims]]\nkind = "info"\nreported = { g_loss = nan }\n',
        ["claims[0].reported.g_loss", "finite"],
    ),
    (
        "reported as a list",
        HEAD + TWO + '[[claims]]\nkind = "info"\nreported = [1]\n',
        ["claims[0].reported", "table"],
    ),
    (
        "claim text as a number",
        HEAD + TWO + '[[claims]]\nkind = "info"\ntext = 5\n',
        ["claims[0].text", "string"],
    ),
    ("profiles as a number", HEAD + "profiles = 3\n" + TWO, ["profiles", "table"]),
    (
        "profile overrides as a number",
        HEAD + TWO + "[profiles.cpu]\noverrides = 3\n",
        ["profiles.cpu.overrides", "table"],
    ),
    (
        "profile escapes results/",
        HEAD + TWO + '[profiles."../../evil"]\nseeds = [0]\n',
        ["profiles.../../evil", "letters, digits"],
    ),
    (
        "profile with a slash",
        HEAD + TWO + '[profiles."a/b"]\nseeds = [0]\n',
        ["profiles.a/b", "file names"],
    ),
    ("profile with a space", HEAD + TWO + '[profiles."a b"]\nseeds = [0]\n', ["profiles.a b"]),
    (
        "profile description a number",
        HEAD + TWO + "[profiles.cpu]\ndescription = 3\n",
        ["profiles.cpu.description", "string"],
    ),
    (
        "arm sets a table",
        HEAD + "[arms.a]\ng_width = { x = 1 }\n",
        ["arms.a.g_width", "single value"],
    ),
    ("arm sets a list", HEAD + "[arms.a]\nlr_g = [0.1, 0.2]\n", ["arms.a.lr_g", "single value"]),
    ("deep nesting in an arm", HEAD + "[arms.a.b.c.d]\nx = 1\n", ["arms.a", "b"]),
    ("arm label a number", HEAD + "[arms.a]\nlabel = 3\n", ["arms.a.label", "string"]),
    (
        "arm identical to the baseline",
        HEAD + '[arms.a]\ng_activation = "relu"\n[arms.b]\ng_activation = "relu"\n',
        ["arms.b", "same runs as the baseline 'a'"],
    ),
    (
        "two arms identical",
        HEAD
        + '[arms.a]\nloss = "bce"\n[arms.b]\nloss = "bce_logits"\n[arms.c]\nloss = "bce_logits"\n',
        ["arms.c", "arm 'b'"],
    ),
    (
        "arm equal to baseline via cadence only",
        HEAD + "[arms.a]\nlog_every = 5\n[arms.b]\nlog_every = 10\n",
        ["arms.b", "same runs"],
    ),
    (
        "arm name as a formula",
        HEAD + '[arms."=HYPERLINK(\\"http://x\\")"]\nloss = "bce"\n[arms.a]\nloss = "bce_logits"\n',
        ["formula"],
    ),
    (
        "arm name starting with +",
        HEAD + '[arms."+cmd"]\nloss = "bce"\n[arms.a]\nloss = "bce_logits"\n',
        ["formula"],
    ),
    (
        "arm name starting with @",
        HEAD + '[arms."@SUM(A1)"]\nloss = "bce"\n[arms.a]\nloss = "bce_logits"\n',
        ["formula"],
    ),
    (
        "arm name starting with -",
        HEAD + '[arms."-2+3"]\nloss = "bce"\n[arms.a]\nloss = "bce_logits"\n',
        ["formula"],
    ),
    (
        "arm name with a newline",
        HEAD + '[arms."x\\ny"]\nloss = "bce"\n[arms.a]\nloss = "bce_logits"\n',
        ["control characters"],
    ),
    ("absurd width", HEAD + "[arms.a]\ng_width = 1000000\n", ["g_width=1000000", "maximum"]),
    ("absurd batch", HEAD + "[arms.a]\nbatch_size = 10000000\n", ["batch_size", "maximum"]),
    ("absurd nz", HEAD + "[arms.a]\nnz = 1000000000\n", ["nz", "maximum"]),
    ("absurd budget in kimg", HEAD + "[arms.a]\nkimg = 1e12\n", ["kimg", "maximum"]),
    ("absurd budget in steps", HEAD + "[arms.a]\nsteps = 1000000000000\n", ["steps", "maximum"]),
    ("absurd g_steps", HEAD + "[arms.a]\ng_steps = 100000\n", ["g_steps", "maximum"]),
    (
        "question as a number",
        'question = 3\nbase_recipe = "cpu_default"\nbaseline = "a"\n' + TWO,
        ["question", "string"],
    ),
    (
        "scoring (accepted and ignored until session 3)",
        HEAD + "scoring = 3\n" + TWO,
        ["scoring", "unknown key"],
    ),
    ("empty file", "", ["question", "required"]),
    ("a bare value", "42", ["not valid TOML"]),
    ("deeply nested arrays", HEAD + "x = " + "[" * 3000 + "]" * 3000 + "\n", ["not valid TOML"]),
]


@pytest.mark.fault("specs")
@pytest.mark.parametrize(
    "name,text,words", BAD_SPECS + MORE_BAD_SPECS, ids=[b[0] for b in BAD_SPECS + MORE_BAD_SPECS]
)
def test_malformed_spec_is_rejected_with_file_and_key(tmp_path, name, text, words):
    path = tmp_path / "bad_spec.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    message = str(err.value)
    assert str(path) in message, message
    assert "\n" not in message.strip() or name == "arm name with a newline", message
    for word in words:
        assert word in message, (word, message)


BAD_FILES = [
    ("a directory named .toml", lambda p: p.mkdir(), ["is not a file"]),
    ("not UTF-8", lambda p: p.write_bytes(b'question = "\xff\xfe"\n'), ["not UTF-8"]),
    ("a file over 1 MiB", lambda p: p.write_text("# " + "x" * (1 << 20) + "\n"), ["at most 1 MiB"]),
    ("a broken symlink", lambda p: p.symlink_to(p.parent / "gone.toml"), ["does not exist"]),
]


@pytest.mark.fault("specs")
@pytest.mark.parametrize("name,make,words", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_unreadable_spec_files_are_one_line_errors(tmp_path, name, make, words):
    path = tmp_path / "spec.toml"
    make(path)
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    for word in words:
        assert word in str(err.value), str(err.value)


BAD_NAMES = ["my spec", "<script>", "-rf", "a&b", "x" * 80, "caf\u00e9"]


@pytest.mark.fault("specs")
@pytest.mark.parametrize("stem", BAD_NAMES, ids=[n[:12] for n in BAD_NAMES])
def test_a_spec_name_that_cannot_name_a_page_is_refused(tmp_path, stem):
    path = tmp_path / f"{stem}.toml"
    path.write_text(HEAD + GOOD_ARMS)
    with pytest.raises(ConfigError, match="cannot name a study, report page and table"):
        load_spec(path)


@pytest.mark.fault("specs", n=2)
def test_a_byte_order_mark_is_read_and_seeds_are_read_as_written(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + (HEAD + "seeds = [3, 1]\n" + GOOD_ARMS).encode())
    spec = load_spec(path)
    assert spec.question == "q?" and spec.profiles["cpu"].seeds == [3, 1]


@pytest.mark.fault("specs")
def test_a_profile_collapsing_two_arms_is_allowed_when_they_differ_elsewhere(tmp_path):
    """`recipes` under `smoke` sets one batch size for all arms: the arms still differ under
    the other profiles, so the spec loads (ablate trains the shared run once)."""
    spec = load_spec("recipes")
    assert "anime512" in spec.arms


BAD_OVERRIDES = [
    ({"g_steps": -1}, "g_steps"),
    ({"image_size": 100}, "32, 64, 128"),
    ({"nz": "lots"}, "nz"),
    ({"data": "imagenet"}, "folder:PATH"),
]


@pytest.mark.fault("specs")
@pytest.mark.parametrize("overrides,word", BAD_OVERRIDES)
def test_malformed_override_is_rejected(overrides, word):
    with pytest.raises(ConfigError, match=word.replace("(", r"\(")):
        build_config("tutorial", overrides, where="--set")


# ---- values only the data or the machine can refute: refused before any store or training --------
def _ablate(tmp_path, text, profile="smoke", **kw):
    from dcgan.runner import Paths, run_ablation

    path = tmp_path / "spec.toml"
    path.write_text(text)
    paths = Paths(tmp_path / "r", tmp_path / "p")
    try:
        return run_ablation(str(path), profile, paths=paths, log=lambda s: None, **kw)
    finally:
        assert not (tmp_path / "r" / "store.db").exists(), "a store was created before the check"


@pytest.mark.fault("specs")
def test_batch_larger_than_dataset_fails_before_any_run(tmp_path):
    with pytest.raises(ConfigError, match=r"arms.a: batch_size=6000 is larger than the dataset"):
        _ablate(tmp_path, HEAD + "[arms.a]\nbatch_size = 6000\n")


@pytest.mark.fault("specs")
def test_n_fake_larger_than_the_data_fails_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"n_fake=6000.*has 5000 images"):
        _ablate(tmp_path, HEAD + GOOD_ARMS + "[profiles.smoke]\nn_fake = 6000\n")


@pytest.mark.fault("specs")
def test_cuda_without_a_gpu_fails_before_training(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device='cuda' but this machine has no CUDA device"):
        _ablate(tmp_path, HEAD + '[arms.a]\ndevice = "cuda"\n')


@pytest.mark.fault("specs")
def test_bf16_without_a_gpu_fails_before_training(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    arm = '[arms.a]\namp = "bf16"\nloss = "bce_logits"\n'
    with pytest.raises(ConfigError, match="amp='bf16' needs a CUDA device"):
        _ablate(tmp_path, HEAD + arm)


@pytest.mark.fault("specs")
def test_repeated_seeds_from_the_caller_fail_before_training(tmp_path):
    with pytest.raises(ConfigError, match="repeats a seed"):
        _ablate(tmp_path, HEAD + GOOD_ARMS, seeds=[0, 0])


@pytest.mark.fault("specs")
def test_a_profile_the_spec_lacks_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no profile '../../x'"):
        _ablate(tmp_path, HEAD + GOOD_ARMS, profile="../../x")


@pytest.mark.fault("specs")
def test_a_profile_that_makes_arms_identical_is_said_before_training(tmp_path, caplog):
    import logging

    from dcgan import preflight

    spec = load_spec("recipes")
    with caplog.at_level(logging.WARNING, logger="dcgan"):
        preflight.check_plan(spec, spec.plan("smoke", seeds=[0]))
    assert "'anime512' and 'tutorial' plan the same runs" in caplog.text


@pytest.mark.fault("security")
def test_train_resumes_past_a_crafted_checkpoint_without_running_it(tmp_path, capsys):
    from dcgan import atomic
    from dcgan.cli import main

    out = tmp_path / "run"
    tiny = ["--steps", "2", "--set", "g_width=4", "--set", "d_width=4", "--set", "batch_size=8"]
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    out.mkdir()
    atomic.save_with_checksum({"G": Evil()}, out / "checkpoint.pt")
    assert main(["train", *tiny, "--out", str(out)]) == 0
    assert not marker.exists() and list((out / "quarantine").iterdir())


@pytest.mark.fault("security")
def test_csv_safe_defuses_formula_cells_and_keeps_numbers():
    import pandas as pd

    from dcgan.spec_checks import csv_safe

    frame = pd.DataFrame(
        {"arm": ["=1+1", "@SUM(A1)", "+x", "-y", "fine"], "fid": [1.0, -2.0, 3.0, 4.0, 5.0]}
    )
    safe = csv_safe(frame)
    assert list(safe["arm"]) == ["'=1+1", "'@SUM(A1)", "'+x", "'-y", "fine"]
    assert list(safe["fid"]) == [1.0, -2.0, 3.0, 4.0, 5.0]
