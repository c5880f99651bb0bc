"""FID / KID / precision-recall-density-coverage of generators, under a stated protocol.

As in stylegan2-ada, a score's name states its protocol (`fid_mnist_1k`: FID, mnist
features, 1,000 fakes) and every score carries the full `Protocol` and its id; scores
compare only under the same id.

Reference: the real set minus a fixed held-out subset of n_fake images
(`dcgan.data.held_out_split`). The real-vs-real floor compares that held-out subset with the
reference, so floor and fakes are measured at the same N (FID is biased in N) and a model's
score reads against the best a same-size sample of real data achieves.

Real features (with their mean, covariance, covariance square root, the KID kernel width and
the 99th percentile of their norms) are computed once and cached under a key of everything
that determines them; torch-fidelity's own cache keys on a name only, so it is not used.
Fakes are generated once per snapshot on a fixed noise seed (torch-fidelity's 'normal'
stream) under the one sampling policy of `dcgan.sampling` (the same samples the training grids
show and Stacked MNIST modes count), quantised exactly like real images, and fed in memory
(never via image files)
through torch-fidelity's dataset loop and registered extractors, so N extractors score the
same images. The metrics:

- FID: torch-fidelity's `fid_features_to_statistics` and the eigen-form Fréchet distance of
  `frechet.py` with the cached reference square root;
- KID: `kid.py` (RBF kernel of median-heuristic width, disjoint subsets, a standard error);
- precision, recall, density, coverage: `prdc.py` (Naeem et al. 2020, k = 5), against a fixed
  n_fake-image subset of the reference (the k-NN radii depend on N);
- ood_norm_frac: `ood.py`, the share of fakes with a feature norm above the reference 99th
  percentile; and per snapshot the `mnist` classifier's class histogram of the fakes
  (classes_covered, class_kl) and, for Stacked MNIST, `modes.py`.

Every line of run_dir/scores.jsonl is one record (see `METRICS` and `read_scores`):
{"metric": bare key, "extractor", "name": e.g. "fid_mnist_1k", "value", "std" (only a real
standard error), "step" (null: the real-vs-real floor), "kimg", "kind": "generator"|"floor",
"protocol_id", "protocol", "reason" (optional)}. Lines written before this format (their
"metric" holds the full name) are upgraded by `read_scores`, never rewritten.

Over 400 lines on purpose: the protocol, its record format and score_run's resumable loop change
together (a protocol field is a record field).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch_fidelity
from torch import nn
from torch.utils.data import Dataset
from torch_fidelity.metric_fid import fid_features_to_statistics
from torch_fidelity.utils import get_featuresdict_from_dataset

from ..atomic import (
    IntegrityError,
    atomic_torch_save,
    load_verified,
    quarantine,
)
from ..config import ConfigError, RunConfig
from ..data import HELD_OUT_SEED, ImageSet, default_cache_dir, held_out_split, load_images
from ..models import Generator
from ..rundir import RunDir
from ..sampling import FID_POLICY_SINCE_V1, POLICY, policy_in_id, sample_counted, sample_seeded
from . import kid as kid_metric
from . import mnist_net, modes, ood, prdc
from .extractors import (
    EVAL_NOISE_SEED,
    EXTRACTORS,
    ExtractorSpec,
    create_extractor,
    full_fp32_precision,
    get_extractor,
    nonfinite_weights,
    resolve_device,
    to_classifier_input,
)
from .frechet import frechet_distance, sqrtm_psd

PROTOCOL_VERSION = 2  # 1: poly-kernel KID over overlapping subsets, precision/recall at k = 3
CLASSIFIER = "mnist"  # the extractor whose net is the class histogram's digit classifier
KID_SUBSETS = 10  # disjoint subsets of the fakes for KID's jackknife standard error
REFERENCE_ENTRY_VERSION = 2  # bump when the cached reference entry gains fields


@dataclass(frozen=True)
class MetricInfo:
    key: str
    better: str  # "lower" | "higher"
    description: str


# The one table of metric keys: the scores table's and report's columns derive from it.
METRICS: dict[str, MetricInfo] = {
    m.key: m
    for m in (
        MetricInfo(
            "fid", "lower", "Fréchet distance between Gaussian fits of real and fake features"
        ),
        MetricInfo(
            "kid",
            "lower",
            "squared MMD (unbiased, all fakes vs as many reals), RBF kernel of median-heuristic "
            "width, in [0, 2], ~0 for real data; std = jackknife standard error over 10 "
            "disjoint subsets",
        ),
        MetricInfo("precision", "higher", "share of fakes inside a real k-NN ball (fidelity, k=5)"),
        MetricInfo("recall", "higher", "share of reals inside a fake k-NN ball (diversity, k=5)"),
        MetricInfo(
            "density",
            "higher",
            "real k-NN balls holding each fake, / k, averaged (fidelity; ~1 for real data)",
        ),
        MetricInfo(
            "coverage", "higher", "share of real k-NN balls holding a fake (diversity; ~0.97 real)"
        ),
        MetricInfo(
            "ood_norm_frac",
            "lower",
            "share of fakes whose feature norm exceeds the reference 99th percentile (~0.01 real)",
        ),
        MetricInfo(
            "classes_covered",
            "higher",
            "digit classes holding >= 1% of the fakes (mnist classifier)",
        ),
        MetricInfo(
            "class_kl",
            "lower",
            "KL(fake class histogram || uniform over 10), nats (mnist classifier)",
        ),
        MetricInfo("modes", "higher", "Stacked MNIST digit triples hit, of 1,000"),
        MetricInfo("modes_kl", "lower", "KL(Stacked MNIST mode histogram || uniform), nats"),
    )
}
FEATURE_METRICS = ("fid", "kid", "precision", "recall", "density", "coverage", "ood_norm_frac")
CLASS_METRICS = ("classes_covered", "class_kl")
MODE_METRICS = ("modes", "modes_kl")


def count_label(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


@dataclass(frozen=True)
class Protocol:
    """Everything a score depends on besides the generator; stamped on every score."""

    version: int
    extractor: str
    feature_layer: str
    weights_sha256: str
    dataset_key: str
    n_fake: int
    n_real: int  # the reference set: the data minus the n_fake held-out images
    reference: str  # how the reference / held-out split is drawn
    kid_kernel: str
    kid_subsets: int
    kid_subset_size: int
    nearest_k: int  # precision, recall, density, coverage
    ood_norm_quantile: float
    eval_seed: int
    fidelity_version: str
    device: str  # stamped, not part of the id: it moves only float rounding
    # How fakes are sampled (dcgan.sampling.POLICY). Stamped; part of the id only when it is
    # not the policy FID has always used, so the ids of every existing protocol stay the same.
    sampling: str = POLICY

    @property
    def id(self) -> str:
        fields = {
            k: v
            for k, v in dataclasses.asdict(self).items()
            if k != "device" and (k != "sampling" or policy_in_id(v))
        }
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]

    def metric_name(self, metric: str) -> str:
        """`fid` -> `fid_mnist_1k`: the metric, the extractor and the number of fakes."""
        return f"{metric}_{self.extractor}_{count_label(self.n_fake)}"

    @property
    def metric_names(self) -> list[str]:
        return [self.metric_name(m) for m in FEATURE_METRICS]

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "id": self.id}


def make_protocol(
    image_set: ImageSet,
    extractor: str = "mnist",
    n_fake: int | None = None,
    device: str = "auto",
    kid_subsets: int | None = None,
    eval_seed: int = EVAL_NOISE_SEED,
) -> Protocol:
    spec = get_extractor(extractor)
    kid_subsets = KID_SUBSETS if kid_subsets is None else kid_subsets
    default = n_fake is None
    n_fake = spec.default_n_fake if default else n_fake
    n_real = len(image_set) - n_fake
    if n_fake < 2 or n_real < 2:
        hint = f" (the {extractor} default; pass n_fake)" if default else ""
        raise ConfigError(
            f"n_fake={n_fake}{hint} must leave at least 2 images on each side of the held-out "
            f"split of {image_set.source} ({len(image_set)} images)"
        )
    if kid_subsets < 2 or n_fake // kid_subsets < 2:
        raise ConfigError(
            f"kid_subsets={kid_subsets}: KID needs at least 2 disjoint subsets of at least 2 "
            f"of the {n_fake} fakes"
        )
    return Protocol(
        version=PROTOCOL_VERSION,
        extractor=spec.name,
        feature_layer=spec.feature_layer,
        weights_sha256=spec.weights_sha256,
        dataset_key=image_set.key,
        n_fake=n_fake,
        n_real=n_real,
        reference=(
            f"all {len(image_set)} images minus held_out_split({len(image_set)}, {n_fake}) "
            f"(seed {HELD_OUT_SEED}); floor = held-out vs reference"
        ),
        kid_kernel=kid_metric.KERNEL,
        kid_subsets=kid_subsets,
        kid_subset_size=n_fake // kid_subsets,
        nearest_k=prdc.NEAREST_K,
        ood_norm_quantile=ood.NORM_QUANTILE,
        eval_seed=eval_seed,
        fidelity_version=torch_fidelity.__version__,
        device=str(resolve_device(device)),
    )


# ---- reference features, computed once ---------------------------------------------------
def reference_cache_key(protocol: Protocol) -> str:
    """Hash of all that fixes the real features: data, preprocessing, network, weights, split."""
    spec = get_extractor(protocol.extractor)
    _, held_out = held_out_split(protocol.n_real + protocol.n_fake, protocol.n_fake)
    payload = {
        "entry_version": REFERENCE_ENTRY_VERSION,
        "dataset_key": protocol.dataset_key,
        "extractor": protocol.extractor,
        "feature_layer": protocol.feature_layer,
        "input_version": spec.input_version,
        "weights_sha256": protocol.weights_sha256,
        "n_fake": protocol.n_fake,
        "n_real": protocol.n_real,
        "held_out": hashlib.sha256(held_out.numpy().tobytes()).hexdigest(),
    }
    return hashlib.blake2b(json.dumps(payload, sort_keys=True).encode(), digest_size=16).hexdigest()


class _ImageTensors(Dataset):
    """An in-memory uint8 tensor as the torch Dataset torch-fidelity iterates."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def _featurise_images(
    images: torch.Tensor, spec: ExtractorSpec, device: torch.device, layers: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    extractor = create_extractor(spec.name, str(device), layers)
    features = get_featuresdict_from_dataset(
        _ImageTensors(spec.adapt_channels(images)),
        extractor,
        min(spec.batch_size, len(images)),
        cuda=device.type == "cuda",
        save_cpu_ram=True,  # no DataLoader worker processes: the images are already in memory
        verbose=False,
    )
    return {layer: features[layer] for layer in layers}


