"""DCGAN ablation suite: which DCGAN tricks actually matter, measured."""

__version__ = "0.1.0"
