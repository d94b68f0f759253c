"""Speed where users wait (issue 25), on one CPU thread, every pair of timings alternated in one process (the
machine may be shared: ratios, not absolute times, are what to read).

    python benchmarks/speed.py [--checkpoint RUN_OR_PT] [--repeats N] [--out benchmarks/results/speed]

- prior: the unet's thin-plate prior (genfill.models.thinplate) per 64x64 batch of 1 and 32, next to the
  network it feeds.
- onnx: the unet's model.onnx: nodes (inside Loop bodies included), file size against the fp32 safetensors,
  time to open, a 64x64 fill in onnxruntime against torch, parity at 64x64 and 96x128.
- fill: a 512x512 photo (scikit-image's astronaut) with a 10 % object hole (an ellipse) and five thin
  strokes (3 px), filled at its own size by genfill (windows batched, and one window at a time) and by the
  Telea and biharmonic peers (OpenCV, scikit-image).

Without --checkpoint the unet is a fresh unet-faces64 (the timings do not depend on the weights; its last
layer is randomised so the network's correction is not zero). Times are this process's CPU seconds (one
thread: a quiet machine's wall time), next to wall seconds. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from genfill.api import from_model
from genfill.masks import fixed_masks
from genfill.export import export_model, onnx_session
from genfill.io import atomic_write_json, atomic_write_text
from genfill.typed import read_yaml
from genfill.models import build_model, load_model, save_model
from genfill.models.thinplate import biharmonic_fill
from genfill.peers import biharmonic as biharmonic_peer

ROOT = Path(__file__).resolve().parents[1]


def alternate(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict[str, float]]:
    """Median and min wall seconds, and median CPU seconds of this process (on one thread: what a quiet
    machine's wall time would be), of each function, run in turns (A B C A B C ...) after one warm-up each."""
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t, c = time.perf_counter(), time.process_time()
            f()
            times[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "cpu_s": statistics.median(cpu[k])}
            for k, v in times.items()}


def photo_and_hole() -> tuple[np.ndarray, np.ndarray]:
    from skimage import data

    img = np.ascontiguousarray(data.astronaut()[:512, :512])
    h = np.zeros((512, 512), np.uint8)
    cv2.ellipse(h, (300, 200), (95, 85), 20, 0, 360, 1, -1)  # the object: ~10 % of the photo
    rng = np.random.default_rng(0)
    for _ in range(5):
        p = rng.integers(0, 512, (2, 2))
        cv2.line(h, tuple(map(int, p[0])), tuple(map(int, p[1])), 1, 3)
    return img, h.astype(bool)


