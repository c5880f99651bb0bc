"""Small specs, folders and stand-ins shared by the fault suite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

HEAD = 'question = "q?"\nbase_recipe = "cpu_default"\nbaseline = "a"\n'
GOOD_ARMS = '[arms.a]\ng_activation = "relu"\n[arms.b]\ng_activation = "selu"\n'
# A profile that trains a run in about a second and scores it in about another.
TINY_PROFILE = """
[profiles.tiny]
seeds = [0]
n_fake = 20
extractor = "mnist"
[profiles.tiny.overrides]
steps = 4
batch_size = 8
g_width = 4
d_width = 4
log_every = 2
grid_every = 4
snapshot_every = 4
checkpoint_every = 4
"""


def tiny_spec(folder: Path, name: str = "tiny", *, data: str | None = None, arms: str = GOOD_ARMS,
              extra: str = "") -> Path:  # fmt: skip
    """A two-arm spec with the `tiny` profile; `data` sets the profile's data source."""
    folder.mkdir(parents=True, exist_ok=True)
    text = HEAD + extra + TINY_PROFILE
    if data:
        text = text.replace("[profiles.tiny]\n", f'[profiles.tiny]\ndata = "{data}"\n')
    path = folder / f"{name}.toml"
    path.write_text(text + arms)
    return path


def image_folder(root: Path, n: int = 24, seed: int = 0, size: int = 32) -> Path:
    """n small greyscale PNGs (noise blobs), deterministic in seed."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        array = (rng.random((size, size)) * 255).astype(np.uint8)
        Image.fromarray(array, "L").save(root / f"img_{i:03d}.png")
    return root


def fake_execute(calls: list | None = None):
    """A stand-in for runner.execute_run: records the call, trains nothing, returns a value."""

    def execute(trial, job, artifacts, images):
        if calls is not None:
            calls.append((trial.user_attrs["arm"], trial.user_attrs["seed"], job.threads))
        trial.set_user_attr("status", "completed")
        trial.set_user_attr("result", {"status": "completed", "steps_done": 1})
        trial.set_user_attr("scores", {"fid": 1.0})
        return 1.0, "stub"

    return execute
