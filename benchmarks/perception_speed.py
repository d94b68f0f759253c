"""Speed of the perception axis on this machine's CPU. Run:
    PYTHONPATH=src python benchmarks/perception_speed.py [--json benchmarks/results/perception_speed.json]

1. Inception (FID/KID): milliseconds per 64 px image through genfill.metrics.fid's network (299x299 input)
   for batch sizes x threads x memory format (contiguous / channels-last), under torch.inference_mode.
   Each configuration runs once after a warm-up, in an interleaved order, and reports wall time and the
   process's CPU time per image: on a machine shared with other work the wall time is inflated by the
   waiting, the CPU time much less (it still includes the cache misses others cause), so the quiet-machine
   throughput is about threads / (CPU seconds per image) images/s at best.
2. Fills: PatchMatch, biharmonic and Telea per image at 64 px (the eval protocol's faces and mask kinds,
   mask seed 1234) and on a 512x512 photo (scikit-image's astronaut) with a centred square hole of 10 %.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch


def _timed(fn, images: int) -> dict:
    c, w = time.process_time(), time.perf_counter()
    fn()
    return {"wall_ms": round(1000 * (time.perf_counter() - w) / images, 2),
            "cpu_ms": round(1000 * (time.process_time() - c) / images, 2)}


def inception_rows(batches: list[int], threads: list[int]) -> list[dict]:
    from genfill.metrics.fid import _load_inception, preprocess

    net = _load_inception("cpu")
    x = torch.rand(max(batches), 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rows = []
    with torch.inference_mode():
        net(preprocess(x[:4]))  # warm-up: oneDNN primitives for both memory formats
        net(preprocess(x[:4]).contiguous(memory_format=torch.channels_last))
        for t in threads:
            torch.set_num_threads(t)
            for bs in batches:
                for cl in (False, True):
                    inp = preprocess(x[:bs])
                    if cl:
                        inp = inp.contiguous(memory_format=torch.channels_last)
                    r = _timed(lambda: net(inp), bs)
                    rows.append({"threads": t, "batch": bs, "channels_last": cl, **r})
                    print(rows[-1], flush=True)
    return rows


def fill_rows() -> list[dict]:
    import numpy as np
    from skimage import data as skdata

    from genfill.config import DataConfig
    from genfill.data.cache import load_heldout
    from genfill.evaljob import parse_masks
    from genfill.peers import PEERS

    torch.set_num_threads(1)
    rows = []
    faces = load_heldout(DataConfig(), "test", 32, verbose=False)
    kinds = parse_masks("thin,medium,thick,square", 64)
    for kind, _, x, m in faces.heldout_batches(kinds, 32, 1234, "test", 32, "cpu"):
        for name in ("patchmatch", "biharmonic", "telea"):
            rows.append({"image": "64px face", "mask": kind, "method": name, **_timed(lambda: PEERS[name](x, m), len(x))})
            print(rows[-1], flush=True)
    photo = torch.from_numpy(np.ascontiguousarray(skdata.astronaut())).permute(2, 0, 1)[None].float() / 127.5 - 1
    m = torch.zeros(1, 1, 512, 512)
    side = int(round(512 * 0.1 ** 0.5))  # 162 px: 10.0 % of the image
    m[..., 256 - side // 2:256 - side // 2 + side, 256 - side // 2:256 - side // 2 + side] = 1
    for name in ("patchmatch", "biharmonic", "telea"):
        rows.append({"image": "512x512 astronaut", "mask": f"square {side}px (10%)", "method": name,
                     **_timed(lambda: PEERS[name](photo, m), 1)})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--json", help="write the results here")
    p.add_argument("--batches", default="8,16,64")
    p.add_argument("--threads", default="1,2")
    args = p.parse_args()
    out = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
           "torch": torch.__version__, "note": "wall and CPU time per image; see the module docstring",
           "fills": fill_rows(),
           "inception": inception_rows([int(b) for b in args.batches.split(",")],
                                       [int(t) for t in args.threads.split(",")])}
    if args.json:
        from genfill.io import atomic_write_json

        atomic_write_json(args.json, out)


if __name__ == "__main__":
    main()
