"""Hole-ratio spread and speed of every mask kind. Run: PYTHONPATH=src python benchmarks/mask_stats.py [--json out.json]

Ratios: 1st..99th percentile (and min/max/mean) of 1000 masks per kind from
make_masks draws with a seeded generator, default parameters, at 64x64 and 256x256.
Speed: median of 9 calls of make_masks(kind, 256, 64, 64) on CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from genfill.masks import MASK_KINDS, hole_ratio, make_masks, mask_kinds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", help="write the table here as JSON")
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    rows = {}
    for kind in mask_kinds():
        if kind == "file":
            continue
        row = {}
        for side in (64, 256):
            g = torch.Generator().manual_seed(0)
            r = torch.cat([hole_ratio(make_masks(kind, 250, side, side, generator=g)) for _ in range(args.n // 250)])
            q = torch.quantile(r.double(), torch.tensor([0.01, 0.99], dtype=torch.double))
            row[side] = {"p01": float(q[0]), "p99": float(q[1]), "min": float(r.min()), "max": float(r.max()),
                         "mean": float(r.mean()), "bounds": MASK_KINDS[kind].bounds(side, side)}
        g = torch.Generator().manual_seed(0)
        make_masks(kind, 256, 64, 64, generator=g)
        times = []
        for _ in range(9):
            t = time.perf_counter()
            make_masks(kind, 256, 64, 64, generator=g)
            times.append((time.perf_counter() - t) * 1000)
        row["ms_256x64x64"] = statistics.median(times)
        rows[kind] = row
        a, b = row[64], row[256]
        print(f"{kind:9s} 64: p01..p99 {a['p01']:.3f}..{a['p99']:.3f} (min {a['min']:.4f} max {a['max']:.3f} mean {a['mean']:.3f})"
              f" | 256: {b['p01']:.3f}..{b['p99']:.3f} (min {b['min']:.4f} max {b['max']:.3f} mean {b['mean']:.3f})"
              f" | {row['ms_256x64x64']:.1f} ms", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch_threads": torch.get_num_threads(), "kinds": rows}, f, indent=1)


if __name__ == "__main__":
    main()
