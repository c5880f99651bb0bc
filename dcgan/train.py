"""The training loop: one readable function, deterministic, resumable, divergence-aware.

Semantics follow the PyTorch DCGAN tutorial (document 003): a D step on a real batch and a
fake batch (losses summed), then a G step with fakes labelled real. What the config changes
is explicit below (fresh noise for G, extra G steps, loss form, schedules).

The fast path is built in, each piece equivalence-tested against the canonical loop in
tests/test_fastpath.py: the dataset sits in memory as uint8 and is normalised per batch
(no decode, no DataLoader); per-step values stay on the device and are read every
`log_every` steps; channels_last; D's weight gradients are not computed in the G step.

The run directory's files and their layout belong to `dcgan.rundir.RunDir` (every file written
atomically, except metrics.jsonl which is append-only and truncated back to the checkpoint on
resume). result.json, written last, holds the outcome, timings, final losses and where the
run was trained (`provenance`: hardware, package versions, git commit, torch threads, from
`dcgan.environment`; one entry per distinct environment a resumed run trained in). Grids are
drawn under the one sampling policy (`dcgan.sampling.sample`) that FID and mode counts use.

Over 400 lines on purpose: the loop, its checkpoint/resume and the divergence rule read top to
bottom in one file, as pytorch/examples' main.py does.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torchvision.utils import save_image

from . import environment
from .config import ConfigError, RunConfig
from .data import ImageSet, load_images
from .faults import crash_point
from .losses import discriminator_loss, generator_loss, probability
from .models import Discriminator, Generator, build_models, sub_seed
from .rundir import RunDir
from .sampling import sample
from .schedules import lr_multiplier

EVAL_NOISE_SEED = 7_777  # the same grid noise for every run, arm and seed
GRID_SIZE = 64
METRIC_NAMES = (
    "d_loss", "g_loss", "d_real", "d_fake", "d_fake_after_d_step",
    "lr_g", "lr_d", "g_grad_norm", "d_grad_norm",
)  # fmt: skip


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device='cuda' but no CUDA device is available; use device='cpu' or 'auto'"
        )
    return torch.device(name)


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """Data order is a function of (seed, epoch) only: shared by every arm of a seed."""
    gen = torch.Generator().manual_seed(sub_seed(seed, f"data/{epoch}"))
    return torch.randperm(n, generator=gen)


def _grad_norm(params: list[torch.nn.Parameter]) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def _loss_precision(out: torch.Tensor) -> torch.Tensor:
    """D's bf16 output (autocast) goes to fp32 for the loss; fp32 and float64 stay as they are
    (the equivalence tests run in float64: a cast to fp32 there would add rounding noise)."""
    return out.float() if out.dtype in (torch.bfloat16, torch.float16) else out


class Run:
    """State of one training run; `train()` below is the readable entry point."""

    # The G step needs D's input gradients only, so D's weights get none there. A subclass
    # that sets this True computes them too (the canonical loop's way): tests and benches
    # measure what skipping them saves (tests/train_hooks.py). Not a setting of a run.
    _d_weight_grads_in_g_step = False

    def __init__(self, cfg: RunConfig, run_dir: Path | str | RunDir, images: ImageSet):
        self.cfg, self.device = cfg, resolve_device(cfg.device)
        self.dir = RunDir.of(run_dir)
        self.n_images = len(images)
        if cfg.batch_size > self.n_images:
            raise ConfigError(
                f"batch_size={cfg.batch_size} is larger than the dataset ({self.n_images} images)"
            )
        self.steps_per_epoch = self.n_images // cfg.batch_size  # drop_last: static shapes
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.memory_format = memory_format
        g, d = build_models(cfg)
        self.G: Generator = g.to(self.device, memory_format=memory_format)
        self.D: Discriminator = d.to(self.device, memory_format=memory_format)
        self.opt_g = torch.optim.Adam(
            self.G.parameters(), cfg.lr_g, betas=(cfg.beta1_g, cfg.beta2_g)
        )
        self.opt_d = torch.optim.Adam(
            self.D.parameters(), cfg.lr_d, betas=(cfg.beta1_d, cfg.beta2_d)
        )
        self.sched_g = self._schedule(self.opt_g, "G")
        self.sched_d = self._schedule(self.opt_d, "D")
        self.noise = torch.Generator(self.device).manual_seed(sub_seed(cfg.seed, "noise"))
        self.real_u8 = images.images.to(self.device)
        self.fixed_z = torch.randn(
            GRID_SIZE, cfg.nz, generator=torch.Generator().manual_seed(EVAL_NOISE_SEED)
        ).to(self.device)
        self.step = 0
        self.elapsed = 0.0
        self.order: torch.Tensor | None = None
        self.d_params = list(self.D.parameters())
        self.g_params = list(self.G.parameters())
        self.g_forward: Callable = torch.compile(self.G) if cfg.compile else self.G
        self.d_forward: Callable = torch.compile(self.D) if cfg.compile else self.D
        # where this run has trained so far: one entry per distinct environment
        self.environments: list[dict] = []
        self.provenance_complete = True  # False: resumed from a checkpoint that recorded none

    def _schedule(self, opt: torch.optim.Optimizer, net: str) -> torch.optim.lr_scheduler.LambdaLR:
        cfg = self.cfg
        fn = lr_multiplier(
            cfg.lr_schedule, net, cfg.total_steps, self.steps_per_epoch, cfg.lr_final_ratio
        )
        return torch.optim.lr_scheduler.LambdaLR(opt, fn)

    # ---- one step -------------------------------------------------------------------------
    def real_batch(self) -> torch.Tensor:
        epoch, i = divmod(self.step, self.steps_per_epoch)
        if i == 0 or self.order is None:
            self.order = epoch_order(self.cfg.seed, epoch, self.n_images).to(self.device)
        b = self.cfg.batch_size
        idx = self.order[i * b : (i + 1) * b]
        batch = self.real_u8.index_select(0, idx).float().div_(127.5).sub_(1.0)
        return batch.contiguous(memory_format=self.memory_format)

    def noise_batch(self) -> torch.Tensor:
        cfg = self.cfg
        z = torch.randn(cfg.batch_size, cfg.nz, 1, 1, device=self.device, generator=self.noise)
        return z

    def autocast(self):
        enabled = self.cfg.amp == "bf16" and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def train_step(self) -> torch.Tensor:
        """One D update and cfg.g_steps G updates; returns the step's metrics, on device."""
        cfg = self.cfg
        real = self.real_batch()
        with self.autocast():
            fake = self.g_forward(self.noise_batch())
            # (1) D: maximise log D(x) + log(1 - D(G(z)))
            real_out = _loss_precision(self.d_forward(real))
            fake_out = _loss_precision(self.d_forward(fake.detach()))
            d_loss = discriminator_loss(real_out, fake_out, cfg.loss, cfg.d_loss_reduction)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        d_grad_norm = _grad_norm(self.d_params)
        self.opt_d.step()

        # (2) G: maximise log D(G(z)). D's weights get no gradient here (it would be discarded).
        self.D.requires_grad_(self._d_weight_grads_in_g_step)
        for k in range(cfg.g_steps):
            with self.autocast():
                if k > 0 or cfg.g_fresh_noise:
                    fake = self.g_forward(self.noise_batch())
                g_out = _loss_precision(self.d_forward(fake))
                g_loss = generator_loss(g_out, cfg.loss)
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            g_grad_norm = _grad_norm(self.g_params)
            self.opt_g.step()
        self.D.requires_grad_(True)

        lr_g, lr_d = self.sched_g.get_last_lr()[0], self.sched_d.get_last_lr()[0]
        self.sched_g.step()
        self.sched_d.step()
        values = [d_loss, g_loss, probability(real_out, cfg.loss), probability(fake_out, cfg.loss)]
        values += [probability(g_out, cfg.loss)]  # D(G(z)) again, after D's update
        values = [v.detach().float() for v in values]
        values += [torch.tensor(lr_g, device=self.device), torch.tensor(lr_d, device=self.device)]
        values += [g_grad_norm.float(), d_grad_norm.float()]
        return torch.stack(values)

    # ---- persistence ----------------------------------------------------------------------
    def checkpoint_state(self) -> dict:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "noise_rng": self.noise.get_state(),
            "cpu_rng": torch.get_rng_state(),
            "config_hash": self.cfg.hash(),
            "config": json.dumps(self.cfg.to_dict()),
            "provenance": json.dumps(
                {"environments": self.environments, "complete": self.provenance_complete}
            ),
        }

    def record_environment(self) -> None:
        """Add the environment this process trains in, if the run has not trained in it yet."""
        env = environment.provenance(str(self.device))
        if env not in self.environments:
            self.environments.append(env)

    def provenance(self) -> dict:
        return {"environments": self.environments, "complete": self.provenance_complete}

    def load_checkpoint(self, path: Path | None = None) -> None:
        path = self.dir.checkpoint if path is None else path
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state["config_hash"] != self.cfg.hash():
            raise ConfigError(
                f"{self.dir}: its checkpoint was made with another config "
                f"(hash {state['config_hash']}, this one {self.cfg.hash()}); "
                "refusing to resume it: use a fresh --out directory"
            )
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        self.step, self.elapsed = state["step"], state["elapsed"]
        self.noise.set_state(state["noise_rng"].cpu())
        torch.set_rng_state(state["cpu_rng"].cpu())
        if "provenance" in state:
            recorded = json.loads(state["provenance"])
            self.environments = list(recorded.get("environments", []))
            self.provenance_complete = bool(recorded.get("complete", True))
        else:  # written before checkpoints recorded it: the earlier steps' machine is unknown
            self.environments, self.provenance_complete = [], False

    def save_grid(self) -> None:
        """The fixed-noise grid, sampled under the one policy (`dcgan.sampling.sample`)."""
        images = sample(self.G, self.fixed_z)
        buffer = io.BytesIO()
        # uint8 / 255 -> save_image's round trip (x * 255 + 0.5, floored) gives the uint8 back
        save_image(images.float().div_(255).cpu(), buffer, format="png", nrow=8)
        self.dir.write_grid(self.step, buffer.getvalue())

    def save_snapshot(self) -> None:
        state = {k: v.detach().cpu().contiguous() for k, v in self.G.state_dict().items()}
        self.dir.write_snapshot(self.step, state)