def featurise_layers(
    images: torch.Tensor, extractor: str, layers: Sequence[str], device: str = "cpu"
) -> dict[str, torch.Tensor]:
    """uint8 images -> several layers of one extractor (CPU float) from one forward pass."""
    with full_fp32_precision():
        found = _featurise_images(
            images, get_extractor(extractor), resolve_device(device), tuple(layers)
        )
    return {layer: value.cpu() for layer, value in found.items()}


def featurise(images: torch.Tensor, extractor: str, device: str = "cpu") -> torch.Tensor:
    """uint8 images -> the extractor's features (CPU float), through torch-fidelity."""
    layer = get_extractor(extractor).feature_layer
    return featurise_layers(images, extractor, [layer], device)[layer]


def summarise_reference(reference: torch.Tensor, held_out: torch.Tensor) -> dict[str, torch.Tensor]:
    """Features plus the reference statistics every later score re-uses."""
    stats = fid_features_to_statistics(reference.double())
    return {
        "reference": reference,
        "held_out": held_out,
        "mu": torch.from_numpy(stats["mu"]),
        "sigma": torch.from_numpy(stats["sigma"]),
        "sqrt_sigma": torch.from_numpy(sqrtm_psd(stats["sigma"])),
        "kid_sq_bandwidth": torch.tensor(kid_metric.median_sq_distance(reference)),
        "norm_q": torch.tensor(ood.norm_quantile(reference)),
    }


