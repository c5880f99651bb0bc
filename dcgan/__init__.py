"""DCGAN ablation suite: which DCGAN tricks actually matter, measured."""

import os

# OpenMP's default spin-waiting makes torch 10-30x slower whenever another process holds a
# core (parallel workers, a shared machine); sleeping waits cost ~nothing on an idle one.
# Must be set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