def read_metrics(run_dir: Path | str | RunDir) -> list[dict]:
    """Rows of metrics.jsonl; a line cut short by a kill is ignored."""
    return RunDir.of(run_dir).read_metrics()


def train(
    cfg: RunConfig,
    run_dir: Path | str | RunDir,
    *,
    images: ImageSet | None = None,
    progress: bool = False,
    on_log: Callable[[int, dict], None] | None = None,
    on_snapshot: Callable[[int, Generator], None] | None = None,
) -> dict:
    """Train (or resume, or return the finished result of) the run in `run_dir`.

    `on_log(step, row)` sees every flushed window's last row; `on_snapshot(step, G)` sees
    the generator at each snapshot (the tuner scores and prunes there; an exception it
    raises stops the run, with the previous checkpoint intact).
    """
    return _train(
        cfg, run_dir, images=images, progress=progress, on_log=on_log, on_snapshot=on_snapshot
    )


def _train(
    cfg: RunConfig,
    run_dir: Path | str | RunDir,
    *,
    images: ImageSet | None = None,
    progress: bool = False,
    on_log: Callable[[int, dict], None] | None = None,
    on_snapshot: Callable[[int, Generator], None] | None = None,
    _stop_after: int | None = None,
) -> dict:
    """`train`, plus a test hook: `_stop_after` stops after that step without finishing, as a
    kill just after that step's writes would (tests/train_hooks.py: `train_until`)."""
    rd = RunDir.of(run_dir)
    if rd.result.exists():
        result = json.loads(rd.result.read_text())
        if result.get("config_hash") == cfg.hash():
            return result
        raise ConfigError(f"{rd} holds a finished run with another config; use a fresh directory")
    if images is None:
        images = load_images(cfg.data, cfg.image_size, cfg.channels)
    run = Run(cfg, rd, images)
    if rd.checkpoint.exists():
        run.load_checkpoint()
        rd.truncate_metrics(run.step)
    else:
        rd.write_config(cfg)
        rd.truncate_metrics(0)
    run.record_environment()

    total = cfg.total_steps
    cadences = (cfg.log_every, cfg.grid_every, cfg.snapshot_every, cfg.checkpoint_every)
    window = torch.zeros(cfg.log_every, len(METRIC_NAMES), device=run.device)
    filled, last_row, diverged = 0, {}, None
    bar = _progress_bar(total, run.step, cfg.batch_size) if progress else None
    t0 = time.perf_counter() - run.elapsed
    while run.step < total:
        window[filled] = run.train_step()
        filled += 1
        run.step += 1
        crash_point("train_step")
        at_end = run.step == total
        if not (at_end or filled == cfg.log_every or any(run.step % c == 0 for c in cadences)):
            continue
        # Flush: the only host sync, every log window.
        rows = window[:filled].cpu().tolist()
        first = run.step - filled
        records = [
            {"step": first + i, **dict(zip(METRIC_NAMES, r, strict=True))}
            for i, r in enumerate(rows)
        ]
        filled = 0
        diverged = _divergence(records, cfg)
        if diverged is not None:  # keep the log up to the bad step; keep the last good checkpoint
            records = [r for r in records if r["step"] <= diverged[0]]
        rd.append_metrics(records)
        last_row = records[-1]
        if diverged is not None:
            break
        run.elapsed = time.perf_counter() - t0
        if bar is not None:
            bar.update(len(rows))
        if on_log is not None:
            on_log(run.step, last_row)
        if run.step % cfg.grid_every == 0 or at_end:
            run.save_grid()
        if run.step % cfg.snapshot_every == 0 or at_end:
            run.save_snapshot()
            if on_snapshot is not None:
                on_snapshot(run.step, run.G)
        if run.step % cfg.checkpoint_every == 0 or at_end:
            rd.write_checkpoint(run.checkpoint_state())
        if _stop_after is not None and run.step >= _stop_after and not at_end:
            return {"status": "interrupted", "steps_done": run.step}
    if bar is not None:
        bar.close()

    run.elapsed = time.perf_counter() - t0
    recent = rd.read_metrics()[-cfg.log_every :]
    result = {
        "status": "diverged" if diverged else "completed",
        "steps_done": run.step if not diverged else diverged[0],
        "total_steps": total,
        "diverged_at_step": diverged[0] if diverged else None,
        "divergence_reason": diverged[1] if diverged else None,
        "wall_s": run.elapsed,
        "images_per_s": run.step * cfg.batch_size / max(run.elapsed, 1e-9),
        "final_d_loss": _mean(r["d_loss"] for r in recent),
        "final_g_loss": _mean(r["g_loss"] for r in recent),
        "final_d_real": _mean(r["d_real"] for r in recent),
        "final_d_fake": _mean(r["d_fake"] for r in recent),
        "config_hash": cfg.hash(),
        "device": str(run.device),
        "torch_threads": torch.get_num_threads(),
        "provenance": run.provenance(),
    }
    rd.write_result(result)
    return result


