"""The sampler's picture: test faces with the 32 px square hole, one row each: masked / unet mean fill /
sampler mean fill / three sampler samples / the classical peers (patchmatch when genfill has it, Telea,
biharmonic). Faces64 test images 0..rows-1, mask seed 1234 (the holes every `genfill eval` uses).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/sampler_picture.py --sampler runs/sampler-faces64 \
        --unet runs/unet-faces64 --out docs/images/sampler_faces.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from genfill.config import EVAL_SEED, DataConfig
from genfill.data.cache import load_cache
from genfill.masks import fixed_masks
from genfill.io import atomic_write_bytes
from genfill.models import load_model
from genfill.peers import PEERS
from genfill.pixels import to_uint8

SCALE, PAD, HEAD = 2, 2, 14


def columns(sampler, unet, x: torch.Tensor, m: torch.Tensor, seed: int) -> list[tuple[str, torch.Tensor]]:
    cols = [("masked", x * (1 - m) + m)]  # the hole white
    if unet is not None:
        cols.append(("unet mean", unet.fill(x, m)))
    cols.append(("sampler mean", sampler.fill(x, m, mean=True)))
    s = sampler.fill_samples(x, m, 3, torch.Generator().manual_seed(seed))
    cols += [(f"sample {i + 1}", s[i]) for i in range(3)]
    for p in ("patchmatch", "telea", "biharmonic"):
        if p in PEERS:
            cols.append((p, PEERS[p](x, m)))
    cols.append(("original", x))
    return cols


def grid(cols: list[tuple[str, torch.Tensor]]) -> Image.Image:
    n, size = cols[0][1].shape[0], cols[0][1].shape[-1]
    t = size * SCALE + PAD
    img = Image.new("RGB", (len(cols) * t + PAD, HEAD + n * t + PAD), "white")
    draw = ImageDraw.Draw(img)
    for j, (name, batch) in enumerate(cols):
        draw.text((PAD + j * t, 1), name, fill="black")
        for i in range(n):
            a = to_uint8(batch[i].float()).cpu().numpy()
            tile = Image.fromarray(a).resize((size * SCALE, size * SCALE), Image.NEAREST)
            img.paste(tile, (PAD + j * t, HEAD + PAD + i * t))
    return img


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sampler", required=True)
    ap.add_argument("--unet", default=None)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--first", type=int, default=0, help="first test image")
    ap.add_argument("--seed", type=int, default=0, help="the samples' seed")
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--out", default="docs/images/sampler_faces.png")
    a = ap.parse_args(argv)
    sampler, _ = load_model(a.sampler)
    unet = load_model(a.unet)[0] if a.unet else None
    data = load_cache(DataConfig(name="faces64", size=64, count=a.count), verbose=False)
    idx = data.split("test")[a.first : a.first + a.rows]
    x = data.batch(idx)
    m = fixed_masks("square", len(x), 64, 64, seed=EVAL_SEED, start=a.first, size=32, margin=16)
    with torch.no_grad():
        img = grid(columns(sampler, unet, x, m, a.seed))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(out, buf.getvalue())
    print(f"{out} ({img.size[0]}x{img.size[1]})")


if __name__ == "__main__":
    main()
