"""A real photo filled at its own size: scikit-image's astronaut (512x512, ships offline) under a mask of a
few hand-painted-looking brush strokes, filled by a model and by OpenCV Telea, as one labelled panel.

    python benchmarks/native_fill_panel.py -c runs/gan-faces64 -o panel.png

Columns: original / mask over the photo (red) / Telea / the model. Prints the fill times.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
from PIL import Image, ImageDraw
from skimage import data

import genfill


def brush_mask(h: int, w: int, seed: int = 7, strokes: int = 5) -> np.ndarray:
    """Strokes of a round brush (10-24 px) along wobbly polylines, as a person paints over objects."""
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), np.uint8)
    for _ in range(strokes):
        pts = [rng.uniform([0.15 * w, 0.15 * h], [0.85 * w, 0.85 * h])]
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(rng.integers(4, 9)):
            angle += rng.normal(0, 0.5)
            step = rng.uniform(15, 40)
            pts.append(np.clip(pts[-1] + step * np.array([np.cos(angle), np.sin(angle)]), 0, [w - 1, h - 1]))
        width = int(rng.integers(10, 25))
        for a, b in zip(pts[:-1], pts[1:]):
            cv2.line(m, tuple(int(v) for v in a), tuple(int(v) for v in b), 255, width, cv2.LINE_AA)
    return m > 127


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-c", "--checkpoint", required=True, help="run, checkpoint or export")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--device", default="auto")
    args = p.parse_args()

    photo = data.astronaut()  # (512, 512, 3) uint8
    hole = brush_mask(*photo.shape[:2])
    columns = [("original", photo)]
    shown = photo.copy()
    shown[hole] = (0.4 * shown[hole] + 0.6 * np.array([255, 0, 0])).astype(np.uint8)
    columns.append((f"mask ({100 * hole.mean():.1f}% hole)", shown))
    for label, name in (("OpenCV Telea", "telea"), (None, args.checkpoint)):
        painter = genfill.load(name, device=args.device)
        t0 = time.time()
        out = painter.fill(photo, hole)
        dt = time.time() - t0
        assert out.shape == photo.shape and (out[~hole] == photo[~hole]).all()
        label = label or f"genfill {painter.model.kind} ({painter.size}px model)"
        print(f"{label}: {dt:.2f} s")
        columns.append((label, out))
    h, w = photo.shape[:2]
    pad, top = 8, 28
    canvas = Image.new("RGB", (len(columns) * (w + pad) + pad, h + top + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, img) in enumerate(columns):
        x = pad + i * (w + pad)
        canvas.paste(Image.fromarray(img), (x, top))
        draw.text((x, 8), label, fill="black")
    canvas.save(args.output)
    print(f"panel -> {args.output}")


if __name__ == "__main__":
    main()
