"""FID / KID / precision-recall of generators, through torch-fidelity, under a stated protocol.

As in stylegan2-ada, a metric's name states its protocol (`fid_mnist_1k`: FID, mnist
features, 1,000 fakes) and every score carries the full `Protocol` and its id; scores
compare only under the same id.

Reference: the real set minus a fixed held-out subset of n_fake images
(`dcgan.data.held_out_split`). The real-vs-real floor compares that held-out subset with the
reference, so floor and fakes are measured at the same N (FID is biased in N) and a model's
score reads against the best a same-size sample of real data achieves.

Real features (and their mean, covariance and covariance square root) are computed once
and cached under a key of everything that determines them; torch-fidelity's own cache keys
on a name only, so it is not used. Fakes are generated on a fixed noise seed, quantised
exactly like real images, and featurised in batches in memory (never via image files).
Features come from torch-fidelity's extractors and its dataset/generator loops; the metrics
from its `fid_features_to_statistics`, `kid_features_to_metric` and `prc_features_to_metric`,
except the Fréchet distance itself, which uses the tested eigen-form fast path of
`frechet.py` with the cached reference square root.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch_fidelity
from torch import nn
from torch.utils.data import Dataset
from torch_fidelity import GenerativeModelModuleWrapper
from torch_fidelity.metric_fid import fid_features_to_statistics
from torch_fidelity.metric_kid import (
    KEY_METRIC_KID_MEAN,
    KEY_METRIC_KID_STD,
    kid_features_to_metric,
)
from torch_fidelity.metric_prc import (
    KEY_METRIC_PRECISION,
    KEY_METRIC_RECALL,
    prc_features_to_metric,
)
from torch_fidelity.utils import (
    get_featuresdict_from_dataset,
    get_featuresdict_from_generative_model,
)

from ..atomic import (
    IntegrityError,
    atomic_torch_save,
    atomic_write_text,
    load_verified,
    quarantine,
)
from ..config import ConfigError, RunConfig
from ..data import HELD_OUT_SEED, ImageSet, default_cache_dir, held_out_split, load_images
from ..models import Generator, generate
from . import modes
from .extractors import (
    EVAL_NOISE_SEED,
    ExtractorSpec,
    create_extractor,
    full_fp32_precision,
    get_extractor,
    nonfinite_weights,
    quantise_to_uint8,
    resolve_device,
)
from .frechet import frechet_distance, sqrtm_psd

KID_MAX_SUBSET = 1000  # torch-fidelity's default subset size, capped by the sample counts
# 100 subsets is the literature's; each costs ~0.1 s on 2 CPU cores at 1,000 fakes
KID_SUBSETS = {"mnist": 10, "inception": 100}
PRC_NEIGHBORHOOD = 3
SNAPSHOT_GLOB = "G_step_*.pt"


@dataclass(frozen=True)
class Protocol:
    """Everything a score depends on besides the generator; stamped on every score."""

    extractor: str
    feature_layer: str
    weights_sha256: str
    dataset_key: str
    n_fake: int
    n_real: int  # the reference set: the data minus the n_fake held-out images
    reference: str  # how the reference / held-out split is drawn
    kid_subset_size: int
    kid_subsets: int
    prc_neighborhood: int
    eval_seed: int
    fidelity_version: str
    device: str  # stamped, not part of the id: it moves only float rounding

    @property
    def id(self) -> str:
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "device"}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]

    def metric_name(self, metric: str) -> str:
        """`fid` -> `fid_mnist_1k`: the metric, the extractor and the number of fakes."""
        count = f"{self.n_fake // 1000}k" if self.n_fake % 1000 == 0 else str(self.n_fake)
        return f"{metric}_{self.extractor}_{count}"

    @property
    def metric_names(self) -> list[str]:
        return [self.metric_name(m) for m in ("fid", "kid", "precision", "recall")]

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
    kid_subsets = KID_SUBSETS[extractor] if kid_subsets is None else kid_subsets
    n_fake = spec.default_n_fake if n_fake is None else n_fake
    n_real = len(image_set) - n_fake
    if n_fake < 2 or n_real < 2:
        raise ConfigError(
            f"n_fake={n_fake} must leave at least 2 images on each side of the held-out split "
            f"of {image_set.source} ({len(image_set)} images)"
        )
    return Protocol(
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
        kid_subset_size=min(KID_MAX_SUBSET, n_fake, n_real),
        kid_subsets=kid_subsets,
        prc_neighborhood=PRC_NEIGHBORHOOD,
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
    images: torch.Tensor, spec: ExtractorSpec, device: torch.device
) -> torch.Tensor:
    extractor = create_extractor(spec.name, str(device))
    features = get_featuresdict_from_dataset(
        _ImageTensors(spec.adapt_channels(images)),
        extractor,
        spec.batch_size,
        cuda=device.type == "cuda",
        save_cpu_ram=True,  # no DataLoader worker processes: the images are already in memory
        verbose=False,
    )
    return features[spec.feature_layer]


def summarise_reference(reference: torch.Tensor, held_out: torch.Tensor) -> dict[str, torch.Tensor]:
    """Features plus the reference statistics every later score re-uses."""
    stats = fid_features_to_statistics(reference.double())
    return {
        "reference": reference,
        "held_out": held_out,
        "mu": torch.from_numpy(stats["mu"]),
        "sigma": torch.from_numpy(stats["sigma"]),
        "sqrt_sigma": torch.from_numpy(sqrtm_psd(stats["sigma"])),
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
            return load_verified(path, require_checksum=True)  # checksum, then weights_only
        except (IntegrityError, OSError) as err:  # a damaged cache is quarantined and rebuilt
            quarantine(path, str(err).removeprefix(f"{path}: "))
    spec = get_extractor(protocol.extractor)
    with full_fp32_precision():
        features = _featurise_images(image_set.images, spec, torch.device(protocol.device)).cpu()
    reference_idx, held_out_idx = held_out_split(len(image_set), protocol.n_fake)
    entry = summarise_reference(features[reference_idx], features[held_out_idx])
    atomic_torch_save(entry, path)
    return entry


# ---- scores from features ----------------------------------------------------------------
def scores_from_features(
    fake: torch.Tensor, reference: dict[str, torch.Tensor], protocol: Protocol
) -> dict[str, float]:
    """FID, KID (mean and std over subsets), precision and recall of `fake` vs the reference."""
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
    kid = kid_features_to_metric(
        fake,
        real,
        kid_subsets=protocol.kid_subsets,
        kid_subset_size=protocol.kid_subset_size,
        rng_seed=protocol.eval_seed,
        verbose=False,
    )
    # precision/recall at equal N (k-NN radii depend on N): a fixed n_fake-image reference subset
    subset = torch.randperm(len(real), generator=torch.Generator().manual_seed(protocol.eval_seed))
    prc = prc_features_to_metric(
        fake.float(),
        real[subset[: len(fake)]].float(),
        prc_neighborhood=protocol.prc_neighborhood,
        prc_batch_size=10_000,
        save_cpu_ram=True,
        verbose=False,
    )
    name = protocol.metric_name
    return {
        name("fid"): fid,
        name("kid"): kid[KEY_METRIC_KID_MEAN],
        name("kid") + "_std": kid[KEY_METRIC_KID_STD],
        name("precision"): prc[KEY_METRIC_PRECISION],
        name("recall"): prc[KEY_METRIC_RECALL],
    }


def _stamped(scores: dict, kind: str, protocol: Protocol, started: float) -> dict:
    return {
        **scores,
        "kind": kind,
        "seconds": round(time.perf_counter() - started, 3),
        "protocol_id": protocol.id,
        "protocol": protocol.to_dict(),
    }


def _failed(protocol: Protocol, reason: str, started: float) -> dict:
    names = protocol.metric_names
    scores = {name: math.nan for name in names} | {protocol.metric_name("kid") + "_std": math.nan}
    return _stamped(scores, "generator", protocol, started) | {"reason": reason}


# ---- generators --------------------------------------------------------------------------
class _QuantisedGenerator(nn.Module):
    """noise -> G -> uint8 images as the extractor takes them; counts non-finite pixels.

    G samples exactly as the training grids do (`dcgan.models.generate`: BatchNorm on batch
    statistics, as the reference implementation samples), so scores and grids agree."""

    def __init__(self, generator: nn.Module, spec: ExtractorSpec):
        super().__init__()
        self.generator = generator
        self.spec = spec
        self.nonfinite = 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = generate(self.generator, z)
        finite = torch.isfinite(x)
        self.nonfinite += int((~finite).sum())
        return self.spec.adapt_channels(quantise_to_uint8(torch.where(finite, x, 0.0)))


def score_generator(G: nn.Module, cfg: RunConfig, image_set: ImageSet, protocol: Protocol) -> dict:
    """Scores of G (left untouched: a copy is scored in eval mode) on the protocol's z."""
    started = time.perf_counter()
    if (cfg.channels, cfg.image_size) != tuple(image_set.images.shape[1:3]):
        raise ConfigError(
            f"generator makes {cfg.channels}x{cfg.image_size}px images, the data is "
            f"{image_set.images.shape[1]}x{image_set.images.shape[2]}px: they cannot be compared"
        )
    bad = nonfinite_weights(G)
    if bad:
        return _failed(protocol, f"non-finite weights in {', '.join(bad[:3])}", started)
    reference = reference_features(image_set, protocol)
    spec = get_extractor(protocol.extractor)
    device = torch.device(protocol.device)
    quantised = _QuantisedGenerator(copy.deepcopy(G), spec)
    model = GenerativeModelModuleWrapper(quantised, cfg.nz, "normal", 0).to(device)
    with full_fp32_precision():
        features = get_featuresdict_from_generative_model(
            model,
            create_extractor(spec.name, str(device)),
            protocol.n_fake,
            spec.batch_size,
            cuda=device.type == "cuda",
            rng_seed=protocol.eval_seed,
            verbose=False,
        )[spec.feature_layer].cpu()
    if quantised.nonfinite:
        return _failed(
            protocol, f"generator produced {quantised.nonfinite} non-finite pixels", started
        )
    return _stamped(
        scores_from_features(features, reference, protocol), "generator", protocol, started
    )


