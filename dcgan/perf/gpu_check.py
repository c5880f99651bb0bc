"""`nox -s gpu-check` / `dcgan gpu-check`: the prepared GPU check, one script, <= 8 minutes.

On a machine with CUDA it runs, in this order (each within the remaining budget; a check that
would start past `--budget-s` is recorded as skipped):

1. fast path vs canonical at `tutorial` (64x64, widths 64, batch 128, Stacked MNIST as RGB):
   `dcgan.train.Run` against pytorch/examples' loop (`dcgan.perf.canonical`: ImageFolder +
   DataLoader with 2 workers decoding a PNG folder, `.item()` every step), interleaved rounds,
   best round each; goal >= 3x.
2. K=4 packed seeds (`dcgan.perf.packed.PackedRun`) vs the same 4 seeds as 4 fast-path runs in
   sequence, at `cpu_default`; goal >= 2x.
3. bf16 autocast with `bce_logits` vs fp32 at `tutorial` (speed, and finite losses), and
   `amp=bf16` with `bce` (Sigmoid + BCELoss), which RunConfig refuses: it stays fp32.
4. CUDA graphs: not implemented (a row that says so).
5. Inception pool features on GPU vs CPU, the same 256 images, TF32 off (as when scoring):
   relative difference ||gpu - cpu|| / ||cpu|| <= 1e-3.
6. A 2-arm x 2-seed `gpu`-profile smoke ablation (`loss`: bce vs bce_logits, the tutorial
   networks, Inception FID/KID at 2,000 fakes, 200 steps) on a generated folder of 64x64 RGB
   Stacked MNIST PNGs: all 4 runs finish, scored, with a report.

It prints a table and writes RESULTS/gpu-check.json (see docs/usage.md for both formats). Exit
status: 0 when every check ran and every correctness check (3's finite losses, 5, 6) passed,
speed goals met or not (the table says); 1 when a correctness check failed or a check crashed;
3 at once, before any work, when torch sees no CUDA device.

`quick=True` (tests only) runs the same code on tiny sizes on any device, CPU included.

Over 400 lines on purpose: one prepared script: six independent checks, one function each, and
their table.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

NO_CUDA_EXIT = 3
PNG_IMAGES = 5000  # the generated folder (Stacked MNIST written as PNGs)
INCEPTION_IMAGES = 256
TOLERANCE = 1e-3


@dataclass
class Row:
    check: str
    baseline: str = ""
    result: str = ""
    ratio: float | None = None
    goal: str = ""
    ok: bool | None = None  # None: informational (no pass/fail)
    kind: str = "speed"  # speed | correctness | info
    seconds: float = 0.0
    note: str = ""
    data: dict = field(default_factory=dict)


@dataclass
class Sizes:
    rounds: int = 5
    steps: int = 20  # per round
    png_images: int = PNG_IMAGES
    inception_images: int = INCEPTION_IMAGES
    ablation_steps: int = 200
    ablation_n_fake: int = 2000
    ablation_batch: int | None = None  # None: the recipe's (128)
    ablation_width: int | None = None  # None: the recipe's (64)


QUICK = Sizes(rounds=2, steps=2, png_images=60, inception_images=8, ablation_steps=2,
              ablation_n_fake=20, ablation_batch=16, ablation_width=8)  # fmt: skip


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_rounds(sides: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Interleaved rounds (order alternating), one warm-up round each; best round per side."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for name in sides:
        sides[name]()  # warm-up: cuDNN autotuning, DataLoader workers, allocator
    for r in range(rounds):
        order = list(sides) if r % 2 else list(sides)[::-1]
        for name in order:
            started = time.perf_counter()
            sides[name]()
            times[name].append(time.perf_counter() - started)
    return {name: min(ts) for name, ts in times.items()}


def _fast_side(cfg, images, run_dir: Path, steps: int):
    from ..train import Run

    run = Run(cfg, run_dir, images)

    def go() -> None:
        for _ in range(steps):
            run.train_step()
            run.step += 1
        _sync(run.device)

    return run, go


def _rate(images: int, seconds: float) -> str:
    return f"{images / seconds:,.0f} img/s"


# ---- the checks ----------------------------------------------------------------------------
def check_fast_vs_canonical(ctx: dict, sizes: Sizes) -> Row:
    from ..recipes import build_config
    from ..train import resolve_device
    from .canonical import canonical_steps, image_folder_loader

    cfg = build_config("tutorial", {"device": ctx["device"], "data": "stacked_mnist"}, where="gpu-check")  # fmt: skip
    if ctx["quick"]:
        cfg = cfg.replace("gpu-check", batch_size=16, g_width=8, d_width=8)
    device = resolve_device(cfg.device)
    _, fast = _fast_side(cfg, ctx["images"], ctx["tmp"] / "fast", sizes.steps)
    steps = canonical_steps(cfg, image_folder_loader(ctx["png_root"], cfg), n_steps=10**9)

    def canonical() -> None:
        for _ in range(sizes.steps):
            next(steps)
        _sync(device)

    best = _best_rounds({"canonical": canonical, "fast": fast}, sizes.rounds)
    n = sizes.steps * cfg.batch_size
    ratio = best["canonical"] / best["fast"]
    return Row(
        "fast path vs canonical (tutorial, batch 128)", _rate(n, best["canonical"]),
        _rate(n, best["fast"]), ratio, ">= 3x", ratio >= 3.0,
        data={"canonical_img_s": n / best["canonical"], "fast_img_s": n / best["fast"],
              "steps_per_round": sizes.steps, "rounds": sizes.rounds},
    )  # fmt: skip


def check_packed(ctx: dict, sizes: Sizes) -> Row:
    from ..data import load_images
    from ..recipes import build_config
    from .packed import PackedRun

    cfgs = [
        build_config("cpu_default", {"device": ctx["device"], "seed": s}, where="gpu-check")
        for s in range(4)
    ]
    images = load_images(cfgs[0].data, cfgs[0].image_size, cfgs[0].channels)
    runs = [_fast_side(c, images, ctx["tmp"] / f"seq{i}", sizes.steps) for i, c in enumerate(cfgs)]
    pack = PackedRun(cfgs, images)

    def packed() -> None:
        for _ in range(sizes.steps):
            pack.train_step()
            pack.step += 1
        _sync(pack.device)

    def sequential() -> None:
        for _, go in runs:
            go()

    best = _best_rounds({"sequential": sequential, "packed": packed}, sizes.rounds)
    n = 4 * sizes.steps * cfgs[0].batch_size
    ratio = best["sequential"] / best["packed"]
    return Row(
        "4 packed seeds vs 4 sequential (cpu_default)", _rate(n, best["sequential"]),
        _rate(n, best["packed"]), ratio, ">= 2x", ratio >= 2.0,
        data={"sequential_img_s": n / best["sequential"], "packed_img_s": n / best["packed"]},
    )  # fmt: skip


def check_bf16(ctx: dict, sizes: Sizes) -> list[Row]:
    import torch

    from ..config import ConfigError
    from ..recipes import build_config

    base = {"device": ctx["device"], "data": "stacked_mnist", "loss": "bce_logits"}
    if ctx["quick"]:
        base |= {"batch_size": 16, "g_width": 8, "d_width": 8}
    sides, runs = {}, {}
    for amp in ("off", "bf16"):
        cfg = build_config("tutorial", {**base, "amp": amp}, where="gpu-check")
        runs[amp], sides[amp] = _fast_side(cfg, ctx["images"], ctx["tmp"] / f"amp-{amp}", sizes.steps)  # fmt: skip
    best = _best_rounds(sides, sizes.rounds)
    finite = all(
        bool(torch.isfinite(run.train_step()).all()) for run in runs.values()
    )  # one more step each: its losses and D outputs
    n = sizes.steps * runs["off"].cfg.batch_size
    ratio = best["off"] / best["bf16"]
    rows = [
        Row(
            "bf16 autocast vs fp32 (tutorial, bce_logits)",
            _rate(n, best["off"]),
            _rate(n, best["bf16"]),
            ratio,
            "faster, finite",
            finite and ratio > 1.0,
            kind="correctness" if not finite else "speed",
            note="" if finite else "non-finite losses under bf16",
            data={"fp32_img_s": n / best["off"], "bf16_img_s": n / best["bf16"], "finite": finite},
        )  # fmt: skip
    ]
    try:
        build_config("tutorial", {**base, "loss": "bce", "amp": "bf16"}, where="gpu-check")
        refused, says = False, "accepted: Sigmoid+BCELoss would run under autocast"
    except ConfigError as err:
        refused, says = True, str(err).split(": ", 1)[-1]
    rows.append(
        Row("bf16 with bce (Sigmoid + BCELoss)", "", "refused: stays fp32" if refused else says,
            None, "refused", refused, kind="correctness", note=says)
    )  # fmt: skip
    return rows


def check_inception(ctx: dict, sizes: Sizes) -> Row:
    import torch

    from ..metrics.inception import extract_features

    images = ctx["images"].images[: sizes.inception_images]
    device = torch.device("cuda" if ctx["device"] == "cuda" else "cpu")
    started = time.perf_counter()
    on_device = extract_features(images.to(device)).double().cpu()
    device_s = time.perf_counter() - started
    started = time.perf_counter()
    on_cpu = extract_features(images.cpu()).double()
    cpu_s = time.perf_counter() - started
    rel = float((on_device - on_cpu).norm() / on_cpu.norm())
    worst = float(((on_device - on_cpu).abs() / on_cpu.abs().clamp_min(1e-6)).max())
    n = len(images)
    return Row(
        f"Inception features GPU vs CPU ({n} images, TF32 off)", f"CPU {_rate(n, cpu_s)}",
        f"rel. diff {rel:.1e} ({_rate(n, device_s)})", None, f"<= {TOLERANCE:g}", rel <= TOLERANCE,
        kind="correctness", note=f"largest element-wise relative difference {worst:.1e}",
        data={"relative_difference": rel, "max_elementwise_relative": worst, "images": n,
              "gpu_img_s": n / device_s, "cpu_img_s": n / cpu_s},
    )  # fmt: skip


def _smoke_spec(folder: Path, sizes: Sizes) -> Path:
    """`loss` (bce vs bce_logits) with its `gpu` profile cut to a smoke budget."""
    from ..specs import ABLATIONS_DIR

    batch = sizes.ablation_batch or 128
    overrides = {"kimg": sizes.ablation_steps * batch / 1000, "grid_every": sizes.ablation_steps // 2,
                 "snapshot_every": sizes.ablation_steps // 2, "checkpoint_every": sizes.ablation_steps}  # fmt: skip
    if sizes.ablation_batch:
        overrides["batch_size"] = sizes.ablation_batch
    if sizes.ablation_width:
        overrides |= {"g_width": sizes.ablation_width, "d_width": sizes.ablation_width}
    lines = [
        (ABLATIONS_DIR / "loss.toml").read_text(encoding="utf-8"),
        "", "[profiles.gpu]", "seeds = [0, 1]", f"n_fake = {sizes.ablation_n_fake}",
        'description = "gpu-check: the gpu profile (tutorial networks, Inception) at a smoke budget"',
        "[profiles.gpu.overrides]",
    ]  # fmt: skip
    lines += [f"{k} = {v!r}" for k, v in overrides.items()]
    path = folder / "gpu_check_loss.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def check_ablation(ctx: dict, sizes: Sizes) -> Row:
    import optuna
    from optuna.trial import TrialState

    from .. import store
    from ..runner import Paths, run_ablation, study_name
    from ..specs import load_spec

    spec = _smoke_spec(ctx["tmp"], sizes)
    paths = Paths(
        ctx["results"] / "gpu-check" / "results", ctx["results"] / "gpu-check" / "reports"
    )
    lines: list[str] = []
    started = time.perf_counter()
    page = run_ablation(
        str(spec), "gpu", data=f"folder:{ctx['png_root']}", workers=1, paths=paths,
        log=lines.append, show_progress=False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    name = study_name(load_spec(str(spec)), "gpu", f"folder:{ctx['png_root']}")
    study = optuna.load_study(study_name=name, storage=store.open_storage(paths.default_storage))
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    fids = [t.user_attrs.get("scores", {}).get("fid") for t in done]
    scored = [f for f in fids if isinstance(f, int | float) and math.isfinite(f)]
    ok = len(done) == 4 and len(scored) == 4 and page is not None and Path(page).exists()
    return Row(
        "gpu-profile smoke ablation (loss: 2 arms x 2 seeds)", "",
        f"{len(done)}/4 runs, {len(scored)} scored, in {wall:.0f} s", None, "4/4 scored", ok,
        kind="correctness", note=f"report: {page}",
        data={"fids": fids, "report": str(page), "wall_s": wall, "log": lines[-20:]},
    )  # fmt: skip


CHECKS: list[tuple[str, Callable]] = [
    ("fast_vs_canonical", check_fast_vs_canonical),
    ("packed", check_packed),
    ("bf16", check_bf16),
    ("inception", check_inception),
    ("ablation", check_ablation),
]


# ---- output --------------------------------------------------------------------------------
def format_table(rows: list[Row]) -> str:
    head = ("check", "baseline", "result", "ratio", "goal", "ok", "s")
    cells = [
        (r.check, r.baseline, r.result, f"{r.ratio:.2f}x" if r.ratio is not None else "",
         r.goal, {True: "yes", False: "NO", None: "-"}[r.ok], f"{r.seconds:.0f}")
        for r in rows
    ]  # fmt: skip
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*head), line.format(*("-" * w for w in widths))]
    out += [line.format(*c) for c in cells]
    notes = [f"  {r.check}: {r.note}" for r in rows if r.note]
    return "\n".join(out + (["notes:"] + notes if notes else []))


def environment(device: str) -> dict:
    import torch

    info = {
        "torch": torch.__version__, "python": platform.python_version(),
        "host": platform.node(), "cpu_count": os.cpu_count(), "device": device,
    }  # fmt: skip
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info |= {
            "gpu": props.name, "gpu_memory_gb": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        }  # fmt: skip
    return info


def run_checks(
    results: Path, *, device: str, budget_s: float, quick: bool = False, log=print
) -> tuple[list[Row], dict]:
    from ..data import load_images
    from .canonical import write_png_folder

    sizes = QUICK if quick else Sizes()
    started = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="dcgan-gpu-check-") as tmp:
        tmp = Path(tmp)
        images = load_images("stacked_mnist", 64, 3)
        png_root = write_png_folder(images.images[: sizes.png_images], tmp / "stacked_mnist_png")
        ctx = {"device": device, "quick": quick, "tmp": tmp, "images": images,
               "png_root": png_root, "results": Path(results)}  # fmt: skip
        log(f"gpu-check on {device}: Stacked MNIST, {sizes.png_images:,} PNGs in {png_root} "
            f"({time.perf_counter() - started:.0f} s)")  # fmt: skip
        for name, check in CHECKS:
            elapsed = time.perf_counter() - started
            if elapsed > budget_s:
                rows.append(Row(name, result="skipped", ok=None, kind="info",
                                note=f"budget of {budget_s:.0f} s spent ({elapsed:.0f} s)"))  # fmt: skip
                continue
            check_started = time.perf_counter()
            try:
                got = check(ctx, sizes)
            except Exception as err:
                got = Row(name, result=f"crashed: {type(err).__name__}", ok=False, kind="correctness",
                          note=f"{err}", data={"traceback": traceback.format_exc()[-4000:]})  # fmt: skip
            got = got if isinstance(got, list) else [got]
            got[0].seconds = time.perf_counter() - check_started
            rows += got
            log(f"  {got[0].check}: {got[0].result} ({got[0].seconds:.0f} s)")
            if name == "bf16":
                rows.append(Row("CUDA graphs", result="not implemented", kind="info",
                                note="the fast path does not capture CUDA graphs yet"))  # fmt: skip
    summary = {"wall_s": time.perf_counter() - started, "budget_s": budget_s, "quick": quick}
    return rows, summary


def no_cuda_reason() -> str | None:
    """Why no CUDA device can be used, or None. Cheap cases first: no torch import (seconds)
    when the GPUs are hidden or the machine has no NVIDIA device node."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    if sys.platform.startswith("linux") and not any(Path("/dev").glob("nvidia[0-9]*")):
        return "this machine has no NVIDIA device (no /dev/nvidia*)"
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no GPU (torch.cuda.is_available() is False)"
    return None


