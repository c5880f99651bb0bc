import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see dcgan/__init__.py
# (the suite runs 2-thread torch beside its own worker subprocesses: spinning would stall)

import pytest  # noqa: E402
import torch  # noqa: E402

# Tests are deterministic and share 2 cores with whatever else runs: pin threads.
torch.set_num_threads(int(os.environ.get("DCGAN_TEST_THREADS", "2")))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Dataset/feature caches go to a per-session temp dir, never the user's results/.

    Session-scoped and set in os.environ so module fixtures and subprocesses see it too."""
    cache = tmp_path_factory.getbasetemp() / "cache"
    old = os.environ.get("DCGAN_CACHE_DIR")
    os.environ["DCGAN_CACHE_DIR"] = str(cache)
    yield
    if old is None:
        os.environ.pop("DCGAN_CACHE_DIR", None)
    else:
        os.environ["DCGAN_CACHE_DIR"] = old


# A run small enough to train in about a second: 12 steps, checkpoints and snapshots at 6 and 12.
TINY_RUN = dict(
    g_width=8,
    d_width=8,
    batch_size=16,
    steps=12,
    log_every=3,
    grid_every=6,
    snapshot_every=6,
    checkpoint_every=6,
)


@pytest.fixture(scope="session")
def mnist():
    from dcgan.data import load_images

    return load_images("mnist", 32, 1)
