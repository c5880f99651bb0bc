"""The error every layer raises for input that cannot be run; lowest layer, imports nothing."""


class ConfigError(ValueError):
    """A config, recipe, override or spec that cannot be run, with where and what is valid."""
