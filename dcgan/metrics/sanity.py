"""Metric sanity suite: do the metrics get worse when real digits are made worse?

On held-out real digits (never used to build any extractor), each family corrupts a sample of
`n` images at increasing levels; level 0 is the clean sample. Every metric in every feature
space should move monotonically the bad way along each family it is meant to see, and grey
noise should score worse than every corrupted sample:

- blur: Gaussian blur of std `level` pixels;
- noise: additive Gaussian pixel noise of std `level` (in 0-255 grey levels), clipped;
- drop_classes: the sample drawn only from the first 10 - `level` digit classes (mode dropping,
  by the MNIST labels);
- memorise: `level` distinct images, each repeated n / level times (a sample that is a few
  real images copied);
- grey_noise: every pixel i.i.d. N(127.5, 64^2), clipped: no digit at all.

Which metric should see which family (APPLIES): FID and KID see all four. Precision and
density measure fidelity (are fakes like reals?): they must drop under blur and noise, and are
not expected to move when classes are dropped or reals are repeated (those fakes are real
digits). Recall and coverage measure diversity: they must drop under class dropping and
memorisation; blur and noise also push samples off the real manifold, and we test that too.
`python -m dcgan.metrics.sanity` draws docs/img/metrics-sanity-*.png and prints the slopes.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import held_out_split, load_images

N_SAMPLE = 500
SEED = 7
LEVELS = {
    "blur": [0.0, 0.7, 1.2, 2.0],
    "noise": [0.0, 32.0, 64.0, 128.0],
    "drop_classes": [0, 2, 4, 5],
    "memorise": [N_SAMPLE, 50, 10, 2],
}
FAMILIES = tuple(LEVELS)
# Which families each metric must get monotonically worse along.
APPLIES = {
    "fid": FAMILIES,
    "kid": FAMILIES,
    "precision": ("blur", "noise"),
    "density": ("blur", "noise"),
    "recall": FAMILIES,
    "coverage": FAMILIES,
}
LOWER_IS_BETTER = {"fid": True, "kid": True}  # the others: higher is better


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return images
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).float()
    x = images.float()
    c = x.shape[1]
    kx = kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    ky = kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kx, groups=c)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), ky, groups=c)
    return x.round().clamp(0, 255).to(torch.uint8)


def add_noise(images: torch.Tensor, sigma: float, seed: int = SEED) -> torch.Tensor:
    if sigma <= 0:
        return images
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=gen) * sigma
    return (images.float() + noise).round().clamp(0, 255).to(torch.uint8)


def grey_noise(n: int, shape: tuple[int, ...], seed: int = SEED) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + 1)
    x = 127.5 + 64 * torch.randn((n, *shape), generator=gen)
    return x.round().clamp(0, 255).to(torch.uint8)


def sample(
    images: torch.Tensor, labels: torch.Tensor, family: str, level, n: int = N_SAMPLE, seed=SEED
) -> torch.Tensor:
    """The `family` corruption at `level` of an n-image sample of `images` (uint8)."""
    gen = torch.Generator().manual_seed(seed)
    if family == "drop_classes":
        keep = torch.nonzero(labels < 10 - int(level)).flatten()
        if len(keep) < n:
            raise ValueError(f"only {len(keep)} images in {10 - level} classes; need {n}")
        return images[keep[torch.randperm(len(keep), generator=gen)[:n]]]
    clean = images[torch.randperm(len(images), generator=gen)[:n]]
    if family == "blur":
        return blur(clean, float(level))
    if family == "noise":
        return add_noise(clean, float(level), seed)
    if family == "memorise":
        distinct = int(level)
        return clean[:distinct].repeat_interleave(-(-n // distinct), dim=0)[:n]
    raise ValueError(f"unknown family {family!r}")


def sanity_samples(n: int = N_SAMPLE, n_held_out: int = 1000) -> dict[str, list]:
    """{family: [(level, uint8 images)], 'grey_noise': [(None, images)]} from held-out digits."""
    digits = load_images("mnist", 32, 1)
    _, held_out = held_out_split(len(digits), n_held_out)
    images, labels = digits.images[held_out], digits.labels[held_out]
    out = {
        family: [(level, sample(images, labels, family, level, n)) for level in levels]
        for family, levels in LEVELS.items()
    }
    out["grey_noise"] = [(None, grey_noise(n, tuple(images.shape[1:])))]
    return out


def sanity_curves(extractor: str, n: int = N_SAMPLE) -> dict:
    """Every metric at every level of every family, in one feature space.

    The reference is the protocol's (the 4,000 digits outside the 1,000 held out); samples are
    scored exactly like fakes by `fidelity.scores_from_features`."""
    from .fidelity import featurise, make_protocol, reference_features, scores_from_features

    digits = load_images("mnist", 32, 1)
    protocol = make_protocol(digits, extractor, n_fake=1000, device="cpu")
    reference = reference_features(digits, protocol)
    curves: dict = {"extractor": extractor, "n": n, "protocol_id": protocol.id, "families": {}}
    for family, entries in sanity_samples(n).items():
        rows = []
        for level, images in entries:
            scores = scores_from_features(featurise(images, extractor), reference, protocol)
            bare = {m: scores[protocol.metric_name(m)] for m in APPLIES}
            rows.append({"level": level, **bare})
        curves["families"][family] = rows
    return curves


def worse(metric: str, a: float, b: float) -> bool:
    """Is b strictly worse than a?"""
    return b > a if LOWER_IS_BETTER.get(metric, False) else b < a


def check(curves: dict) -> list[str]:
    """Every failed expectation, as a sentence; empty when the extractor passes."""
    failures = []
    grey = curves["families"]["grey_noise"][0]
    for metric, families in APPLIES.items():
        for family in families:
            rows = curves["families"][family]
            for a, b in zip(rows, rows[1:], strict=False):
                # a bounded metric already at its floor 0 cannot get worse
                if not (worse(metric, a[metric], b[metric]) or a[metric] == b[metric] == 0.0):
                    failures.append(
                        f"{curves['extractor']} {metric} {family}: level {a['level']} -> "
                        f"{b['level']} goes {a[metric]:.4g} -> {b[metric]:.4g}"
                    )
        for family in FAMILIES:
            for row in curves["families"][family]:
                value, g = row[metric], grey[metric]
                # bounded metrics may tie at their floor 0 with grey noise
                if not (worse(metric, value, g) or (g == value == 0.0)):
                    failures.append(
                        f"{curves['extractor']} {metric}: grey noise {g:.4g} is not worse than "
                        f"{family} level {row['level']} ({value:.4g})"
                    )
    return failures


def slopes(curves: dict) -> dict[str, dict[str, float]]:
    """Per metric and family: (worst level - clean) / |clean - grey noise|, signed so that
    positive means 'got worse'. 1 means the corruption's last level is as bad as grey noise."""
    grey = curves["families"]["grey_noise"][0]
    out: dict[str, dict[str, float]] = {}
    for metric in APPLIES:
        sign = 1.0 if LOWER_IS_BETTER.get(metric, False) else -1.0
        out[metric] = {}
        for family in FAMILIES:
            rows = curves["families"][family]
            span = abs(rows[0][metric] - grey[metric]) or math.nan
            out[metric][family] = sign * (rows[-1][metric] - rows[0][metric]) / span
    return out


