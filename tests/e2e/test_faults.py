"""kill -9 a tiny training run at chosen points (inside a step, inside a checkpoint write, halfway through a
metrics line), then `--resume`: the weights equal an uninterrupted run's, no temp file is left, and every
line of metrics.jsonl parses. The run goes through tests/killpoint.py, which monkeypatches a pause in at the
point and holds the run there until the kill lands, so each kill is deterministic."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import tiny_raw
from genfill.loadconfig import build_config
from genfill.io import load_checkpoint
from genfill.train import train

KILLPOINT = Path(__file__).resolve().parents[1] / "killpoint.py"  # runs the command with the kill point installed

# 60 faces: 48 training images in batches of 8 = 6 steps an epoch; 2 epochs = 12 steps.
TRAIN = {"epochs": 2, "max_steps": None, "sample_every_epoch": False, "log_every": 1}

KILL_POINTS = {
    "inside step 9 (epoch 2)": ("step:9", 0),
    "inside step 7 (first step after a checkpoint)": ("step:7", 0),
    "writing the epoch-2 last.pt": ("write:last.pt", 1),
    "halfway through the metrics line of step 8": ("metrics:8", 0),
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache_root):
    """The uninterrupted run's final weights."""
    root = tmp_path_factory.mktemp("straight")
    cfg = build_config(tiny_raw(root, cache_root, name="straight", train=TRAIN))
    train(cfg, verbose=False)
    return load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")["model"]


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_9_then_resume_matches_a_straight_run(point, reference, tmp_path, cache_root):
    where, skip = KILL_POINTS[point]
    raw = tiny_raw(tmp_path / "runs", cache_root, name="killed", train=TRAIN)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    marker = tmp_path / "paused"
    src = Path(__file__).resolve().parents[2] / "src"
    # the reference trained in this process: the child gets its thread count, so the same sums
    env = {**os.environ, "PYTHONPATH": str(src),
           "OMP_NUM_THREADS": str(torch.get_num_threads()),
           "KILLPOINT": f"{where}:60", "KILLPOINT_SKIP": str(skip), "KILLPOINT_MARKER": str(marker)}
    proc = subprocess.Popen([sys.executable, str(KILLPOINT), "-m", "genfill.cli", "train", "-c", str(cfg_file),
                             "--quiet"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the run never reached the kill point"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    run = tmp_path / "runs" / "killed"
    before = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    assert before == 6  # every kill point lies after the epoch-1 checkpoint and before the epoch-2 one
    res = train(build_config(raw), resume=True, verbose=False)
    assert res.step == 12

    got = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    for k in reference:
        assert torch.equal(reference[k], got[k]), k
    assert not list(run.rglob("*.tmp"))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]  # every line parses
    train_steps = [r["step"] for r in rows if r["split"] == "train"]
    assert train_steps == list(range(1, 13))  # no step lost, none twice
    assert [r["step"] for r in rows if r["split"] == "val"] == [6, 12]
