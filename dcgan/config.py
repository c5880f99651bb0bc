"""One validated config type for a training run.

Every ablation axis of the five source documents is a field here, so an ablation arm is
nothing more than a named set of overrides of these fields. Validation happens at
construction: a bad key or value fails with the key, the offending value and what would be
valid, before any data is loaded or a step is trained.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, fields
from typing import Any

from .errors import ConfigError  # noqa: F401 (re-exported: dcgan.config.ConfigError)

# The single table of choices: config validation, the CLI help and the docs read it.
CHOICES: dict[str, tuple] = {
    "image_size": (32, 64, 128),
    "channels": (1, 3),
    "g_activation": ("relu", "leaky_relu", "selu"),
    "d_activation": ("leaky_relu", "selu"),
    "g_upsample": ("conv_transpose", "upsample_conv"),
    # standard: the DCGAN discriminator of 003/000/002/004. unpadded_001: document 001's
    # five unpadded convolutions with biases (64 -> 31 -> 14 -> 11 -> 4 -> 1); at 32x32 four
    # (32 -> 15 -> 6 -> 3 -> 1, the fourth block dropped: dcgan/models.py).
    "d_layout": ("standard", "unpadded_001"),
    # bce: Sigmoid head + BCELoss (003). bce_logits: logits head + BCEWithLogitsLoss (001).
    # hinge and wasserstein slot in here later; they need a logits head too.
    "loss": ("bce", "bce_logits"),
    "d_loss_reduction": ("sum", "mean"),
    "init": ("dcgan", "pytorch_default"),
    "lr_schedule": ("constant", "step_decay", "linear", "cosine", "exponential"),
    "device": ("auto", "cpu", "cuda"),
    "amp": ("off", "bf16"),
}


@dataclass(frozen=True)
class RunConfig:
    # data
    data: str = "mnist"  # mnist | stacked_mnist | folder:PATH
    image_size: int = 32
    channels: int = 1
    # networks
    nz: int = 100
    g_width: int = 64
    d_width: int = 64
    g_activation: str = "relu"
    d_activation: str = "leaky_relu"
    g_upsample: str = "conv_transpose"
    d_layout: str = "standard"
    d_first_bn: bool = False
    g_last_bn: bool = False
    init: str = "dcgan"
    # objective
    loss: str = "bce"
    d_loss_reduction: str = "sum"  # 003 sums real+fake losses; 001 averages them
    # optimisation
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1_g: float = 0.5
    beta2_g: float = 0.999
    beta1_d: float = 0.5
    beta2_d: float = 0.999
    g_steps: int = 1  # generator updates per discriminator update
    g_fresh_noise: bool = False  # False: the G step re-uses the D step's fakes (003)
    lr_schedule: str = "constant"
    lr_final_ratio: float = 0.01  # linear / cosine / exponential end at lr * this
    batch_size: int = 128
    # budget: images seen (kimg) unless steps is set
    kimg: float = 20.0
    steps: int | None = None
    seed: int = 0
    # divergence: a non-finite loss, or D winning outright for a whole log window
    diverge_g_loss: float = 30.0
    # execution (does not change the maths beyond float rounding)
    device: str = "auto"
    amp: str = "off"
    channels_last: bool = True
    compile: bool = False
    # torch threads for this run; 0 = the worker's. An execution replicate sets it to measure
    # how far thread count alone moves the numbers (oneDNN splits reductions by thread).
    threads: int = 0
    # cadence, in steps
    log_every: int = 25
    grid_every: int = 250
    snapshot_every: int = 250
    checkpoint_every: int = 250

    def __post_init__(self) -> None:
        self._validate()

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> RunConfig:
        """Build from plain data (JSON, TOML, CLI); unknown keys are errors, not ignored."""
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=3)
                raise ConfigError(
                    f"{where}: unknown key {key!r}"
                    + (f" (did you mean {', '.join(map(repr, hint))}?)" if hint else "")
                    + f"; valid keys: {', '.join(sorted(known))}"
                )
        coerced = {k: _coerce(k, v, where) for k, v in values.items()}
        try:
            return cls(**coerced)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None

    def replace(self, where: str = "overrides", **overrides: Any) -> RunConfig:
        merged = {**self.to_dict(), **overrides}
        return RunConfig.from_dict(merged, where=where)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Identity of the maths a run performs, its data's content included; resuming under
        another hash is refused."""
        ignored = {"device", "log_every", "grid_every", "snapshot_every", "checkpoint_every"}
        payload = {k: v for k, v in self.to_dict().items() if k not in ignored}
        if payload["threads"] == 0:  # the default keeps every identity made before the field
            del payload["threads"]
        # A folder's content is part of the identity: replace the images and every run is new.
        # (mnist / stacked_mnist are fixed by the code: their identities stay as they were.)
        from .data import data_identity

        content = data_identity(self.data)
        if content is not None:
            payload["data_content"] = content
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    # ---- derived --------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return planned_steps(self.steps, self.kimg, self.batch_size)

    @property
    def total_kimg(self) -> float:
        return planned_kimg(self.steps, self.kimg, self.batch_size)

    @property
    def d_sigmoid_head(self) -> bool:
        return self.loss == "bce"

    # ---- validation -----------------------------------------------------------------------
    def _validate(self) -> None:
        for key, allowed in CHOICES.items():
            value = getattr(self, key)
            if value not in allowed:
                raise ConfigError(
                    f"{key}={value!r} is not valid; choose one of {', '.join(map(repr, allowed))}"
                )
        if not (
            self.data in ("mnist", "stacked_mnist")
            or (self.data.startswith("folder:") and len(self.data) > 7)
        ):
            raise ConfigError(
                f"data={self.data!r} is not valid; choose 'mnist', 'stacked_mnist' or 'folder:PATH'"
            )
        positive_ints = ["nz", "g_width", "d_width", "g_steps", "batch_size", "log_every"]
        positive_ints += ["grid_every", "snapshot_every", "checkpoint_every"]
        if not (isinstance(self.threads, int) and 0 <= self.threads <= 256):
            raise ConfigError(
                f"threads={self.threads!r} must be an integer 0..256 (0: the worker's)"
            )
        for key in positive_ints:
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}={getattr(self, key)!r} must be a positive integer")
        if self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} must be >= 0")
        for key in ["lr_g", "lr_d"]:
            value = getattr(self, key)
            if not (math.isfinite(value) and 0 < value < 1):
                raise ConfigError(f"{key}={value!r} must be a finite learning rate in (0, 1)")
        for key in ["beta1_g", "beta2_g", "beta1_d", "beta2_d"]:
            value = getattr(self, key)
            if not (math.isfinite(value) and 0 <= value < 1):
                raise ConfigError(f"{key}={value!r} must be in [0, 1)")
        if not (math.isfinite(self.lr_final_ratio) and 0 < self.lr_final_ratio <= 1):
            raise ConfigError(f"lr_final_ratio={self.lr_final_ratio!r} must be in (0, 1]")
        if not (math.isfinite(self.kimg) and self.kimg > 0):
            raise ConfigError(
                f"kimg={self.kimg!r} must be a positive number of thousands of images"
            )
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps={self.steps!r} must be a positive integer (or unset)")
        if not (math.isfinite(self.diverge_g_loss) and self.diverge_g_loss > 0):
            raise ConfigError(f"diverge_g_loss={self.diverge_g_loss!r} must be positive")
        if self.d_layout == "unpadded_001" and self.image_size not in (32, 64):
            raise ConfigError(
                f"d_layout='unpadded_001' is document 001's 64x64 discriminator (with a 32x32 "
                f"variant); image_size={self.image_size} needs d_layout='standard'"
            )
        if self.data == "stacked_mnist" and self.channels != 3:
            raise ConfigError("data='stacked_mnist' is RGB: set channels=3")
        if self.amp == "bf16" and self.loss == "bce":
            raise ConfigError(
                "amp='bf16' with loss='bce': Sigmoid+BCELoss is unsafe under autocast; "
                "use loss='bce_logits' or amp='off'"
            )


