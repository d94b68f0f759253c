"""Calibration of K fills at a photo's own size, on the thin part of the hole and on the rest: does the spread
of `fill --samples K` cover the truth where the native fill has no window (inpaint.py: strokes up to ~9 px wide
are filled at native resolution by a harmonic fill, the same in every sample)?

    python benchmarks/native_thin_spread.py -c runs/sampler-faces64 --blend hybrid [--out OUT]

Photos: scikit-image's samples at their own size (benchmarks/photo_fill.py's PHOTOS); mask: photo_fill.py's
"thin" (an ellipse object of ~10 % of the photo and five 3 px strokes), seed 0. For each photo, K = 8 fills
(`Inpainter.fill_samples`) for each of `--seeds` seeds (0, 1, ...; a photo's thin part moves by only K draws
per seed, so one seed is a noisy measure) and the ordinary fill (seed 0); scores pool the seeds. Per part of
the hole (`thin`: the pixels `inpaint.split_thin` sends to the harmonic fill; `wide`: the rest): coverage90,
the share of true values (0-1, every channel) inside the 5-95 % interval of the K fills (nominal 0.70 at
K = 8), the mean spread (std over K, averaged over channels) and r, Pearson's correlation of spread with the
ordinary fill's |error| (`metrics.uncertainty`: `coverage`, `CalibrationTally`). Writes OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skimage import data

import genfill
from genfill.inpaint import split_thin
from genfill.io import atomic_write_json, atomic_write_text
from genfill.metrics.uncertainty import CalibrationTally, Moments, coverage, sample_interval

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from photo_fill import PHOTOS, masks  # noqa: E402


def part_scores(arrays: np.ndarray, fill: np.ndarray, truth: np.ndarray, part: np.ndarray) -> dict:
    """coverage90 (covered, total), spread and Moments of K fills (K,H,W,C) over the pixels `part` (H,W)."""
    s = torch.from_numpy(arrays).float().permute(0, 3, 1, 2)[:, None]  # (K, 1, C, H, W)
    t = torch.from_numpy(truth).float().permute(2, 0, 1)[None]
    lo, hi = sample_interval(s)
    w = torch.from_numpy(part)[None, None].float()
    covered, total = coverage(lo, hi, t, w)
    spread = s.std(0, correction=1).mean(1, keepdim=True)  # (1, 1, H, W)
    err = (torch.from_numpy(fill).float().permute(2, 0, 1)[None] - t).abs().mean(1, keepdim=True)
    return {"covered": float(covered.sum()), "total": float(total.sum()),
            "spread_sum": float((spread * w).sum()), "pixels": float(w.sum()), "moments": Moments.of(spread, err, w)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", required=True, metavar="RUN")
    ap.add_argument("--blend", default=None, help="a sampler's exemplar blend (default: its config's)")
    ap.add_argument("-k", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=5, help="K fills drawn with seeds 0..S-1, pooled")
    ap.add_argument("--out", default="benchmarks/results/native_thin_spread")
    a = ap.parse_args(argv)
    painter = genfill.load(a.c, device="cpu", **({"blend": a.blend} if a.blend else {}))
    tally, spread = {}, {}  # per photo and "**pooled**": CalibrationTally by part, [spread sum, pixels] by part
    t0 = time.time()
    for name in PHOTOS:
        photo = getattr(data, name)()
        if photo.ndim == 2:
            photo = np.stack([photo] * 3, -1)
        photo = np.ascontiguousarray(photo[..., :3])
        hole = masks(*photo.shape[:2], seed=0)["thin"]
        fill = np.asarray(painter.fill(photo, hole.astype(np.uint8) * 255, seed=0), dtype=np.float32) / 255
        truth = photo.astype(np.float32) / 255
        wide, thin = split_thin(hole)
        for seed in range(a.seeds):
            res = painter.fill_samples(photo, hole.astype(np.uint8) * 255, a.k, seed=seed)
            for part, where in (("thin", thin), ("wide", wide)):
                sc = part_scores(res.arrays[..., :3], fill, truth, where)
                for key in (name, "**pooled**"):
                    tally.setdefault(key, CalibrationTally()).add(part, torch.tensor(sc["covered"]),
                                                                  torch.tensor(sc["total"]), sc["moments"])
                    sums = spread.setdefault(key, {}).setdefault(part, [0.0, 0.0])
                    sums[0] += sc["spread_sum"]  # over every seed
                    sums[1] += sc["pixels"] if seed == 0 else 0  # the part's pixels, once
    rows = {key: {part: {"coverage90": c["coverage90"], "r": c["unc_corr"], "pixels": int(spread[key][part][1]),
                         "spread": spread[key][part][0] / max(spread[key][part][1] * a.seeds, 1)}
                  for part, c in t.by_mask().items()} for key, t in tally.items()}
    summary = rows.pop("**pooled**")
    command = "python benchmarks/native_thin_spread.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    doc = {"command": command, "run": a.c, "blend": a.blend, "k": a.k, "seeds": a.seeds,
           "seconds": round(time.time() - t0, 1),
           "photos": rows, "pooled": summary}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(a.out + ".json"), doc)
    lines = [f"# K = {a.k} fills at the photo's own size: calibration on the thin part and the rest", "",
             f"`{command}` ({doc['seconds']:.0f} s)", "",
             "| photo | " + " | ".join(f"{p} px | {p} coverage90 | {p} spread | {p} r" for p in ("thin", "wide"))
             + " |",
             "|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "-" if v != v else f"{v:.3f}"  # noqa: E731 (NaN: no spread at all)
    for name, r in [*rows.items(), ("**pooled**", summary)]:
        cells = [f"{r[p]['pixels']} | {fmt(r[p]['coverage90'])} | {fmt(r[p]['spread'])} | {fmt(r[p]['r'])}"
                 for p in ("thin", "wide")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    atomic_write_text(Path(a.out + ".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
