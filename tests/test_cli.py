"""`python -m dcgan train`: what the command line resolves to, and that it trains."""

from __future__ import annotations

import json

import pytest

from dcgan.cli import main

TINY = ["--steps", "2", "--set", "g_width=4", "--set", "d_width=4", "--set", "batch_size=8"]


@pytest.mark.parametrize(
    ("extra", "channels"),
    [
        ([], 1),  # the recipe's nc=3 is for colour data; MNIST trains grey, as main.py does
        (["--data", "mnist"], 1),
        (["--set", "channels=3"], 3),  # asked for explicitly: kept
        (["--data", "stacked_mnist"], 3),
    ],
)
def test_train_resolves_channels_from_the_data(tmp_path, extra, channels):
    out = tmp_path / "run"
    assert main(["train", "--recipe", "tutorial", *TINY, *extra, "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["channels"] == channels
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "completed" and result["steps_done"] == 2


def test_train_rejects_a_bad_override_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(["train", "--recipe", "tutorial", "--set", "g_activation=selu2", "--out", str(out)])
        == 2
    )
    err = capsys.readouterr().err
    assert "g_activation" in err and "leaky_relu" in err
    assert not out.exists()
