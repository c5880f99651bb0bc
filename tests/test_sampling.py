"""One sampling policy for grids, FID/KID fakes and mode counts; FID's samples unchanged by it."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch
from torch_fidelity.noise import random_normal

from dcgan import sampling
from dcgan.config import RunConfig
from dcgan.metrics import fidelity
from dcgan.metrics.extractors import quantise_to_uint8
from dcgan.models import build_models, generate


def _generator(**overrides):
    cfg = RunConfig(g_width=8, **overrides)
    torch.manual_seed(0)
    g, _ = build_models(cfg)
    return g, cfg


def _fakes_before_the_policy(G, nz, n, seed):
    """generate_fakes as the code before dcgan.sampling wrote it (protocol version 2):
    chunks of 1000 latents, `generate` (batches of 250), non-finite -> 0, quantise."""
    model = copy.deepcopy(G)
    rng = np.random.RandomState(seed)
    chunks, nonfinite = [], 0
    with torch.no_grad():
        for start in range(0, n, 1000):
            z = random_normal(rng, (min(1000, n - start), nz))
            x = generate(model, z)
            finite = torch.isfinite(x)
            nonfinite += int((~finite).sum())
            chunks.append(quantise_to_uint8(torch.where(finite, x, 0.0)))
    return torch.cat(chunks), nonfinite


def test_fid_fakes_are_bit_identical_to_those_scored_before_the_policy():
    g, cfg = _generator()
    ours, bad = fidelity.generate_fakes(g, cfg.nz, 1300, seed=5, device="cpu")
    before, bad_before = _fakes_before_the_policy(g, cfg.nz, 1300, seed=5)
    assert ours.dtype == torch.uint8 and bad == bad_before == 0
    assert torch.equal(ours, before)


def test_sample_is_the_policy_on_the_latents_scorers_draw():
    g, cfg = _generator()
    z = sampling.eval_latents(600, cfg.nz, seed=9, chunk=7)  # the stream ignores the chunking
    assert torch.equal(z, random_normal(np.random.RandomState(9), (600, cfg.nz)))
    images = sampling.sample(g, z)
    assert torch.equal(images, fidelity.generate_fakes(g, cfg.nz, 600, seed=9)[0])
    # fixed batches: an image does not depend on how many are drawn with it
    assert torch.equal(sampling.sample(g, z[:250]), images[:250])
    assert torch.equal(sampling.sample_seeded(g, 600, cfg.nz, 9, "cpu", chunk=3)[0], images)


def test_sampling_leaves_the_generator_as_it_was():
    g, cfg = _generator()
    g.eval()
    before = {k: v.clone() for k, v in g.state_dict().items()}
    sampling.sample(g, torch.randn(300, cfg.nz))
    assert not g.training
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())  # BN stats too
    assert all(m.track_running_stats for m in g.modules() if hasattr(m, "track_running_stats"))


def test_non_finite_pixels_become_mid_gray_and_are_counted():
    g, cfg = _generator()
    with torch.no_grad():
        last = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)][-1]
        last.weight[0, 0, 0, 0] = float("nan")
    images, nonfinite = sampling.sample_counted(g, torch.randn(4, cfg.nz))
    assert nonfinite > 0 and images.dtype == torch.uint8
    assert (images == 128).sum() >= nonfinite  # round((0 + 1) * 127.5) = 128


def test_existing_protocol_ids_are_kept():
    """Ids computed by the code before the policy was stamped on protocols: every FID / KID /
    class record scored before (the pilot, a running ablation) stays current."""
    from dcgan.data import load_images

    mnist = load_images("mnist", 32, 1)
    ids = {
        e: fidelity.make_protocol(mnist, e, n_fake=1000, device="cpu").id
        for e in ("mnist", "randcnn")
    }
    assert ids == {"mnist": "f2a9f5543865", "randcnn": "3d618d374746"}
    assert fidelity.classes_protocol(1000, device="cpu")["id"] == "f6c8d0ad7be2"
    protocol = fidelity.make_protocol(mnist, "mnist", n_fake=1000, device="cpu")
    assert protocol.to_dict()["sampling"] == sampling.POLICY  # stamped, not in the id
    # another policy would be part of the id
    other = dataclasses.replace(protocol, sampling="G in eval mode")
    assert other.id != protocol.id


def test_a_change_of_policy_makes_old_records_not_current(monkeypatch):
    record = {"metric": "fid", "extractor": "mnist", "kind": "generator", "step": 1,
              "value": 1.0, "protocol_id": "x",
              "protocol": {"version": fidelity.PROTOCOL_VERSION}}  # fmt: skip
    assert fidelity.select([record]) == [record]  # no stamp: FID's policy since version 1
    monkeypatch.setattr(fidelity, "POLICY", "some later policy")
    assert fidelity.select([record]) == []