def count_nodes(graph) -> int:
    import onnx

    return sum(1 + sum(count_nodes(a.g) for a in n.attribute if a.type == onnx.AttributeProto.GRAPH)
               for n in graph.node)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="a unet run or checkpoint (default: a fresh unet-faces64)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "speed"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    if args.checkpoint:
        model, _ = load_model(args.checkpoint, "cpu")
    else:
        torch.manual_seed(0)
        model = build_model(read_yaml(ROOT / "configs" / "unet-faces64.yaml")["model"], 64, 3)
        torch.nn.init.normal_(model.net.out[-1].weight, std=0.05)
    model.eval()
    doc: dict = {"command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
                 "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
                 "cpu": platform.processor() or platform.machine(), "threads": 1,
                 "note": "one thread; timings alternated in one process on a possibly shared machine"}
    c = model.cfg

    # prior vs network
    doc["prior"] = {}
    for n in (1, 32):
        x = torch.rand(n, 3, 64, 64) * 2 - 1
        m = fixed_masks("mixed", n, 64, 64, seed=0)
        inp = torch.cat([x, m, x], 1)
        with torch.inference_mode():
            t = alternate({"prior": lambda: biharmonic_fill(x, m, c.prior_iters, c.smooth_iters, levels=3),
                           "network": lambda: model.net(inp)}, args.repeats)
        doc["prior"][f"batch {n}"] = {k: 1000 * v["cpu_s"] / n for k, v in t.items()}  # CPU ms per image

    with tempfile.TemporaryDirectory() as tmp:
        # onnx
        ckpt = Path(tmp) / "unet.pt"
        save_model(ckpt, model)
        t0 = time.perf_counter()
        res = export_model(ckpt, Path(tmp) / "exp", onnx=True)
        export_s = time.perf_counter() - t0
        import onnx

        path = Path(tmp) / "exp" / "model.onnx"
        proto = onnx.load(str(path))
        opens = []
        for _ in range(3):
            t0 = time.perf_counter()
            session = onnx_session(path)
            opens.append(time.perf_counter() - t0)
        x = torch.rand(1, 3, 64, 64) * 2 - 1
        m = fixed_masks("mixed", 1, 64, 64, seed=1)
        feeds = {"image": x.numpy(), "mask": m.numpy()}
        with torch.inference_mode():
            t = alternate({"onnxruntime": lambda: session.run(None, feeds), "torch": lambda: model.fill(x, m)},
                          args.repeats * 4)
        doc["onnx"] = {"export_s": export_s, "nodes": count_nodes(proto.graph), "top_level_nodes": len(proto.graph.node),
                       "loops": sum(n.op_type == "Loop" for n in proto.graph.node),
                       "onnx_bytes": res.sizes["model.onnx"], "safetensors_bytes": res.sizes["model.safetensors"],
                       "size_ratio": res.sizes["model.onnx"] / res.sizes["model.safetensors"],
                       "open_s": min(opens), "run_64_ms": {k: 1000 * v["cpu_s"] for k, v in t.items()},
                       "run_64_wall_ms": {k: 1000 * v["median_s"] for k, v in t.items()},
                       "run_ratio_onnx_over_torch": t["onnxruntime"]["cpu_s"] / t["torch"]["cpu_s"],
                       "parity_max_abs_64_and_96x128": res.onnx_max_abs}

    # fill of a 512x512 photo
    img, hole = photo_and_hole()
    painter = from_model(model)
    from genfill import inpaint

    x = torch.from_numpy(img).permute(2, 0, 1).float() / 127.5 - 1
    mt = torch.from_numpy(hole)[None, None].float()
    fill_fn = lambda a, b: model.fill(a, b)  # noqa: E731
    with torch.inference_mode():
        t = alternate({"genfill": lambda: painter.fill(img, hole),
                       "genfill windows batched (fill_native)": lambda: inpaint.fill_native(x, hole, fill_fn, 64),
                       "genfill one window at a time (fill_native, batch=1)":
                           lambda: inpaint.fill_native(x, hole, fill_fn, 64, batch=1),
                       "telea": lambda: cv2.inpaint(img, hole.astype(np.uint8), 3, cv2.INPAINT_TELEA),
                       "biharmonic": lambda: biharmonic_peer(x[None], mt)}, max(2, args.repeats // 2))
    wide, thin = inpaint.split_thin(hole)
    regions = inpaint.hole_regions(wide)  # what the plan fills through windows; the thin part goes through none
    doc["fill_512"] = {"hole_fraction": float(hole.mean()), "regions": len(regions),
                       "thin_fraction_of_hole": float(thin.sum() / hole.sum()),
                       "seconds": {k: v["cpu_s"] for k, v in t.items()},
                       "wall_seconds": {k: v["median_s"] for k, v in t.items()},
                       "genfill_over_telea": t["genfill"]["cpu_s"] / t["telea"]["cpu_s"],
                       "genfill_over_telea_wall": t["genfill"]["median_s"] / t["telea"]["median_s"],
                       "one_at_a_time_over_batched": t["genfill one window at a time (fill_native, batch=1)"]["cpu_s"]
                       / t["genfill windows batched (fill_native)"]["cpu_s"]}

    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), doc)
    o, f, p = doc["onnx"], doc["fill_512"], doc["prior"]
    md = [f"# Speed where users wait ({doc['date']}, {doc['cpu']}, torch {doc['torch']}, one thread, shared machine)",
          "", f"`{doc['command']}`", "", "CPU time of this process (one thread) unless marked wall.", "", "## Prior and network, ms per 64x64 image", "",
          "| batch | thin-plate prior | network |", "|---|---|---|",
          *[f"| {k} | {v['prior']:.2f} | {v['network']:.2f} |" for k, v in p.items()], "",
          "## unet model.onnx", "", "| measure | value |", "|---|---|",
          f"| nodes (Loop bodies included) | {o['nodes']:,} ({o['top_level_nodes']} top level, {o['loops']} Loops) |",
          f"| model.onnx / model.safetensors | {o['onnx_bytes'] / 1e6:.2f} MB / {o['safetensors_bytes'] / 1e6:.2f} MB = {o['size_ratio']:.3f} |",
          f"| open (onnxruntime session) | {o['open_s']:.2f} s |",
          f"| 64x64 fill, onnxruntime / torch | {o['run_64_ms']['onnxruntime']:.1f} ms / {o['run_64_ms']['torch']:.1f} ms = {o['run_ratio_onnx_over_torch']:.2f} |",
          f"| parity, max abs (64x64 and 96x128) | {o['parity_max_abs_64_and_96x128']:.1e} |",
          f"| export (genfill export --onnx) | {o['export_s']:.1f} s |", "",
          f"## Fill of a 512x512 photo ({100 * f['hole_fraction']:.1f} % hole: an ellipse and five 3 px strokes, "
          f"{f['regions']} wide region(s), {100 * f.get('thin_fraction_of_hole', 0):.0f} % of the hole thin)", "", "| method | CPU seconds | wall seconds |", "|---|---|---|",
          *[f"| {k} | {v:.3f} | {f['wall_seconds'][k]:.3f} |" for k, v in f["seconds"].items()], "",
          f"genfill / Telea: {f['genfill_over_telea']:.1f}x (wall {f['genfill_over_telea_wall']:.1f}x); one window at a time / batched: "
          f"{f['one_at_a_time_over_batched']:.2f}x.", ""]
    atomic_write_text(out.with_suffix(".md"), "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