def score_floor(image_set: ImageSet, protocol: Protocol) -> dict:
    """The real-vs-real floor: held-out real images scored exactly as fakes would be."""
    started = time.perf_counter()
    reference = reference_features(image_set, protocol)
    scores = scores_from_features(reference["held_out"], reference, protocol)
    return _stamped(scores, "floor", protocol, started)


# ---- whole runs --------------------------------------------------------------------------
def snapshot_steps(run_dir: Path) -> dict[int, Path]:
    paths = sorted((Path(run_dir) / "snapshots").glob(SNAPSHOT_GLOB))
    return {int(p.stem.removeprefix("G_step_")): p for p in paths}


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _records(result: dict, step: int | None, protocol: dict, names: list[str]) -> list[dict]:
    """One JSON line per (metric, step), each carrying its protocol."""
    out = []
    for name in names:
        record = {"metric": name, "value": result[name], "step": step, "kind": result["kind"]}
        if name + "_std" in result:
            record["std"] = result[name + "_std"]
        if "reason" in result:
            record["reason"] = result["reason"]
        out.append(record | {"protocol_id": protocol["id"], "protocol": protocol})
    return out


def _mode_records(result: dict, step: int) -> list[dict]:
    count = f"{result['n'] // 1000}k" if result["n"] % 1000 == 0 else str(result["n"])
    renamed = {
        f"modes_{count}": result["modes"],
        f"modes_kl_{count}": result["kl"],
        "kind": "generator",
    } | ({"reason": result["reason"]} if "reason" in result else {})
    return _records(renamed, step, result["protocol"], [f"modes_{count}", f"modes_kl_{count}"])


