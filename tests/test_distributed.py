"""Data-parallel training: 2 CPU processes (gloo, torch.distributed.run) train like 1 process with the same
global batch and seed, and a 2-process run stopped mid-epoch and resumed reaches the uninterrupted weights.

Tolerance. 2 ranks average two half-batch gradients where 1 process takes one full-batch mean: the same
numbers summed in another order. A 1-process run with train.accumulate 2 sums the same two half-batch
gradients on one process, a legitimately different summation order of the same step; its distance to the
plain run measures how far rounding alone moves the weights in these steps. The 2-process weights must be
within 4 times that spread (plus 1e-6 of the weights' scale, should the spread happen to be 0).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genfill.loadconfig import build_config
from genfill.io import load_checkpoint
from genfill.models import build_model
from genfill.train import train
from tests.conftest import tiny_raw

SRC = Path(__file__).resolve().parents[1] / "src"
STEPS = 4  # the tiny cache has 48 training images: 6 steps of 8 per epoch, so a stop at 2 is mid-epoch
# no BatchNorm: its statistics are per rank (train.sync_bn, CUDA only, makes them global)
VAE = {"kind": "vae", "channels": [8, 16], "latent_dim": 8, "reduction": "mean", "norm": "none"}
GAN = {"kind": "gan", "base": 4, "crop_size": 16, "d_base": 4, "d_norm": "none"}


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "last.pt")["model"]


def max_diff(a: dict, b: dict) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())


def scale(a: dict) -> float:
    return max(v.abs().max().item() for v in a.values() if v.is_floating_point())


def raw(tmp_path, cache_root, name, model, **train_kw):
    r = tiny_raw(tmp_path / "runs", cache_root, model, name=name,
                 train={"max_steps": STEPS, "batch_size": 8, "sample_every_epoch": False, "log_every": 1,
                        "val_images": 6, **train_kw})
    r["masks"] = {"kind": "mixed", "bank_size": 64}  # masks from the bank, as in real runs
    return r


def torchrun(tmp_path, jobs: list[dict]) -> None:
    spec = tmp_path / f"jobs{len(list(tmp_path.glob('jobs*')))}.json"
    spec.write_text(json.dumps(jobs))
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{SRC.parent}", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(Path(__file__).with_name("ddp_worker.py")), str(spec)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=420)
    assert res.returncode == 0, res.stderr[-4000:]


def test_two_gloo_processes_train_like_one(tmp_path, cache_root):
    jobs = []
    for name, model in (("vae", VAE), ("gan", GAN)):
        # references in this process: the plain run and the same step summed in two halves
        train(build_config(raw(tmp_path, cache_root, f"{name}-1", model)), device="cpu", verbose=False)
        train(build_config(raw(tmp_path, cache_root, f"{name}-acc", model, accumulate=2)), device="cpu",
              verbose=False)
        jobs.append({"raw": raw(tmp_path, cache_root, f"{name}-2", model), "resume": False})
    # with a weight average and 2 micro-batches per rank (DDP's no_sync on the first)
    extra = {"ema": 0.9, "accumulate": 2}
    train(build_config(raw(tmp_path, cache_root, "vae-ema-1", VAE, **extra)), device="cpu", verbose=False)
    jobs.append({"raw": raw(tmp_path, cache_root, "vae-ema-2", VAE, **extra), "resume": False})
    # the VAE again on 2 ranks, stopped after 2 of the epoch's 6 steps, then resumed to STEPS
    jobs.append({"raw": raw(tmp_path, cache_root, "vae-stop", VAE, max_steps=2), "resume": False})
    jobs.append({"raw": raw(tmp_path, cache_root, "vae-stop", VAE), "resume": True})
    torchrun(tmp_path, jobs)

    runs = tmp_path / "runs"
    for name in ("vae", "gan"):
        one, acc, two = (weights(runs / f"{name}-{k}") for k in ("1", "acc", "2"))
        spread = max_diff(one, acc)
        tol = 4 * spread + 1e-6 * scale(one)
        got = max_diff(one, two)
        print(f"{name}: |2 ranks - 1 process| {got:.3g}, summation-order spread {spread:.3g}, tol {tol:.3g}")
        assert got <= tol, (name, got, tol)
        # training moved the weights far more than the tolerance, so the comparison can fail
        torch.manual_seed(0)  # train() seeds like this before building the model
        init = build_model(VAE if name == "vae" else GAN, 32, 3).state_dict()
        assert max_diff(one, init) > 100 * tol
        assert load_checkpoint(runs / f"{name}-2" / "checkpoints" / "last.pt")["step"] == STEPS
    one, two = weights(runs / "vae-ema-1"), weights(runs / "vae-ema-2")
    print(f"vae ema+accumulate: |2 ranks - 1 process| {max_diff(one, two):.3g}")
    assert max_diff(one, two) <= 4 * max_diff(weights(runs / "vae-1"), weights(runs / "vae-acc")) + 1e-6 * scale(one)
    straight, resumed = weights(runs / "vae-2"), weights(runs / "vae-stop")
    assert load_checkpoint(runs / "vae-stop" / "checkpoints" / "last.pt")["step"] == STEPS
    print(f"vae resume: |resumed - straight| {max_diff(straight, resumed):.3g}")
    assert max_diff(straight, resumed) <= 1e-6 * scale(straight)
    # only rank 0 wrote: one log, one train row per step, no temp files
    rows = [json.loads(line) for line in (runs / "vae-2" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"] == list(range(1, STEPS + 1))
    assert not list(runs.rglob("*.tmp"))
