"""Experiment (session 7): does flushing denormals (torch.set_flush_denormal) speed a cpu_default step?

Subnormal floats can make CPU arithmetic many times slower; GAN weights and gradients near zero
could hold some. This trains the cpu_default baseline 400 steps on 1 thread, counts subnormal
values among the weights and gradients, then times 12 interleaved rounds of 20 steps with the
flush off and on (order alternating). Result: docs/performance.md ("Session 7"). Run from the
repo root:
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python docs/experiments/flush_denormal.py
"""

import tempfile
import time

import torch

from dcgan.data import load_images
from dcgan.recipes import build_config
from dcgan.train import Run

torch.set_num_threads(1)
cfg = build_config("cpu_default", {"device": "cpu"}, where="experiment")
run = Run(cfg, tempfile.mkdtemp(), load_images(cfg.data, cfg.image_size, cfg.channels))
TINY = torch.finfo(torch.float32).tiny


def subnormal_share() -> float:
    tensors = [t for m in (run.G, run.D) for p in m.parameters() for t in (p.data, p.grad)]
    tensors = [t.abs() for t in tensors if t is not None]
    subnormal = sum(int(((t > 0) & (t < TINY)).sum()) for t in tensors)
    return subnormal / sum(t.numel() for t in tensors)


for _ in range(400):
    run.train_step()
print("subnormal share of weights + grads after 400 steps:", subnormal_share())
times: dict[bool, list[float]] = {False: [], True: []}
for round_ in range(12):
    for flush in (False, True) if round_ % 2 else (True, False):
        torch.set_flush_denormal(flush)
        start = time.perf_counter()
        for _ in range(20):
            run.train_step()
        times[flush].append(time.perf_counter() - start)
print("subnormal share after:", subnormal_share())
for flush, ts in times.items():
    print(f"flush={flush}: best {min(ts[1:]) / 20 * 1e3:.1f} ms/step")
print("speed-up with the flush (best rounds):", min(times[False][1:]) / min(times[True][1:]))