def score_run(
    run_dir: Path | str,
    extractor: str = "mnist",
    n_fake: int | None = None,
    steps: list[int] | None = None,
    device: str = "auto",
    count_modes: bool | None = None,
    kid_subsets: int | None = None,
) -> list[dict]:
    """Score a run's snapshots (an FID-over-training curve) into run_dir/scores.jsonl.

    Snapshots already scored under the same protocol id are skipped; the floor is scored
    once per protocol (step None). Stacked MNIST runs also get mode counts unless
    count_modes=False. Returns this protocol's records, old and new.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    cfg = RunConfig.from_dict(json.loads(config_path.read_text()), where=str(config_path))
    image_set = load_images(cfg.data, cfg.image_size, cfg.channels)
    protocol = make_protocol(image_set, extractor, n_fake, device, kid_subsets)
    protocol_dict = protocol.to_dict()
    count_modes = cfg.data == "stacked_mnist" if count_modes is None else count_modes
    available = snapshot_steps(run_dir)
    missing = sorted(set(steps or []) - set(available))
    if missing:
        raise ConfigError(f"{run_dir}: no snapshot for steps {missing}; have {sorted(available)}")
    wanted = {s: p for s, p in available.items() if not steps or s in steps}

    scores_path = run_dir / "scores.jsonl"
    records = _read_jsonl(scores_path)

    def done(step: int | None) -> bool:
        have = {(r["metric"], r["step"]) for r in records if r["protocol_id"] == protocol.id}
        return all((name, step) in have for name in protocol.metric_names)

    def save() -> None:
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        atomic_write_text(scores_path, text)

    if not done(None):
        records += _records(
            score_floor(image_set, protocol), None, protocol_dict, protocol.metric_names
        )
        save()
    mode_protocol = modes.modes_protocol(device=device)
    scored_modes = {r["step"] for r in records if r["protocol_id"] == mode_protocol["id"]}
    for step, path in sorted(wanted.items()):
        G = Generator(cfg)
        G.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
        new = []
        if not done(step):
            result = score_generator(G, cfg, image_set, protocol)
            new += _records(result, step, protocol_dict, protocol.metric_names)
        if count_modes and step not in scored_modes:
            new += _mode_records(modes.score_modes(G, device=device), step)
        if new:
            records += new
            save()
    own = {protocol.id, mode_protocol["id"]}
    return [r for r in records if r["protocol_id"] in own]


def command_score(argv: list[str] | None = None) -> int:
    """`python -m dcgan score RUN_DIR`: score every snapshot of a run and print the curve."""
    parser = argparse.ArgumentParser(
        prog="python -m dcgan score",
        description="FID/KID/precision/recall of a run's generator snapshots (and Stacked "
        "MNIST modes), appended to RUN_DIR/scores.jsonl with their protocol.",
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--extractor", choices=["mnist", "inception"], default="mnist")
    parser.add_argument(
        "--n-fake", type=int, default=None, help="fakes (= held-out reals) per score"
    )
    parser.add_argument("--steps", type=int, nargs="*", default=None, help="only these snapshots")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--kid-subsets",
        type=int,
        default=None,
        help=f"KID subsets (default {KID_SUBSETS}; each costs ~0.1 s on 2 CPU cores at 1k fakes)",
    )
    parser.add_argument("--no-modes", action="store_true", help="skip Stacked MNIST mode counts")
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
        )
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}")
        return 2
    protocols = {r["protocol_id"]: r["protocol"] for r in records}
    for record in sorted(
        records, key=lambda r: (r["step"] is not None, r["step"] or 0, r["metric"])
    ):
        step = "floor" if record["step"] is None else f"step {record['step']}"
        std = f" +- {record['std']:.4g}" if "std" in record else ""
        reason = f"  ({record['reason']})" if "reason" in record else ""
        print(f"{step:>12}  {record['metric']:<22} {record['value']:.6g}{std}{reason}")
    for protocol_id, protocol in protocols.items():
        print(f"protocol {protocol_id}: {json.dumps(protocol, sort_keys=True)}")
    return 0
