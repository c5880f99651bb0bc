"""The package as a user gets it: a wheel built from this tree, installed in a fresh venv.

The fast tests build the wheel (a few seconds) and read it. The slow one installs it in a new
virtualenv and runs `dcgan` from an empty directory. So as not to copy torch's 5.5 GB, the new
venv sees this project's .venv site-packages through a .pth file pointing at a folder of
symlinks to it, minus the editable install of this package itself: pip then finds every
dependency already satisfied (--no-index: nothing is downloaded) and installs only the wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(p.name for p in (ROOT / "ablations").glob("*.toml"))


def _copy_source(dest: Path) -> Path:
    """Only what a build reads, so the build never writes into the working tree."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("dcgan", "ablations"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = _copy_source(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(out)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (built,) = out.glob("dcgan_ablations-*.whl")
    return built


def test_wheel_ships_specs_templates_assets_and_the_command(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"dcgan/ablations/{s}" for s in SPECS} <= names
    assert {"dcgan/report/templates/report.html.j2", "dcgan/assets/mnist_classifier.pt"} <= names
    (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "dcgan = dcgan.cli:main" in text


def test_every_package_on_disk_is_listed():
    """pyproject lists packages explicitly (to map ablations/ to dcgan.ablations)."""
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = set(find_packages(str(ROOT), include=["dcgan*"]))
    assert found | {"dcgan.ablations"} == set(listed)


def _dependency_view(dest: Path) -> Path:
    """Symlinks to this environment's site-packages, without this package's own install."""
    site = Path(sysconfig.get_paths()["purelib"])
    dest.mkdir()
    for entry in site.iterdir():
        name = entry.name
        if name.endswith(".pth") or name.startswith(("__editable__", "dcgan")):
            continue
        (dest / name).symlink_to(entry)
    return dest


@pytest.mark.slow
def test_fresh_venv_runs_a_smoke_ablation_from_an_empty_directory(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, clear=True).create(env_dir)  # pip comes with the view
    python = env_dir / "bin" / "python"
    new_site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    view = _dependency_view(tmp_path / "deps")
    (Path(new_site) / "dcgan-test-deps.pth").write_text(f"{view}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DCGAN_", "PYTHON"))}
    env |= {"OMP_NUM_THREADS": "1", "PATH": f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}"}

    def run(*args, cwd=tmp_path, timeout=900):
        done = subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    run(python, "-m", "pip", "install", "--no-index", "-q", str(wheel))  # deps: already there
    empty = tmp_path / "empty"
    empty.mkdir()
    where = run(python, "-c", "import dcgan; print(dcgan.__file__)", cwd=empty)
    assert where.startswith(new_site), where
    dcgan = str(env_dir / "bin" / "dcgan")
    assert "ablate" in run(dcgan, "--help", cwd=empty)
    assert "activation" in run(dcgan, "ablate", "--list", cwd=empty)
    run(dcgan, "ablate", "loss", "--profile", "smoke", "--workers", "1", cwd=empty)
    assert (empty / "reports" / "loss-smoke.html").exists()
    assert (empty / "results" / "runs" / "INDEX.csv").exists()
    assert "loss-smoke.html" in run(dcgan, "report", "loss", "--profile", "smoke", cwd=empty)
