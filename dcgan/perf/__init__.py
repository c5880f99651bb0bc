"""What the speed claims are measured against, kept apart from the training system.

- `canonical`: pytorch/examples' DCGAN loop (PNG folder + DataLoader, `.item()` every step),
  the same-run baseline of every speed ratio (`nox -s bench`, `dcgan gpu-check`).
- `packed`: K same-shape runs trained as one batched network, equivalence-tested; the runner
  does not use it (on 2 CPU cores its gain swung 0.95-1.38x: docs/performance.md).
- `gpu_check`: `dcgan gpu-check`, the prepared script for a CUDA machine.
"""
