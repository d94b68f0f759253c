"""A user's first hour, outside the repository: the built wheel, installed with --no-deps into a fresh folder,
runs presets by name from any folder (they ship inside the package), and two runs from two different folders
share one data cache ($GENFILL_CACHE) instead of each building its own."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--set", "data.count=60", "--set", "data.size=32", "--set", "train.max_steps=2", "--set", "train.epochs=1",
        "--set", "train.batch_size=8", "--set", "train.val_images=8", "--set", "masks.bank_size=64",
        "--set", "train.lr_warmup_steps=0", "--threads", "1"]


def _run(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, f"{args} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return res


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel of this checkout, installed into an empty folder with pip --no-deps --target."""
    pytest.importorskip("hatchling", reason="the wheel test builds with hatchling (pip install -e '.[dev]')")
    dist, target = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(ROOT)], check=True, capture_output=True, timeout=180)
    wheel = next(dist.glob("genfill-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if n.startswith("genfill/configs/")}
    assert {p.name for p in (ROOT / "configs").rglob("*.yaml")} <= shipped  # every YAML, none listed by hand
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=180)
    return target


def test_the_installed_wheel_runs_presets_from_any_folder_with_one_cache(installed, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GENFILL_THREADS")}
    env.update(PYTHONPATH=str(installed), GENFILL_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1",
               GENFILL_PROGRESS_INTERVAL="1000")
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    genfill = [sys.executable, "-m", "genfill.cli"]

    where = _run([sys.executable, "-c", "import genfill; print(genfill.__file__)"], first, env).stdout.strip()
    assert Path(where).resolve().is_relative_to(installed.resolve()), where  # not this checkout's src/

    listing = _run([*genfill, "configs"], first, env).stdout
    assert "unet-faces64 " in listing and "ssl-simclr-faces64 " in listing and "quick " in listing
    assert str(installed / "genfill" / "configs") in listing

    out = _run([*genfill, "train", "-c", "unet-faces64", "--set", "name=a", *TINY], first, env)
    assert "trained 2 steps" in out.stdout and (first / "runs" / "a" / "checkpoints" / "last.pt").is_file()
    assert f"building the faces64 data cache once in {tmp_path / 'cache'}" in out.stderr
    cache = _snapshot(tmp_path / "cache")
    assert any(k.startswith("masks/") for k in cache) and any(k.endswith("meta.json") for k in cache)

    # another folder, another run: the same cache, read and not rebuilt (no file added or rewritten)
    again = _run([*genfill, "train", "-c", "unet-faces64", "--set", "name=b", *TINY], second, env)
    assert "trained 2 steps" in again.stdout and "building" not in again.stderr and "drew a bank" not in again.stderr
    assert _snapshot(tmp_path / "cache") == cache
    assert not (second / "data").exists() and not (first / "data").exists()

    shown = _run([*genfill, "cache"], second, env).stdout
    assert str(tmp_path / "cache") in shown and "faces64-32-3-60-0/" in shown and "masks/" in shown

    plan = _run([*genfill, "reproduce", "--preset", "quick", "--dry-run"], second, env).stdout
    assert str(installed / "genfill" / "configs" / "reproduce" / "quick.yaml") in plan
    assert "model unet-faces64" in plan and "model vqvae-prior-faces64" in plan
    assert not (second / "runs" / "reproduce").exists()  # a dry run writes nothing
