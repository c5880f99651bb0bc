"""One rule per location, read once: flag, else environment, else the default."""

from __future__ import annotations

from dcgan import locations
from dcgan.locations import Paths


def test_the_store_is_the_flag_else_the_environment_else_results(tmp_path, monkeypatch):
    paths = Paths(tmp_path / "results")
    monkeypatch.delenv("DCGAN_STORAGE", raising=False)
    default = f"sqlite:///{tmp_path / 'results' / 'store.db'}"
    assert locations.storage_url(None, paths) == default
    monkeypatch.setenv("DCGAN_STORAGE", "sqlite:///elsewhere.db")
    assert locations.storage_url(None, paths) == "sqlite:///elsewhere.db"
    assert locations.storage_url("sqlite:///given.db", paths) == "sqlite:///given.db"


def test_results_and_reports_follow_the_same_rule(tmp_path, monkeypatch):
    monkeypatch.delenv("DCGAN_RESULTS", raising=False)
    monkeypatch.delenv("DCGAN_REPORTS", raising=False)
    assert str(locations.results_dir()) == "results"
    monkeypatch.setenv("DCGAN_RESULTS", str(tmp_path / "r"))
    monkeypatch.setenv("DCGAN_REPORTS", str(tmp_path / "p"))
    assert locations.results_dir() == tmp_path / "r"
    assert locations.reports_dir() == tmp_path / "p"
    assert locations.results_dir("given") == locations.Path("given")
