import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see dcgan/__init__.py

import pytest  # noqa: E402
import torch  # noqa: E402

# Tests are deterministic and share 2 cores with whatever else runs: pin threads.
torch.set_num_threads(int(os.environ.get("DCGAN_TEST_THREADS", "2")))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Dataset/feature caches go to a per-session temp dir, never the user's results/."""
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("DCGAN_CACHE_DIR", str(cache))
    yield
