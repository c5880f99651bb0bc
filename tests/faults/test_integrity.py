"""Damaged caches and run files: a checksum or a structural check notices every one; the file
is quarantined (kept, never deleted), what it held is rebuilt or retrained, and the numbers
equal those of an undamaged run."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch

from dcgan import atomic
from dcgan.config import RunConfig
from dcgan.data import load_images
from dcgan.train import train
from tests.conftest import TINY_RUN
from tests.faults.helpers import image_folder, tiny_spec
from tests.train_hooks import train_until


def _repair(run_dir, cfg):
    from dcgan.integrity import repair_run_dir

    return repair_run_dir(run_dir, cfg)


def _flip(path, where: float = 0.5, bit: int = 0x10) -> None:
    blob = bytearray(path.read_bytes())
    blob[int(len(blob) * where)] ^= bit
    path.write_bytes(bytes(blob))


def _quarantined(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("quarantine/*"))


class Pwned:
    """Unpickling this would run a shell command; weights_only loading must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---- checksummed torch files ---------------------------------------------------------------------
@pytest.mark.fault("disk/corruption", n=3)
def test_a_checksum_travels_inside_the_torch_file(tmp_path):
    path = tmp_path / "x.pt"
    atomic.save_with_checksum({"a": torch.arange(1000.0)}, path)
    assert atomic.verify_checksum(path.read_bytes()) is True
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.arange(1000.0))
    _flip(path)
    assert atomic.verify_checksum(path.read_bytes()) is False
    with pytest.raises(atomic.IntegrityError, match="checksum mismatch"):
        atomic.load_verified(path)
    torch.save({"a": 1}, tmp_path / "plain.pt")
    assert atomic.verify_checksum((tmp_path / "plain.pt").read_bytes()) is None
    with pytest.raises(atomic.IntegrityError, match="no checksum"):
        atomic.load_verified(tmp_path / "plain.pt", require_checksum=True)


@pytest.mark.fault("security")
def test_a_crafted_pickle_is_refused_naming_the_file_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    atomic.save_with_checksum(
        {"G": Pwned(str(marker))}, path
    )  # a valid checksum does not make it safe
    with pytest.raises(atomic.IntegrityError) as err:
        atomic.load_verified(path)
    assert str(path) in str(err.value) and "refused" in str(err.value)
    assert "weights_only=False" not in str(err.value)
    assert not marker.exists()


# ---- caches (issue 17, item 4) --------------------------------------------------------------------
@pytest.mark.fault("disk/corruption")
def test_flipped_bits_in_cached_reference_features_are_caught_and_rebuilt(tmp_path, mnist, caplog):
    """Issue 17, item 4: flipped bits in a cached feature file changed FID silently
    (781.206 -> 781.088, or inf)."""
    from dcgan.metrics.fidelity import make_protocol, reference_features

    protocol = make_protocol(mnist, "mnist", n_fake=200)
    clean = reference_features(mnist, protocol, cache_dir=tmp_path)
    path = next((tmp_path / "features").glob("*.pt"))
    _flip(path, 0.5)
    with caplog.at_level(logging.WARNING, logger="dcgan"):
        again = reference_features(mnist, protocol, cache_dir=tmp_path)
    for key, value in clean.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(again[key], value), key
    assert "quarantined" in caplog.text and _quarantined(tmp_path)
    assert atomic.verify_checksum(path.read_bytes()) is True  # rebuilt, with a checksum


@pytest.mark.fault("disk/corruption", n=3)
@pytest.mark.parametrize("damage", ["flip", "truncate", "legacy"])
def test_a_damaged_image_cache_is_quarantined_and_rebuilt(tmp_path, damage, caplog):
    root = image_folder(tmp_path / "imgs", n=6)
    cache = tmp_path / "cache"
    clean = load_images(f"folder:{root}", 32, 1, cache_dir=cache)
    path = next(cache.glob("images-*.pt"))
    if damage == "flip":
        _flip(path, 0.6)
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    else:  # written by an older version: no checksum
        torch.save({"images": clean.images.clone().fill_(7), "skipped": [], "n_files": 6}, path)
    with caplog.at_level(logging.WARNING, logger="dcgan"):
        again = load_images(f"folder:{root}", 32, 1, cache_dir=cache)
    assert torch.equal(again.images, clean.images)
    assert "quarantined" in caplog.text and _quarantined(cache)


# ---- run folders ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, mnist):
    """A tiny run trained uninterrupted: what every repaired run must equal."""
    cfg = RunConfig(**TINY_RUN)
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = train(cfg, run_dir, images=mnist)
    return cfg, run_dir, result


def _same_numbers(a: dict, b: dict) -> bool:
    keys = ("final_d_loss", "final_g_loss", "final_d_real", "final_d_fake", "steps_done", "status")
    return all(a[k] == b[k] for k in keys)


def _damage_checkpoint_truncated(run):
    (run / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:500])


def _damage_checkpoint_flipped(run):
    _flip(run / "checkpoint.pt", 0.7)


