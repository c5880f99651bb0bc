"""`dcgan COMMAND` (or `python -m dcgan COMMAND`): dispatch to the command's implementation.

The parsers live in `cli_args` (argparse alone, so --help is instant); torch, pandas, Optuna and
torch-fidelity are imported only once a command runs. `score`, `inception`, `train-classifier`,
`tune` and `dashboard` hand their arguments on to the module that implements them, which parses
them again with the same `cli_args` parser (tests/test_cli.py checks that both accept the same
options).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .cli_args import (  # noqa: F401 (re-exported: the command line's tables, for tests and docs)
    PARSERS,
    SUMMARIES,
    _paths,
    _storage,
    build_parser,
    command_parser,
)
from .config import ConfigError, parse_overrides
from .locations import ablations_dir


def _train(args: argparse.Namespace, _argv: list[str]) -> int:
    import json

    from .recipes import build_config

    overrides = parse_overrides(args.set)
    for key in ("data", "seed", "device"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.kimg is not None:
        overrides.update(kimg=args.kimg, steps=None)
    if args.steps is not None:
        overrides["steps"] = args.steps
    cfg = build_config(args.recipe, overrides, where="command line")
    if cfg.data == "mnist" and cfg.channels != 1 and "channels" not in overrides:
        # pytorch/examples main.py trains MNIST with nc=1; the recipes' nc=3 is for colour
        # data. Measured on the tutorial at 64x64: nc=3 (grey copied thrice) collapsed at step
        # 74 on seeds 0 and 1; nc=1 drew digits by step 300 (docs/session-2-notes.md).
        cfg = cfg.replace(where="command line", channels=1)
        print(
            "data mnist is greyscale: channels=1, as pytorch/examples main.py does (--set channels=3 to override)"
        )
    from .train import train

    print(
        f"training {args.recipe} on {cfg.data}: {cfg.total_steps} steps of batch {cfg.batch_size} -> {args.out}"
    )
    from .integrity import repair_run_dir

    repair_run_dir(args.out, cfg)  # a damaged checkpoint or result: quarantined, not a traceback
    result = train(cfg, args.out, progress=True)
    print(json.dumps(result, indent=2))
    return 0 if result["status"] in ("completed", "diverged") else 1


def _ablate(args: argparse.Namespace, _argv: list[str]) -> int:
    if args.list or not args.name:
        from .specs import list_specs, load_spec

        names = list_specs()
        if not names:
            from .locations import missing_specs_hint

            raise ConfigError(missing_specs_hint(ablations_dir()))
        for name in names:
            spec = load_spec(name)
            print(f"{name:15s} {spec.question}  [{len(spec.arms)} arms, baseline {spec.baseline}]")
        if not args.name:
            print("\nrun one: dcgan ablate NAME [--profile smoke|cpu|gpu]; see dcgan ablate --help")
        return 0
    paths = _paths(args)
    if args.dry_run:
        from .plan import format_plan, plan_ablation

        plan = plan_ablation(
            args.name, args.profile, seeds=args.seeds, data=args.data, workers=args.workers,
            paths=paths, storage_url=_storage(args),
        )  # fmt: skip
        print(format_plan(plan))
        return 0
    if args.sequential:
        from .sequential import run_sequential

        _, page = run_sequential(
            args.name, args.profile, seeds=args.seeds, data=args.data, workers=args.workers,
            storage_url=_storage(args), paths=paths, report=not args.no_report,
        )  # fmt: skip
        if page is not None:
            print(f"report: {page}")
        return 0
    from .runner import run_ablation

    page = run_ablation(
        args.name,
        args.profile,
        seeds=args.seeds,
        data=args.data,
        workers=args.workers,
        storage_url=_storage(args),
        paths=paths,
        report=not args.no_report,
        show_progress=False if args.no_progress else None,
    )
    if page is not None:
        print(f"report: {page}")
    return 0


def _report(args: argparse.Namespace, _argv: list[str]) -> int:
    from .collect import render_from_store

    for page in render_from_store(args.names, args.profile, _storage(args), _paths(args)):
        print(f"report: {page}")
    return 0


def _delegate(module: str, function: str):
    def run(_args: argparse.Namespace, argv: list[str]) -> int:
        import importlib

        return getattr(importlib.import_module(module), function)(argv)

    return run


def _gpu_check(args: argparse.Namespace, _argv: list[str]) -> int:
    from .perf.gpu_check import main as gpu_check  # imports torch only once CUDA looks possible

    if "DCGAN_CACHE_DIR" not in os.environ:
        os.environ["DCGAN_CACHE_DIR"] = str(Path(args.results) / "cache")
    return gpu_check(args.results, out=args.out, budget_s=args.budget_s, storage_url=_storage(args))


COMMANDS = {
    "train": _train,
    "ablate": _ablate,
    "report": _report,
    "score": _delegate("dcgan.metrics.fidelity", "command_score"),
    "inception": _delegate("dcgan.metrics.inception", "command_inception"),
    "train-classifier": _delegate("dcgan.metrics.mnist_net", "command_train_classifier"),
    "build-extractor": _delegate("dcgan.metrics.feature_nets", "command_build_extractor"),
    "choose-budget": _delegate("dcgan.budget", "command_choose_budget"),
    "tune": _delegate("dcgan.tune", "command_tune"),
    "dashboard": _delegate("dcgan.dashboard", "command_dashboard"),
    "gpu-check": _gpu_check,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if hasattr(sys.stdout, "reconfigure"):  # a log file or pipe sees each line when it happens
        sys.stdout.reconfigure(line_buffering=True)
    parser = build_parser()
    if not argv:
        parser.print_help()
        return 2
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version (0) or a usage error (2)
        return int(exit_.code or 0)
    from .runner_errors import one_line

    try:
        return COMMANDS[args.command](args, argv[1:])
    except ConfigError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001  (one line, not a traceback; DCGAN_TRACEBACK=1 shows it)
        if os.environ.get("DCGAN_TRACEBACK"):
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        page = getattr(err, "page", None)
        if page is not None:
            print(f"report (runs that finished): {page}", file=sys.stderr)
        return 1