def main(
    results: Path | None = None,
    *,
    out: Path | None = None,
    budget_s: float = 480.0,
    storage_url: str | None = None,
    quick: bool = False,
    device: str | None = None,
    log=print,
) -> int:
    if device is None:
        reason = no_cuda_reason()
        if reason is not None:
            print(
                f"gpu-check needs CUDA: {reason}. Run it on a machine with an NVIDIA GPU "
                "(`nox -s gpu-check` or `dcgan gpu-check`); on a CPU, `nox -s bench` measures "
                "the same fast path against the canonical loop.",
                file=sys.stderr,
            )
            return NO_CUDA_EXIT
        device = "cuda"
    del storage_url  # the smoke ablation keeps its own store under RESULTS/gpu-check/
    results = Path(results) if results is not None else Path("results")
    out = Path(out) if out is not None else results / "gpu-check.json"
    rows, summary = run_checks(results, device=device, budget_s=budget_s, quick=quick, log=log)
    failed = [r for r in rows if r.ok is False and r.kind == "correctness"]
    report = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "environment": environment(device),
        **summary,
        "passed": not failed,
        "checks": [asdict(r) for r in rows],
    }
    from ..atomic import atomic_write_text

    atomic_write_text(out, json.dumps(report, indent=2, default=str))
    log("")
    log(format_table(rows))
    log(f"\n{len(rows)} rows in {summary['wall_s']:.0f} s; written to {out}")
    return 1 if failed else 0
