"""examples/onnx_fill.py (numpy + onnxruntime + PIL only) fills a photo at its own size like `genfill fill`."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genfill.models import build_model, save_model

pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "onnx_fill.py"


def test_example_imports_numpy_onnxruntime_and_pil_only():
    tree = ast.parse(EXAMPLE.read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names - set(sys.stdlib_module_names) - {"__future__"} == {"numpy", "onnxruntime", "PIL"}


def test_example_matches_genfill_fill_at_the_photos_own_size(tmp_path):
    torch.manual_seed(0)
    model = build_model({"kind": "unet", "widths": [8, 16], "prior": "biharmonic", "smooth_iters": 10}, 32, 3)
    torch.nn.init.normal_(model.net.out[-1].weight, std=0.1)  # a non-zero correction on top of the prior
    save_model(tmp_path / "m.pt", model)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "genfill.cli", "--quiet"]
    subprocess.run(cli + ["export", str(tmp_path / "m.pt"), "-o", str(tmp_path / "exp"), "--onnx"], env=env,
                   check=True, capture_output=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:150, 0:230]
    photo = np.stack([xx, yy, (xx * yy) % 256], 2) + rng.integers(-30, 30, (150, 230, 3))
    Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(tmp_path / "photo.png")
    mask = np.zeros((150, 230), np.uint8)
    mask[30:85, 40:100] = 255  # a blob bigger than one window (coarse + refine)
    mask[120, 20:200] = 255  # a thin stroke, 1 px: nearest-known ties on both sides
    mask[5:9, 210:216] = 255  # a small far region
    Image.fromarray(mask).save(tmp_path / "mask.png")
    subprocess.run(cli + ["fill", str(tmp_path / "photo.png"), "--mask", str(tmp_path / "mask.png"), "-c",
                          str(tmp_path / "exp"), "-o", str(tmp_path / "genfill.png")], env=env, check=True,
                   capture_output=True)
    subprocess.run([sys.executable, str(EXAMPLE), str(tmp_path / "exp" / "model.onnx"), str(tmp_path / "photo.png"),
                    str(tmp_path / "mask.png"), str(tmp_path / "onnx.png")], env=env, check=True, capture_output=True)
    ours = np.asarray(Image.open(tmp_path / "onnx.png")).astype(int)
    ref = np.asarray(Image.open(tmp_path / "genfill.png")).astype(int)
    src = np.asarray(Image.open(tmp_path / "photo.png")).astype(int)
    assert ours.shape == ref.shape == src.shape
    hole = mask > 0
    assert (ours[~hole] == src[~hole]).all() and (ref[hole] != src[hole]).any()
    # the same windows and arithmetic; fp32 rounding of onnxruntime against torch moves a value by at most a
    # rounding step of one grey level
    assert np.abs(ours - ref).max() <= 1
