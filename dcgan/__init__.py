"""DCGAN ablation suite: which DCGAN tricks actually matter, measured.

    import dcgan
    table, results = dcgan.load_results("activation")   # see dcgan/api.py

Importing the package is cheap (the command line's --help depends on it): `load_results`
imports pandas, Optuna and torch on first use.
"""

# OpenMP's wait policy is left to the user (OMP_WAIT_POLICY, read when torch is imported).
# Measured here, a 2-thread cpu_default step: 1,502 img/s with libgomp's default spin-waiting
# on an idle machine, 1,061 img/s with PASSIVE; but spinning threads run 10-30x slower when
# another process holds a core. Ablation workers run one thread each, where the policy does
# not matter; the test suite shares its cores with its own subprocesses and sets PASSIVE.

__version__ = "0.1.0"
__all__ = ["__version__", "load_results"]


def __getattr__(name: str):
    if name == "load_results":
        from .api import load_results

        return load_results
    raise AttributeError(f"module 'dcgan' has no attribute {name!r}")