def _mean(values) -> float | None:
    values = [v for v in values if math.isfinite(v)]
    return sum(values) / len(values) if values else None


def _divergence(records: list[dict], cfg: RunConfig) -> tuple[int, str] | None:
    for r in records:
        if not all(math.isfinite(r[k]) for k in ("d_loss", "g_loss")):
            return r["step"], "non-finite loss"
    g = [r["g_loss"] for r in records]
    if len(g) >= max(2, cfg.log_every // 2) and min(g) > cfg.diverge_g_loss:
        return records[-1]["step"], (
            f"D won outright: G loss stayed above {cfg.diverge_g_loss:g} for a whole log window "
            "(the generator's gradient has vanished)"
        )
    return None


def _progress_bar(total: int, done: int, batch_size: int):
    from tqdm import tqdm

    bar = tqdm(total=total, initial=done, unit="step", dynamic_ncols=True, smoothing=0.1)
    bar.set_postfix_str(f"batch {batch_size}")
    return bar


def load_generator(
    run_dir: Path | str | RunDir, step: int | None = None
) -> tuple[Generator, RunConfig]:
    """The generator of a run at a snapshot step (default: the latest snapshot)."""
    rd = RunDir.of(run_dir)
    cfg = rd.read_config()
    snapshots = rd.snapshots()
    if step is not None:
        snapshots = {s: p for s, p in snapshots.items() if s == step}
    if not snapshots:
        raise FileNotFoundError(
            f"{rd}: no generator snapshot" + (f" at step {step}" if step else "")
        )
    g = Generator(cfg)
    g.load_state_dict(torch.load(max(snapshots.items())[1], map_location="cpu", weights_only=True))
    return g, cfg
