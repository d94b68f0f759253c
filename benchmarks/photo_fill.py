"""Real photos filled at their own size (issue 25): genfill's native fill planned as on main (`--before`, a copy
of an older src/genfill/inpaint.py) against this tree's, the same model and masks, next to Telea and the
biharmonic peer; quality of the hole and CPU time on one thread, every method alternated in one process (the
machine may be shared: read the ratios).

    python benchmarks/photo_fill.py --checkpoint RUN --before OLD_INPAINT.py [--out benchmarks/results/photo_fill]

Photos: scikit-image's samples (ship offline) at their own size. Masks per photo: "thin" (an ellipse object of
~10 % of the photo and five 3 px strokes, as benchmarks/speed.py paints on the astronaut) and "brush" (the same
ellipse and native_fill_panel.py's brush strokes, 10-24 px wide). Quality: PSNR over the hole pixels (0-255),
LPIPS (AlexNet) of the hole's bounding box (8 px margin) against the photo. Writes OUT.json, OUT.md and OUT.png
(the astronaut's thin-mask fill before / after / Telea, with crops).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import shlex
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from skimage import data

from genfill import inpaint
from genfill.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from genfill.metrics.lpips import lpips
from genfill.models import load_model
from genfill.peers import biharmonic as biharmonic_peer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from native_fill_panel import brush_mask  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")


def masks(h: int, w: int, seed: int) -> dict[str, np.ndarray]:
    """The ellipse object (~10 % of the photo) plus five 3 px strokes ("thin") or brush strokes ("brush")."""
    rng = np.random.default_rng(seed)
    blob = np.zeros((h, w), np.uint8)
    ax = np.sqrt(0.1 * h * w / np.pi)
    centre = (int(rng.uniform(0.3, 0.7) * w), int(rng.uniform(0.3, 0.7) * h))
    cv2.ellipse(blob, centre, (int(ax * 1.1), int(ax / 1.1)), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    lines = np.zeros((h, w), np.uint8)
    for _ in range(5):
        a, b = rng.integers(0, [w, h], (2, 2))
        cv2.line(lines, tuple(map(int, a)), tuple(map(int, b)), 1, 3)
    return {"thin": (blob | lines).astype(bool), "brush": blob.astype(bool) | brush_mask(h, w, seed)}


def load_module(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--before", required=True, help="an older inpaint.py to compare with")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--photos", nargs="*", default=list(PHOTOS))
    ap.add_argument("--refine-cell", type=float, help="override inpaint.REFINE_CELL (the trade-off's other side)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "photo_fill"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    if args.refine_cell:
        inpaint.REFINE_CELL = args.refine_cell
    model, _ = load_model(args.checkpoint, "cpu")
    model.eval()
    before = load_module(args.before, "inpaint_before")
    fill_fn = lambda a, b: model.fill(a, b)  # noqa: E731
    size = model.image_size

    def as_u8(t: torch.Tensor) -> np.ndarray:
        return np.clip(np.round((t.permute(1, 2, 0).numpy() + 1) * 127.5), 0, 255).astype(np.uint8)

    methods = {
        "genfill before": lambda x, u8, hole: as_u8(before.fill_native(x, hole, fill_fn, size)),
        "genfill after": lambda x, u8, hole: as_u8(inpaint.fill_native(x, hole, fill_fn, size)),
        "telea": lambda x, u8, hole: cv2.inpaint(u8, hole.astype(np.uint8), 3, cv2.INPAINT_TELEA),
        "biharmonic": lambda x, u8, hole: as_u8(biharmonic_peer(x[None], torch.from_numpy(hole)[None, None].float())[0]),
    }
    rows, shown = [], {}
    for seed, name in enumerate(args.photos):
        photo = getattr(data, name)()
        x = torch.from_numpy(photo).permute(2, 0, 1).float() / 127.5 - 1
        for kind, hole in masks(*photo.shape[:2], seed).items():
            out, cpu = {}, {k: [] for k in methods}
            with torch.inference_mode():
                for rep in range(args.repeats + 1):  # the first round warms up and is not timed
                    for k, f in methods.items():
                        c = time.process_time()
                        out[k] = f(x, photo, hole)
                        if rep:
                            cpu[k].append(time.process_time() - c)
            ys, xs = np.nonzero(hole)
            t, l = max(ys.min() - 8, 0), max(xs.min() - 8, 0)
            b, r = ys.max() + 9, xs.max() + 9
            ref = torch.from_numpy(photo[t:b, l:r]).permute(2, 0, 1)[None].float() / 127.5 - 1
            row = {"photo": name, "size": list(photo.shape[:2]), "mask": kind, "hole_fraction": float(hole.mean()),
                   "thin_fraction": float(inpaint.split_thin(hole)[1].sum() / hole.sum()), "methods": {}}
            for k, o in out.items():
                assert (o[~hole] == photo[~hole]).all() or k == "biharmonic"
                err = o[hole].astype(float) - photo[hole].astype(float)
                crop = torch.from_numpy(o[t:b, l:r]).permute(2, 0, 1)[None].float() / 127.5 - 1
                row["methods"][k] = {"psnr": float(10 * np.log10(255 ** 2 / np.mean(err ** 2))),
                                     "lpips": float(lpips(crop, ref)[0]), "cpu_s": statistics.median(cpu[k])}
            rows.append(row)
            print(name, kind, {k: (round(v["psnr"], 2), round(v["lpips"], 4), round(v["cpu_s"], 3))
                               for k, v in row["methods"].items()}, flush=True)
            if name == "astronaut" and kind == "thin":
                shown = {"photo": photo, "hole": hole, **out}
    names = list(methods)
    mean = {k: {q: float(np.mean([r["methods"][k][q] for r in rows])) for q in ("psnr", "lpips", "cpu_s")}
            for k in names}
    ratio = {k: float(np.mean([r["methods"][k]["cpu_s"] / r["methods"]["telea"]["cpu_s"] for r in rows])) for k in names}
    doc = {"command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
           "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
           "threads": 1, "note": "one thread; methods alternated in one process on a shared machine",
           "refine_cell": inpaint.REFINE_CELL, "rows": rows, "mean": mean, "mean_cpu_over_telea": ratio}
    out_path = Path(args.out)
    atomic_write_json(out_path.with_suffix(".json"), doc)
    md = [f"# Photos filled at their own size ({doc['date']}, torch {doc['torch']}, one thread, shared machine)", "",
          f"`{doc['command']}`", "",
          "PSNR (dB) over the hole pixels; LPIPS of the hole's bounding box; CPU seconds of one fill; "
          "x Telea = CPU time over Telea's on the same photo and mask.", "",
          "| photo | mask | hole % (thin %) | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for r in rows:
        md.append(f"| {r['photo']} {r['size'][1]}x{r['size'][0]} | {r['mask']} | {100 * r['hole_fraction']:.1f} "
                  f"({100 * r['thin_fraction']:.0f}) | " + " | ".join(
                      f"{r['methods'][k]['psnr']:.2f} / {r['methods'][k]['lpips']:.4f} / {r['methods'][k]['cpu_s']:.3f} s"
                      f" ({r['methods'][k]['cpu_s'] / r['methods']['telea']['cpu_s']:.1f}x)" for k in names) + " |")
    md.append("| **mean** | | | " + " | ".join(f"**{mean[k]['psnr']:.2f} / {mean[k]['lpips']:.4f} / "
                                               f"{mean[k]['cpu_s']:.3f} s ({ratio[k]:.1f}x)**" for k in names) + " |")
    atomic_write_text(out_path.with_suffix(".md"), "\n".join(md) + "\n")
    print("\n".join(md))
    if shown:
        hole = shown["hole"]
        masked = shown["photo"].copy()
        masked[hole] = (0.4 * masked[hole] + 0.6 * np.array([255, 0, 0])).astype(np.uint8)
        cols = [masked, shown["genfill before"], shown["genfill after"], shown["telea"]]
        ys, xs = np.nonzero(inpaint.split_thin(hole)[0])
        cy, cx = int(ys.mean()), int(xs.mean())
        t, l = max(cy - 128, 0), max(cx - 128, 0)
        crops = [np.asarray(Image.fromarray(c[t : t + 256, l : l + 256]).resize((512, 512), Image.NEAREST)) for c in cols]
        top = np.concatenate([np.asarray(Image.fromarray(c).resize((512, 512))) for c in cols], 1)
        grid = np.concatenate([top, np.concatenate(crops, 1)], 0)
        import io

        buf = io.BytesIO()
        Image.fromarray(grid).save(buf, format="PNG")
        atomic_write_bytes(out_path.with_suffix(".png"), buf.getvalue())


if __name__ == "__main__":
    main()
