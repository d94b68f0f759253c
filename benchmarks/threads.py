"""How many CPU threads genfill should use by default: one 512x512 fill (unet-faces64, untrained weights: speed
does not depend on them) and one training step (unet-faces64, batch 32 at 64x64), each timed with every
thread count in turn, alternating within one process (round-robin), so load from other processes hits every
count alike. Prints a table and writes benchmarks/results/threads.json.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/threads.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", default=None, help="comma-separated counts (default 1..cores, powers of 2 + cores)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "threads"))
    a = ap.parse_args()
    from genfill.api import from_model
    from genfill.config import resolve_config
    from genfill.loadconfig import load_config
    from genfill.models import build_model
    from genfill.train import prepare, train_step  # noqa: F401  (the real step)

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    counts = [int(t) for t in a.threads.split(",")] if a.threads else sorted({1, 2, 4, 8, cores} & set(range(1, cores + 1)))
    cfg = load_config(resolve_config("unet-faces64"))
    torch.manual_seed(0)
    model = build_model(cfg.model, 64, 3).eval()
    painter = from_model(model, "unet")
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    hole = np.zeros((512, 512), bool)
    hole[200:260, 150:230] = True  # an 80x60 hole: two windows' worth of work in a 512 px photo
    hole[400:420, 50:300] = True
    train_model = build_model(cfg.model, 64, 3).train()
    opt = torch.optim.Adam(train_model.parameters(), lr=1e-4)
    x = torch.rand(32, 3, 64, 64) * 2 - 1
    m = (torch.rand(32, 1, 64, 64) > 0.7).float()

    def fill() -> None:
        painter.fill(photo, hole)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        train_model(x, m).loss.backward()
        opt.step()

    jobs = {"fill_512": fill, "train_step_b32": step}
    times: dict[str, dict[int, list[float]]] = {j: {t: [] for t in counts} for j in jobs}
    for t in counts:  # warm-up per count (allocations, first-call costs)
        torch.set_num_threads(t)
        for fn in jobs.values():
            fn()
    for _ in range(a.rounds):
        for t in counts:
            torch.set_num_threads(t)
            for j, fn in jobs.items():
                t0 = time.perf_counter()
                fn()
                times[j][t].append(time.perf_counter() - t0)
    rows = []
    for j in jobs:
        for t in counts:
            v = times[j][t]
            rows.append({"job": j, "threads": t, "median_s": statistics.median(v), "min_s": min(v), "max_s": max(v)})
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    doc = {"command": "OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/threads.py --rounds " + str(a.rounds),
           "cpu": platform.processor() or platform.machine(), "cores": cores, "loadavg_after": load,
           "torch": torch.__version__, "rows": rows, "raw": times}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    lines = ["| job | threads | median s | min s | max s |", "|---|---|---|---|---|"]
    lines += [f"| {r['job']} | {r['threads']} | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['max_s']:.3f} |" for r in rows]
    print("\n".join(lines))
    print(f"cores {cores}, load average after {load}")


if __name__ == "__main__":
    main()
