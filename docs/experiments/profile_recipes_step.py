"""Experiment (session 8): where a `recipes` training step (64x64, quarter widths) spends its
time, 1 thread, the workers' layout. Result: docs/performance.md ("Session 8"). Run from the repo
root:  PYTHONPATH=. .venv/bin/python docs/experiments/profile_recipes_step.py [ARM]
"""

import sys
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile

from dcgan.data import load_images
from dcgan.specs import load_spec
from dcgan.train import Run

torch.set_num_threads(1)
arm = sys.argv[1] if len(sys.argv) > 1 else "tutorial"
spec = load_spec("recipes")
cfg = next(r.config for r in spec.plan("cpu") if r.arm == arm and r.execution == 0)
print(arm, cfg)
images = load_images(cfg.data, cfg.image_size, cfg.channels)
run = Run(cfg, tempfile.mkdtemp(), images)
for _ in range(5):
    run.train_step()
n = 20
t = time.perf_counter()
for _ in range(n):
    run.train_step()
dt = (time.perf_counter() - t) / n
print(f"{dt * 1e3:.1f} ms/step, {cfg.batch_size / dt:.0f} img/s")
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(10):
        run.train_step()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
    for _ in range(5):
        run.train_step()
print(
    prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total",
        row_limit=25,
        max_name_column_width=30,
        max_shapes_column_width=70,
    )
)