_FIELD_TYPES = {f.name: f.type for f in fields(RunConfig)}


def _coerce(key: str, value: Any, where: str) -> Any:
    """Turn TOML/CLI values into the field's type, refusing lossy or nonsensical ones."""
    kind = _FIELD_TYPES[key]
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
                return value.lower() in ("true", "1")
            raise TypeError
        if kind == "int":
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, float) and not value.is_integer():
                raise TypeError
            return int(value)
        if kind == "int | None":
            if value is None or (isinstance(value, str) and value.lower() in ("none", "")):
                return None
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if kind == "str":
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        choices = CHOICES.get(key)
        valid = f"one of {', '.join(map(repr, choices))}" if choices else f"a {kind}"
        raise ConfigError(
            f"{where}: {key}={value!r} has the wrong type; expected {valid}"
        ) from None
    return value


def parse_overrides(pairs: list[str], where: str = "--set") -> dict[str, Any]:
    """`key=value` strings from the command line; values stay strings until coerced."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"{where}: {pair!r} is not key=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def planned_steps(steps: int | None, kimg: float, batch_size: int) -> int:
    """A run's length: `steps` when set (batch 512 at equal steps), else `kimg` in whole steps.
    Also read from stored config dicts (dcgan.budget), which may predate today's fields."""
    if steps is not None:
        return steps
    return max(1, math.ceil(kimg * 1000 / batch_size))


def planned_kimg(steps: int | None, kimg: float, batch_size: int) -> float:
    """The images a run sees, in thousands: whole steps x batch (a little over `kimg`)."""
    return planned_steps(steps, kimg, batch_size) * batch_size / 1000