def _damage_checkpoint_crafted(run):
    atomic.save_with_checksum(
        {"G": Pwned(str(run.parent / "pwned")), "D": 1, "step": 6}, run / "checkpoint.pt"
    )


def _damage_checkpoint_other_config(run):
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["config_hash"] = "0123456789abcdef"
    atomic.save_with_checksum(state, run / "checkpoint.pt")


def _damage_result_garbage(run):
    (run / "result.json").write_text("{ this is not json")


def _damage_result_other_config(run):
    result = json.loads((run / "result.json").read_text())
    (run / "result.json").write_text(json.dumps({**result, "config_hash": "0123456789abcdef"}))


def _damage_snapshot(run):
    _flip(next((run / "snapshots").glob("*.pt")), 0.5)


def _damage_config_garbage(run):
    (run / "config.json").write_bytes(os.urandom(64))


def _damage_metrics_middle_line(run):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines.insert(2, "5")
    lines.insert(3, '{"no step": 1}')
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")


DAMAGE = {
    # (damage, train how far first: None = to the end, 6 = stop after the first checkpoint)
    "truncated checkpoint": (_damage_checkpoint_truncated, 6),
    "flipped bit in the checkpoint": (_damage_checkpoint_flipped, 6),
    "crafted pickle as checkpoint": (_damage_checkpoint_crafted, 6),
    "checkpoint of another config": (_damage_checkpoint_other_config, 6),
    "garbage result.json": (_damage_result_garbage, None),
    "result.json of another config": (_damage_result_other_config, None),
    "flipped bit in a snapshot": (_damage_snapshot, None),
    "garbage config.json": (_damage_config_garbage, 6),
    "unreadable lines inside metrics.jsonl": (_damage_metrics_middle_line, 6),
}


@pytest.mark.fault("disk/corruption")
@pytest.mark.parametrize("name", list(DAMAGE))
def test_a_damaged_run_file_is_quarantined_and_the_run_finishes_with_the_same_numbers(
    tmp_path, mnist, reference_run, name
):
    cfg, _, expected = reference_run
    damage, stop = DAMAGE[name]
    run = tmp_path / "run"
    train_until(cfg, run, stop, images=mnist)
    damage(run)
    messages = _repair(run, cfg)
    assert messages, "the damage went unnoticed"
    result = train(cfg, run, images=mnist)
    assert _same_numbers(result, expected), (result, expected)
    assert not (tmp_path / "pwned").exists()
    if "metrics" not in name:
        assert _quarantined(run), "nothing was kept in quarantine"


@pytest.mark.fault("disk/corruption")
def test_a_cut_scores_line_is_quarantined_and_rescored(tmp_path, mnist, reference_run):
    from dcgan.metrics.fidelity import score_run

    cfg, _, _ = reference_run
    run = tmp_path / "run"
    train(cfg, run, images=mnist)
    first = score_run(run, extractor="mnist", n_fake=50)
    text = (run / "scores.jsonl").read_text()
    cut = text.index("\n", len(text) // 2) - 5  # inside a line
    (run / "scores.jsonl").write_text(text[:cut])
    assert _repair(run, cfg)
    again = score_run(run, extractor="mnist", n_fake=50)
    assert len(again) == len(first)
    values = sorted(
        (str(r.get("metric", r.get("name"))), str(r.get("step")), repr(r.get("value")))
        for r in again
    )
    assert values == sorted(
        (str(r.get("metric", r.get("name"))), str(r.get("step")), repr(r.get("value")))
        for r in first
    )


@pytest.mark.fault("disk/corruption")
def test_an_intact_run_folder_is_left_alone(tmp_path, mnist, reference_run):
    cfg, _, _ = reference_run
    run = tmp_path / "run"
    train(cfg, run, images=mnist)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    assert _repair(run, cfg) == []
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.fault("disk/corruption")
def test_ablate_recovers_a_run_whose_checkpoint_is_damaged(tmp_path):
    """Issue 17: a damaged run file made that run fail on every re-run, with torch's traceback
    advising weights_only=False. Through `ablate`: quarantined, retrained, completed."""
    import optuna
    from optuna.trial import TrialState

    from dcgan import store
    from dcgan.runner import Paths, run_ablation, study_name
    from dcgan.specs import load_spec

    spec_path = tiny_spec(tmp_path / "specs")
    spec = load_spec(spec_path)
    planned = spec.plan("tiny")
    paths = Paths(tmp_path / "results", tmp_path / "reports")
    for run in planned:  # a half-written run folder with garbage where the checkpoint should be
        run_dir = paths.runs / run.config.hash()
        run_dir.mkdir(parents=True)
        (run_dir / "checkpoint.pt").write_bytes(b"PK\x03\x04 not really a zip" * 10)
    run_ablation(str(spec_path), "tiny", paths=paths, report=False, log=lambda s: None)
    study = optuna.load_study(
        study_name=study_name(spec, "tiny", None),
        storage=store.open_storage(paths.default_storage),
    )
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(done) == len(planned)
    assert all("quarantined" in t.user_attrs.get("repaired", "") for t in done)
