"""benchmarks/gpu_check.sh --smoke: the GPU check's one command, end to end on the CPU at tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_gpu_check_smoke_trains_evaluates_and_measures(tmp_path):
    out = tmp_path / "check"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(out), "--smoke"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + (out / "gpu_check.log").read_text()[-3000:]
    doc = json.loads((out / "gpu_check.json").read_text())
    assert doc["ok"] and doc["smoke"] and [s["name"] for s in doc["steps"]][:2] == ["data", "train unet-faces64-gpu"]
    assert all(s["rc"] == 0 for s in doc["steps"])
    assert doc["train"]["unet-faces64-gpu"]["last_metrics"] is not None
    methods = doc["eval"]
    assert "biharmonic" in methods and len(methods) == 1 + len(doc["train"])
    for kinds in methods.values():
        assert set(kinds) == {"thin", "medium", "thick", "square"}
        assert all(15 < v["psnr"] < 60 for v in kinds.values())
    families = {r["family"] for r in doc["throughput"]["rows"]}
    assert families == {"unet-faces64", "gan-faces64"}
    assert all(r["epoch"]["images_per_s"] > 0 for r in doc["throughput"]["rows"])  # the real-loop column
    assert (out / "gpu_check.log").stat().st_size > 0


def test_gpu_check_needs_an_output_folder():
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage" in proc.stderr
