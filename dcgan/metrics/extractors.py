"""Feature extractors, registered with torch-fidelity so FID/KID run through its code path.

`mnist`: the penultimate layer ('128') of the committed MNIST classifier. torch-fidelity's
input contract is uint8 (N, C, H, W); this extractor accepts C = 1 or 3 and averages RGB to
gray (in float, before scaling), so 3-channel images are scored by their luminance-like mean:
for Stacked MNIST that blurs the three digits into one, which is why its modes are counted
per channel (`classify_digits`) rather than from these features. Other sizes are resized
to 32 (bilinear, antialiased).

`randcnn` (and `ae`, not a default): the second, independent feature spaces of
`dcgan.metrics.feature_nets`, same input contract; `randcnn` is a random-init CNN, never
trained, so it shares nothing with the classifier (SANITY below says which passed).

`inception`: torch-fidelity's own `inception-v3-compat` ('2048'), fed the offline weights of
`dcgan.metrics.inception`; grayscale images are repeated to 3 channels.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity import FeatureExtractorBase, register_feature_extractor
from torch_fidelity.helpers import vassert
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor

from . import feature_nets, mnist_net

MNIST_FEATURES = str(mnist_net.FEATURE_DIM)
MNIST_INPUT_VERSION = 2  # bump when the mnist extractor's preprocessing changes
# Every run, arm and snapshot is scored on the same latent vectors: torch-fidelity's 'normal'
# noise stream (numpy RandomState) from this seed, independent of the batch size.
EVAL_NOISE_SEED = 20_260_101


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def quantise_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> uint8 exactly as real images are stored: round, clamp.

    Fakes reach the extractors through this and nothing else (never a lossy file format),
    so real and fake images differ only in what the generator drew.
    """
    return ((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def to_classifier_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W), C in (1, 3) -> float (N, 1, 32, 32) in [-1, 1]."""
    x = images.float()
    if x.shape[1] == 3:
        x = x.mean(dim=1, keepdim=True)
    if x.shape[-2:] != (mnist_net.IMAGE_SIZE, mnist_net.IMAGE_SIZE):
        x = F.interpolate(x, size=mnist_net.IMAGE_SIZE, mode="bilinear", antialias=True)
    return (x / 127.5 - 1.0).contiguous(memory_format=torch.channels_last)


class MnistFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity extractor 'mnist': features '128' (penultimate) and 'logits'."""

    def __init__(self, name: str, features_list: list[str], **kwargs):
        # torch-fidelity passes every calculate_metrics kwarg; none of them concern this net
        super().__init__(name, features_list)
        self.net = mnist_net.load_classifier()

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return MNIST_FEATURES, "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "logits" if metric == "isc" else MNIST_FEATURES

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 1, mnist_net.IMAGE_SIZE, mnist_net.IMAGE_SIZE, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        vassert(torch.is_tensor(x) and x.dtype == torch.uint8, "Expecting uint8 images")
        vassert(
            x.dim() == 4 and x.shape[1] in (1, 3), f"Input is not Bx1xHxW or Bx3xHxW: {x.shape}"
        )
        features, logits = self.net.features_and_logits(to_classifier_input(x))
        named = {MNIST_FEATURES: features, "logits": logits}
        return tuple(named[name] for name in self.features_list)


if "mnist" not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor("mnist", MnistFeatureExtractor)


class FeatureNetExtractor(FeatureExtractorBase):
    """torch-fidelity extractor for a committed `feature_nets` net: one feature layer, named
    by its width (e.g. '128'). Subclassed once per net (`_feature_net_extractor`)."""

    net_name = ""
    feature_name = ""

    def __init__(self, name: str, features_list: list[str], **kwargs):
        super().__init__(name, features_list)
        # channels_last here, not in the net: building the net (its standardisation) stays
        # bit-identical, while extraction runs ~3x faster on CPU (measured: docs/performance.md)
        self.net = feature_nets.load_net(self.net_name).to(memory_format=torch.channels_last)

    @classmethod
    def get_provided_features_list(cls) -> tuple[str, ...]:
        return (cls.feature_name,)

    @classmethod
    def get_default_feature_layer_for_metric(cls, metric: str) -> str:
        return cls.feature_name

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(
            1, 1, feature_nets.IMAGE_SIZE, feature_nets.IMAGE_SIZE, dtype=torch.uint8
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        vassert(torch.is_tensor(x) and x.dtype == torch.uint8, "Expecting uint8 images")
        vassert(
            x.dim() == 4 and x.shape[1] in (1, 3), f"Input is not Bx1xHxW or Bx3xHxW: {x.shape}"
        )
        x = feature_nets.to_input(x).contiguous(memory_format=torch.channels_last)
        return (self.net(x),)


def _feature_net_extractor(net_name: str) -> type[FeatureNetExtractor]:
    net = feature_nets.NETS[net_name]
    return type(
        f"FeatureNetExtractor_{net_name}",
        (FeatureNetExtractor,),
        {"net_name": net_name, "feature_name": str(net.dim)},
    )


for _name in feature_nets.NETS:
    if _name not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(_name, _feature_net_extractor(_name))


# ---- the registry table ------------------------------------------------------------------
def _mnist_weights() -> tuple[Path, str]:
    return mnist_net.WEIGHTS_PATH, mnist_net.WEIGHTS_SHA256


def _feature_net_weights(name: str) -> Callable[[], tuple[Path, str]]:
    def weights() -> tuple[Path, str]:
        feature_nets.load_net(name)  # verifies the checksum, or says how to build the file
        return feature_nets.NETS[name].path, feature_nets.NETS[name].sha256

    return weights


DINOV2_MODEL = "dinov2_vits14"  # torch-fidelity's dinov2-vit-s-14 (384-d)


def dinov2_files() -> tuple[Path, Path]:
    """Where torch.hub keeps DINOv2's code and weights: (hubconf.py, checkpoint)."""
    hub = Path(torch.hub.get_dir())
    return (
        hub / "facebookresearch_dinov2_main" / "hubconf.py",
        hub / "checkpoints" / f"{DINOV2_MODEL}_pretrain.pth",
    )


def _dinov2_weights() -> tuple[Path, str]:
    """DINOv2 only from local disk: torch-fidelity would fetch it through torch.hub."""
    import hashlib

    from ..config import ConfigError

    missing = [str(path) for path in dinov2_files() if not path.exists()]
    if missing:
        raise ConfigError(
            "the dinov2 extractor needs DINOv2's torch.hub code and weights on local disk and "
            f"never downloads them at run time; missing: {', '.join(missing)} (copy them from a "
            "machine where `torch.hub.load('facebookresearch/dinov2', 'dinov2_vits14')` ran)"
        )
    checkpoint = dinov2_files()[1]
    return checkpoint, hashlib.sha256(checkpoint.read_bytes()).hexdigest()


def _inception_weights() -> tuple[Path, str]:
    from .inception import ensure_weights  # heavy and optional: only when asked for

    weights = ensure_weights()
    return Path(weights.path), weights.sha256


@dataclass(frozen=True)
class ExtractorSpec:
    name: str  # ours, as it appears in metric names: fid_<name>_1k
    fidelity_name: str  # torch-fidelity's registry name
    feature_layer: str
    input_channels: int | None  # None: takes 1 or 3; 3: grayscale is repeated to RGB
    input_version: int  # part of every feature-cache key
    default_n_fake: int
    batch_size: int  # images per forward pass when featurising
    _weights: Callable[[], tuple[Path, str]]

    @property
    def weights_path(self) -> Path:
        return self._weights()[0]

    @property
    def weights_sha256(self) -> str:
        return self._weights()[1]

    def adapt_channels(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images in the channel layout this extractor takes (a view, no copy)."""
        if self.input_channels == 3 and images.shape[-3] == 1:
            return images.expand(*images.shape[:-3], 3, *images.shape[-2:])
        return images


# Small nets on 32x32 digits run fastest in cache-sized batches on CPU (1,000 images, 1 thread:
# randcnn ~0.3 s at 128 vs ~1.0 s at 1,000); a feature does not depend on its batch.
FEATURE_NET_BATCH = 128

EXTRACTORS: dict[str, ExtractorSpec] = {
    "mnist": ExtractorSpec(
        name="mnist",
        fidelity_name="mnist",
        feature_layer=MNIST_FEATURES,
        input_channels=None,
        input_version=MNIST_INPUT_VERSION,
        default_n_fake=1000,
        batch_size=FEATURE_NET_BATCH,
        _weights=_mnist_weights,
    ),
    **{
        name: ExtractorSpec(
            name=name,
            fidelity_name=name,
            feature_layer=str(net.dim),
            input_channels=None,
            input_version=1,
            default_n_fake=1000,
            batch_size=FEATURE_NET_BATCH,
            _weights=_feature_net_weights(name),
        )
        for name, net in feature_nets.NETS.items()
    },
    "inception": ExtractorSpec(
        name="inception",
        fidelity_name="inception-v3-compat",
        feature_layer="2048",
        input_channels=3,
        input_version=1,
        # The literature's protocols use 10,000-50,000 fakes (FID is biased in N); on a CPU
        # (~0.3 s per image) pass a smaller n_fake explicitly and compare only like with like.
        default_n_fake=10_000,
        batch_size=100,
        _weights=_inception_weights,
    ),
    # A second space for real data, never on one axis with Inception (another protocol).
    "dinov2": ExtractorSpec(
        name="dinov2",
        fidelity_name="dinov2-vit-s-14",
        feature_layer="dinov2",
        input_channels=3,
        input_version=1,
        default_n_fake=10_000,
        batch_size=64,
        _weights=_dinov2_weights,
    ),
}


# The metric sanity suite (dcgan.metrics.sanity, tests/metrics/test_sanity.py, docs/metrics.md)
# on held-out real digits: every metric gets monotonically worse under blur, noise, class
# dropping and memorisation, and grey noise scores worst. Only extractors that pass are
# offered as defaults for MNIST-family data; `ae` is kept as the measured counter-example
# (its precision and density *rise* under blur and noise, and grey noise has precision 1).
SANITY = {
    "mnist": "passed",
    "randcnn": "passed",
    "ae": "failed",
    "inception": "not run",
    "dinov2": "not run",
}
MNIST_FAMILY_DEFAULTS = ("mnist", "randcnn")  # the primary first


def get_extractor(name: str) -> ExtractorSpec:
    if name not in EXTRACTORS:
        raise ValueError(f"unknown extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")
    return EXTRACTORS[name]


@functools.lru_cache(maxsize=4)
def create_extractor(
    name: str, device: str, layers: tuple[str, ...] | None = None
) -> FeatureExtractorBase:
    """torch-fidelity's extractor object for one of ours, on `device`, in eval mode, giving
    `layers` (default: the extractor's feature layer) from one forward pass."""
    spec = get_extractor(name)
    kwargs = {}
    if spec.fidelity_name == "inception-v3-compat":
        kwargs["feature_extractor_weights_path"] = str(spec.weights_path)
    if spec.name == "dinov2":
        _dinov2_weights()  # refuses before torch.hub could reach for the network
    extractor = create_feature_extractor(
        spec.fidelity_name, list(layers or [spec.feature_layer]), cuda=False, verbose=False,
        **kwargs,
    )  # fmt: skip
    return extractor.to(device)


def nonfinite_weights(model: nn.Module) -> list[str]:
    """Names of parameters/buffers holding NaN or inf: such a model is scored NaN, not run."""
    state = model.state_dict()
    return [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]


# ---- digit classification (Stacked MNIST modes) ------------------------------------------
@torch.no_grad()
def classify_digits(
    images: torch.Tensor, device: str | torch.device = "cpu", batch_size: int = 2000
) -> torch.Tensor:
    """uint8 (N, C, H, W) -> int64 (N, C): each channel read as its own digit."""
    net = mnist_net.load_classifier(device)
    n, channels = images.shape[:2]
    single = images.reshape(n * channels, 1, *images.shape[-2:])
    digits = [
        net(to_classifier_input(chunk.to(device))).argmax(1).cpu()
        for chunk in single.split(batch_size)
    ]
    return torch.cat(digits).reshape(n, channels)


@contextlib.contextmanager
def full_fp32_precision() -> Iterator[None]:
    """Disable TF32 (cuBLAS matmuls, cuDNN convolutions) while features are taken.

    TF32 moves Inception features by ~1e-3 relative, and cuDNN convolutions default to it.
    The legacy allow_tf32 flags, as dcgan.metrics.inception uses: torch refuses to read them
    once they were mixed with its newer fp32_precision API.
    """
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32
    matmul.allow_tf32 = cudnn.allow_tf32 = False
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved
