"""Per-step training cost of sampler-faces64 against unet-faces64, alternated in one process (the CPU may be
shared: only the ratio means something). Also the sampler without its LPIPS and/or PatchGAN terms, to show
where the cost is. Batch 32 of 64x64 faces-sized random images under a 32 px square hole.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/sampler_step_cost.py --reps 2
"""
from __future__ import annotations

import argparse
import time

import torch

from genfill.config import TrainConfig
from genfill.models import build_model
from genfill.train import prepare, train_step

NET = dict(widths=[16, 32, 64, 128], prior="biharmonic", smooth_iters=40, solver="cg")
VARIANTS = {
    "unet": {"kind": "unet", **NET, "recon": "psnr"},
    "sampler": {"kind": "sampler", **NET},
    "sampler, no PatchGAN": {"kind": "sampler", **NET, "w_adv": 0.0},
    "sampler, no LPIPS, no PatchGAN": {"kind": "sampler", **NET, "w_adv": 0.0, "w_perceptual": 0.0},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args()
    torch.manual_seed(0)
    x = torch.rand(a.batch, 3, 64, 64) * 2 - 1
    m = torch.zeros(a.batch, 1, 64, 64)
    m[:, :, 16:48, 16:48] = 1
    runs = {k: prepare(build_model(v, 64, 3).train(), TrainConfig(lr=1e-4), torch.device("cpu"), False)
            for k, v in VARIANTS.items()}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for rep in range(a.reps + 1):  # the first round warms up and is not counted
        for k, (model, fwd, opt, opt_d) in runs.items():
            t = time.perf_counter()
            train_step(model, fwd, opt, opt_d, x, m, 1.0, False, 1.0)
            if rep:
                times[k].append(time.perf_counter() - t)
    base = sum(times["unet"]) / len(times["unet"])
    print("| model | s/step | x unet |\n|---|---|---|")
    for k, v in times.items():
        s = sum(v) / len(v)
        print(f"| {k} | {s:.2f} | {s / base:.2f} |")


if __name__ == "__main__":
    main()