def reference_features(
    image_set: ImageSet, protocol: Protocol, cache_dir: Path | None = None
) -> dict[str, torch.Tensor]:
    """Reference and held-out features with reference statistics, from cache when possible."""
    if image_set.key != protocol.dataset_key or len(image_set) != protocol.n_real + protocol.n_fake:
        raise ConfigError(
            f"protocol {protocol.id} was made for another dataset than {image_set.source}"
        )
    key = reference_cache_key(protocol)
    path = (cache_dir or default_cache_dir()) / "features" / f"{protocol.extractor}-{key}.pt"
    if path.exists():
        try:
            stat = path.stat()
            loaded = (str(path), stat.st_mtime_ns, stat.st_size)
            if loaded not in _LOADED_REFERENCES:  # checksum, then weights_only
                while len(_LOADED_REFERENCES) >= _LOADED_REFERENCES_KEPT:
                    del _LOADED_REFERENCES[next(iter(_LOADED_REFERENCES))]  # the oldest
                _LOADED_REFERENCES[loaded] = load_verified(path, require_checksum=True)
            return _LOADED_REFERENCES[loaded]
        except (IntegrityError, OSError) as err:  # a damaged cache is quarantined and rebuilt
            quarantine(path, str(err).removeprefix(f"{path}: "))
    features = featurise(image_set.images, protocol.extractor, protocol.device)
    reference_idx, held_out_idx = held_out_split(len(image_set), protocol.n_fake)
    entry = summarise_reference(features[reference_idx], features[held_out_idx])
    atomic_torch_save(entry, path)
    return entry