def plot(all_curves: list[dict], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for family in FAMILIES:
        fig, axes = plt.subplots(1, len(APPLIES), figsize=(3.0 * len(APPLIES), 2.8))
        for ax, metric in zip(axes, APPLIES, strict=True):
            n_levels = len(LEVELS[family])
            for curves in all_curves:
                rows = curves["families"][family]
                line = ax.plot(
                    range(n_levels), [r[metric] for r in rows], "o-", label=curves["extractor"]
                )[0]
                grey = curves["families"]["grey_noise"][0][metric]
                ax.plot([n_levels], [grey], "x", color=line.get_color(), ms=8)
            ticks = [str(v) for v in LEVELS[family]] + ["grey\nnoise"]
            ax.set_xticks(range(n_levels + 1), ticks)
            ax.set_title(metric + (" (lower better)" if metric in LOWER_IS_BETTER else ""))
            ax.set_xlabel(family)
            if metric == "fid":
                ax.set_yscale("log")
            if metric == "kid":
                ax.set_yscale("symlog", linthresh=1e-3)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        path = Path(out_dir) / f"metrics-sanity-{family}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dcgan.metrics.sanity")
    parser.add_argument("extractors", nargs="*", default=["mnist", "randcnn"])
    parser.add_argument("--plot", type=Path, default=None, help="folder for the PNG curves")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    all_curves = [sanity_curves(name) for name in args.extractors]
    status = 0
    for curves in all_curves:
        failures = check(curves)
        print(f"== {curves['extractor']}: {'PASS' if not failures else 'FAIL'}")
        for failure in failures:
            print("   ", failure)
        for metric, by_family in slopes(curves).items():
            print(f"   {metric:<10}", "  ".join(f"{f} {v:+.3f}" for f, v in by_family.items()))
        status |= bool(failures)
    if args.json:
        args.json.write_text(json.dumps(all_curves, indent=1))
    if args.plot:
        for path in plot(all_curves, args.plot):
            print(f"wrote {path}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