# A worker scores every snapshot of every run it trains against the same few references: each
# is read (and its checksum verified) once per process, keyed by file and version (a rewritten
# or damaged file is a new key, so it is verified again).
_LOADED_REFERENCES: dict[tuple[str, int, int], dict] = {}
_LOADED_REFERENCES_KEPT = 8


# ---- scores from features ----------------------------------------------------------------
def scores_from_features(
    fake: torch.Tensor, reference: dict[str, torch.Tensor], protocol: Protocol
) -> dict[str, float]:
    """Every feature metric of `fake` vs the reference, keyed by protocol name.

    KID's standard error is under name('kid') + '_std'."""
    fake = fake.double()
    real = reference["reference"].double()
    stats = fid_features_to_statistics(fake)
    fid = frechet_distance(
        reference["mu"].numpy(),
        reference["sigma"].numpy(),
        stats["mu"],
        stats["sigma"],
        sqrt_sigma1=reference["sqrt_sigma"].numpy(),
    )
    bandwidth = float(reference["kid_sq_bandwidth"])
    groups = min(protocol.kid_subsets, len(fake) // 2)
    real_side = _real_side(reference, protocol, len(fake), groups)
    kid = kid_metric.kid(
        fake, real, bandwidth, groups=groups, seed=protocol.eval_seed, reals=real_side["kid"]
    )
    nearest = prdc.prdc(
        real_side["prdc_reals"], fake, k=protocol.nearest_k, radii=real_side["prdc_radii"]
    )
    name = protocol.metric_name
    return {
        name("fid"): fid,
        name("kid"): kid["kid"],
        name("kid") + "_std": kid["kid_se"],
        **{name(m): v for m, v in nearest.items()},
        name("ood_norm_frac"): ood.norm_excess_fraction(fake, float(reference["norm_q"])),
    }


def _real_side(reference: dict, protocol: Protocol, m: int, groups: int) -> dict:
    """What KID and precision/recall need of the reals for m fakes: fixed by the reference, so
    computed once and kept in the (in-memory) reference entry under a key no file holds."""
    key = ("real_side", m, groups, protocol.eval_seed, protocol.nearest_k)
    if key not in reference:
        real = reference["reference"].double()
        # precision/recall/density/coverage at equal N: a fixed m-image reference subset
        order = torch.randperm(
            len(real), generator=torch.Generator().manual_seed(protocol.eval_seed)
        )
        reals = real[order[:m]]
        bandwidth = float(reference["kid_sq_bandwidth"])
        reference[key] = {
            "kid": kid_metric.real_side(real, m, bandwidth, groups, protocol.eval_seed),
            "prdc_reals": reals,
            "prdc_radii": prdc.real_radii(reals, protocol.nearest_k),
        }
    return reference[key]


def _stamped(scores: dict, kind: str, protocol: dict, started: float) -> dict:
    return {
        **scores,
        "kind": kind,
        "seconds": round(time.perf_counter() - started, 3),
        "protocol_id": protocol["id"],
        "protocol": protocol,
    }


def _failed(protocol: Protocol, reason: str, started: float) -> dict:
    scores = {name: math.nan for name in protocol.metric_names}
    scores[protocol.metric_name("kid") + "_std"] = math.nan
    return _stamped(scores, "generator", protocol.to_dict(), started) | {"reason": reason}


# ---- generators --------------------------------------------------------------------------
class _QuantisedGenerator(nn.Module):
    """noise -> G -> uint8 images as the extractor takes them; counts non-finite pixels.

    G samples under the one policy (`dcgan.sampling.sample`), as the training grids and the
    Stacked MNIST mode counts do, so scores, grids and modes describe the same samples."""

    def __init__(self, generator: nn.Module, spec: ExtractorSpec | None = None):
        super().__init__()
        self.generator = generator
        self.spec = spec
        self.nonfinite = 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        images, nonfinite = sample_counted(self.generator, z)
        self.nonfinite += nonfinite
        return self.spec.adapt_channels(images) if self.spec is not None else images


@torch.no_grad()
def generate_fakes(
    G: nn.Module, nz: int, n: int, seed: int = EVAL_NOISE_SEED, device: str = "cpu"
) -> tuple[torch.Tensor, int]:
    """n uint8 fakes of a copy of G on torch-fidelity's 'normal' noise stream from `seed`
    (the latents torch-fidelity's generator loop would draw), under the one sampling policy
    (`dcgan.sampling`: fixed batches, so the images do not depend on how many are drawn).
    Returns (images, non-finite pixel count)."""
    device = resolve_device(device)
    return sample_seeded(copy.deepcopy(G).to(device), n, nz, seed, device)


def score_images(
    images: torch.Tensor,
    image_set: ImageSet,
    protocol: Protocol,
    logits: dict[int, torch.Tensor] | None = None,
) -> dict:
    """Feature metrics of uint8 `images` (the fakes) under the protocol. With `logits` (the
    `mnist` extractor only), the same forward pass also gives the classifier's logits, put
    there under len(images): the class histogram needs no second pass."""
    started = time.perf_counter()
    reference = reference_features(image_set, protocol)
    layers = [protocol.feature_layer] + (["logits"] if logits is not None else [])
    found = featurise_layers(images, protocol.extractor, layers, protocol.device)
    if logits is not None:
        logits[len(images)] = found["logits"]
    scores = scores_from_features(found[protocol.feature_layer], reference, protocol)
    return _stamped(scores, "generator", protocol.to_dict(), started)


def _check_shape(cfg: RunConfig, image_set: ImageSet) -> None:
    if (cfg.channels, cfg.image_size) != tuple(image_set.images.shape[1:3]):
        raise ConfigError(
            f"generator makes {cfg.channels}x{cfg.image_size}px images, the data is "
            f"{image_set.images.shape[1]}x{image_set.images.shape[2]}px: they cannot be compared"
        )


def score_generator(G: nn.Module, cfg: RunConfig, image_set: ImageSet, protocol: Protocol) -> dict:
    """Scores of G (left untouched: a copy is scored) on the protocol's z, keyed by name."""
    started = time.perf_counter()
    _check_shape(cfg, image_set)
    bad = nonfinite_weights(G)
    if bad:
        return _failed(protocol, f"non-finite weights in {', '.join(bad[:3])}", started)
    images, nonfinite = generate_fakes(
        G, cfg.nz, protocol.n_fake, protocol.eval_seed, protocol.device
    )
    if nonfinite:
        return _failed(protocol, f"generator produced {nonfinite} non-finite pixels", started)
    return score_images(images, image_set, protocol) | {
        "seconds": round(time.perf_counter() - started, 3)
    }


def score_floor(image_set: ImageSet, protocol: Protocol) -> dict:
    """The real-vs-real floor: held-out real images scored exactly as fakes would be."""
    started = time.perf_counter()
    reference = reference_features(image_set, protocol)
    scores = scores_from_features(reference["held_out"], reference, protocol)
    return _stamped(scores, "floor", protocol.to_dict(), started)


# ---- class histogram of the fakes (mnist classifier) -------------------------------------
def classes_protocol(n: int, seed: int = EVAL_NOISE_SEED, device: str = "auto") -> dict:
    protocol = {
        "kind": "mnist_classes",
        "classifier_sha256": mnist_net.WEIGHTS_SHA256,
        "n": n,
        "class_share": ood.CLASS_SHARE,
        "eval_seed": seed,
        "device": str(resolve_device(device)),
        "sampling": POLICY,  # the FID fakes; in the id only if it is not FID's policy (ids kept)
    }
    fields = {
        k: v for k, v in protocol.items() if k != "device" and (k != "sampling" or policy_in_id(v))
    }
    return protocol | {
        "id": hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    }


@torch.no_grad()
def predict_classes(images: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """The mnist classifier's argmax for uint8 (N, 1 or 3, H, W) images (RGB read as gray)."""
    device = resolve_device(device)
    net = mnist_net.load_classifier(device)
    return torch.cat(
        [net(to_classifier_input(chunk.to(device))).argmax(1).cpu() for chunk in images.split(1000)]
    )


def score_classes(images: torch.Tensor, protocol: dict, logits: torch.Tensor | None = None) -> dict:
    """Class histogram of `images`; from `logits` (the classifier's, on these images) if given."""
    classes = predict_classes(images, protocol["device"]) if logits is None else logits.argmax(1)
    scores = ood.class_histogram_scores(classes)
    return {k: scores[k] for k in CLASS_METRICS}


# ---- records -----------------------------------------------------------------------------
def _record(
    metric: str,
    extractor: str,
    name: str,
    value: float,
    step: int | None,
    kimg: float | None,
    kind: str,
    protocol: dict,
    std: float | None = None,
    reason: str | None = None,
) -> dict:
    record = {
        "metric": metric,
        "extractor": extractor,
        "name": name,
        "value": value,
        "step": step,
        "kimg": kimg,
        "kind": kind,
        "protocol_id": protocol["id"],
        "protocol": protocol,
    }
    if std is not None:
        record["std"] = std
    if reason:
        record["reason"] = reason
    return record


def feature_records(result: dict, protocol: Protocol, step: int | None, kimg) -> list[dict]:
    """A score_generator / score_floor result -> one record per feature metric."""
    out = []
    for metric in FEATURE_METRICS:
        name = protocol.metric_name(metric)
        std = result.get(name + "_std") if metric == "kid" else None
        out.append(
            _record(
                metric,
                protocol.extractor,
                name,
                float(result[name]),
                step,
                kimg,
                result["kind"],
                result["protocol"],
                std=None if std is None else float(std),
                reason=result.get("reason"),
            )
        )
    return out


def _plain_records(
    values: dict, metrics: Sequence[str], protocol: dict, step, kimg, kind: str, reason=None
) -> list[dict]:
    count = count_label(protocol["n"])
    return [
        _record(
            m,
            "mnist",
            f"{m}_mnist_{count}",
            float(values[m]),
            step,
            kimg,
            kind,
            protocol,
            reason=reason,
        )  # fmt: skip
        for m in metrics
    ]


def _longest_metric_prefix(name: str) -> str | None:
    matches = [key for key in METRICS if name == key or name.startswith(key + "_")]
    return max(matches, key=len) if matches else None


def upgrade_record(record: dict, batch_size: int | None = None) -> dict:
    """A scores.jsonl line in the current record format; legacy lines (protocol version 1,
    whose "metric" is the full name, e.g. "fid_mnist_1k") are converted here and only here.

    Legacy KID lines lose their "std": it was the spread over subsets that each held all the
    fakes, not a standard error."""
    if "name" in record:
        return record
    name = record["metric"]
    protocol = record.get("protocol") or {}
    metric = _longest_metric_prefix(name)
    if metric is None:
        raise ValueError(f"scores.jsonl: unknown legacy metric name {name!r}")
    if protocol.get("kind") == "stacked_mnist_modes":
        extractor = "mnist"  # the classifier that reads the digits
    else:
        extractor = protocol.get("extractor") or name[len(metric) + 1 :].rsplit("_", 1)[0]
    step = record.get("step")
    kimg = None if step is None or batch_size is None else step * batch_size / 1000
    return _record(
        metric,
        extractor,
        name,
        record["value"],
        step,
        kimg,
        record.get("kind", "generator"),
        protocol,
        reason=record.get("reason"),
    )


def _batch_size(run: RunDir) -> int | None:
    try:
        return int(run.read_config_dict()["batch_size"])
    except (OSError, KeyError, ValueError, TypeError):
        return None


def read_scores(run_dir: Path | str | RunDir) -> list[dict]:
    """Every record of run_dir/scores.jsonl in the current format (legacy lines upgraded)."""
    run = RunDir.of(run_dir)
    batch_size = _batch_size(run)
    return [upgrade_record(r, batch_size) for r in run.read_score_lines()]


def protocol_version(record: dict) -> int:
    return int((record.get("protocol") or {}).get("version", 1))


# Stacked MNIST modes counted eval-mode samples (running BatchNorm statistics) before they
# followed the one policy; their protocols carry no "sampling" field.
MODES_POLICY_BEFORE = "G in eval mode (running BatchNorm statistics), batches of 1000"


def sampling_policy(record: dict) -> str:
    """The sampling policy a record's samples were drawn under (stamped, or implied by age)."""
    protocol = record.get("protocol") or {}
    if "sampling" in protocol:
        return protocol["sampling"]
    return MODES_POLICY_BEFORE if record.get("metric") in MODE_METRICS else FID_POLICY_SINCE_V1


def select(
    records: Iterable[dict],
    metric: str | None = None,
    extractor: str | None = None,
    kind: str | None = None,
    current: bool = True,
) -> list[dict]:
    """Records of one metric / extractor / kind; by default only current ones: feature
    metrics of the current protocol version, and any record sampled under the current
    sampling policy (class and mode records have their own, versionless protocols; mode
    counts of eval-mode samples, from before the one policy, are not current)."""
    out = []
    for r in records:
        if metric is not None and r["metric"] != metric:
            continue
        if extractor is not None and r["extractor"] != extractor:
            continue
        if kind is not None and r["kind"] != kind:
            continue
        if current and r["metric"] in FEATURE_METRICS and protocol_version(r) != PROTOCOL_VERSION:
            continue
        if current and sampling_policy(r) != POLICY:
            continue
        out.append(r)
    return out


def ood_flagged(records: Iterable[dict], limit: float = ood.OOD_NORM_FRAC_LIMIT) -> dict:
    """{(extractor, step): True} for generator snapshots whose ood_norm_frac exceeds `limit`."""
    return {
        (r["extractor"], r["step"]): r["value"] > limit
        for r in select(records, "ood_norm_frac", kind="generator")
        if math.isfinite(r["value"])
    }


# ---- whole runs --------------------------------------------------------------------------
def snapshot_steps(run_dir: Path | str | RunDir) -> dict[int, Path]:
    return RunDir.of(run_dir).snapshots()


def score_run(
    run_dir: Path | str,
    extractor: str | Sequence[str] = "mnist",
    n_fake: int | None = None,
    steps: list[int] | None = None,
    device: str = "auto",
    count_modes: bool | None = None,
    kid_subsets: int | None = None,
    count_classes: bool | None = None,
) -> list[dict]:
    """Score a run's snapshots under one or more extractors into run_dir/scores.jsonl.

    `extractor` is a name or a list of names: each snapshot's fakes are generated once and
    scored in every feature space. Snapshots already scored under the same protocol id are
    skipped; each protocol's floor is scored once (step None). MNIST runs also get the
    mnist classifier's class histogram of the fakes (unless count_classes=False), Stacked
    MNIST runs their mode counts (unless count_modes=False). Lines already in the file
    (legacy ones included) are kept as they are; new records are appended. Returns the
    records of the protocols asked for, old and new, in the current format.
    """
    run = RunDir.of(run_dir)
    names = [extractor] if isinstance(extractor, str) else list(extractor)
    cfg = run.read_config()
    image_set = load_images(cfg.data, cfg.image_size, cfg.channels)
    protocols = [make_protocol(image_set, e, n_fake, device, kid_subsets) for e in names]
    count_modes = cfg.data == "stacked_mnist" if count_modes is None else count_modes
    count_classes = cfg.data == "mnist" if count_classes is None else count_classes
    class_protocols = (
        {p.n_fake: classes_protocol(p.n_fake, p.eval_seed, device) for p in protocols}
        if count_classes
        else {}
    )
    mode_protocol = modes.modes_protocol(device=device)
    available = run.snapshots()
    missing = sorted(set(steps or []) - set(available))
    if missing:
        raise ConfigError(f"{run}: no snapshot for steps {missing}; have {sorted(available)}")
    wanted = {s: p for s, p in available.items() if not steps or s in steps}

    raw = run.read_score_lines()
    records = [upgrade_record(r, cfg.batch_size) for r in raw]
    have = {(r["protocol_id"], r["metric"], r["step"]) for r in records}

    def done(protocol_id: str, metrics: Sequence[str], step: int | None) -> bool:
        return all((protocol_id, m, step) in have for m in metrics)

    def add(new: list[dict]) -> None:
        if not new:
            return
        raw.extend(new)
        records.extend(new)
        have.update((r["protocol_id"], r["metric"], r["step"]) for r in new)
        run.write_scores(raw)

    for protocol in protocols:
        if not done(protocol.id, FEATURE_METRICS, None):
            add(feature_records(score_floor(image_set, protocol), protocol, None, None))
    for n, cp in class_protocols.items():
        if not done(cp["id"], CLASS_METRICS, None):
            _, held_out = held_out_split(len(image_set), n)
            floor = score_classes(image_set.images[held_out], cp)
            add(_plain_records(floor, CLASS_METRICS, cp, None, None, "floor"))

    for step, path in sorted(wanted.items()):
        kimg = step * cfg.batch_size / 1000
        todo = [p for p in protocols if not done(p.id, FEATURE_METRICS, step)]
        classes_todo = {
            n: cp for n, cp in class_protocols.items() if not done(cp["id"], CLASS_METRICS, step)
        }
        modes_todo = count_modes and not done(mode_protocol["id"], MODE_METRICS, step)
        if not (todo or classes_todo or modes_todo):
            continue
        G = Generator(cfg)
        G.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
        bad = nonfinite_weights(G)
        reason = f"non-finite weights in {', '.join(bad[:3])}" if bad else ""
        fakes: dict[int, torch.Tensor] = {}
        if not reason:
            _check_shape(cfg, image_set)
            for n in sorted({p.n_fake for p in todo} | set(classes_todo)):
                images, nonfinite = generate_fakes(G, cfg.nz, n, protocols[0].eval_seed, device)
                if nonfinite:
                    reason = f"generator produced {nonfinite} non-finite pixels"
                    break
                fakes[n] = images
        new: list[dict] = []
        logits: dict[int, torch.Tensor] = {}  # the classifier's, from the mnist feature pass
        for protocol in todo:
            if reason:
                result = _failed(protocol, reason, time.perf_counter())
            else:
                with_logits = protocol.extractor == CLASSIFIER and protocol.n_fake in classes_todo
                result = score_images(
                    fakes[protocol.n_fake], image_set, protocol, logits if with_logits else None
                )
            new += feature_records(result, protocol, step, kimg)
        for n, cp in classes_todo.items():
            if reason:
                values = {m: math.nan for m in CLASS_METRICS}
            else:
                values = score_classes(fakes[n], cp, logits.get(n))
            new += _plain_records(values, CLASS_METRICS, cp, step, kimg, "generator", reason)
        if modes_todo:
            result = modes.score_modes(G, device=device)
            values = {"modes": result["modes"], "modes_kl": result["kl"]}
            new += _plain_records(
                values, MODE_METRICS, result["protocol"], step, kimg, "generator",
                result.get("reason"),
            )  # fmt: skip
        add(new)
    own = {p.id for p in protocols} | {cp["id"] for cp in class_protocols.values()}
    if count_modes:
        own.add(mode_protocol["id"])
    return [r for r in records if r["protocol_id"] in own]


def command_score(argv: list[str] | None = None) -> int:
    """`python -m dcgan score RUN_DIR`: score every snapshot of a run and print the curve."""
    parser = argparse.ArgumentParser(
        prog="python -m dcgan score",
        description="FID, KID, precision/recall/density/coverage and OOD diagnostics of a "
        "run's generator snapshots (and Stacked MNIST modes), appended to RUN_DIR/scores.jsonl "
        "with their protocol. Existing runs are re-scored under the current protocol without "
        "retraining; their older lines are kept.",
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(
        "--extractor",
        nargs="+",
        choices=list(EXTRACTORS),
        default=["mnist"],
        help="one or more feature spaces; the same fakes are scored in each",
    )
    parser.add_argument(
        "--n-fake", type=int, default=None, help="fakes (= held-out reals) per score"
    )
    parser.add_argument("--steps", type=int, nargs="*", default=None, help="only these snapshots")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--kid-subsets",
        type=int,
        default=None,
        help=f"disjoint KID subsets of the fakes (default {KID_SUBSETS})",
    )
    parser.add_argument("--no-modes", action="store_true", help="skip Stacked MNIST mode counts")
    parser.add_argument("--no-classes", action="store_true", help="skip the class histogram")
    args = parser.parse_args(argv)
    try:
        records = score_run(
            args.run_dir,
            args.extractor,
            args.n_fake,
            args.steps,
            args.device,
            count_modes=False if args.no_modes else None,
            kid_subsets=args.kid_subsets,
            count_classes=False if args.no_classes else None,
        )
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}")
        return 2
    protocols = {r["protocol_id"]: r["protocol"] for r in records}
    for record in sorted(records, key=lambda r: (r["step"] is not None, r["step"] or 0, r["name"])):
        step = "floor" if record["step"] is None else f"step {record['step']}"
        std = f" +- {record['std']:.4g}" if "std" in record else ""
        reason = f"  ({record['reason']})" if "reason" in record else ""
        print(f"{step:>12}  {record['name']:<28} {record['value']:.6g}{std}{reason}")
    for protocol_id, protocol in protocols.items():
        print(f"protocol {protocol_id}: {json.dumps(protocol, sort_keys=True)}")
    return 0
