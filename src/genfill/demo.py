"""`genfill demo`, the main job: on the built-in faces, train a VAE inpainter for a few minutes, fill held-out
faces under several mask kinds next to OpenCV's Telea, sample and morph new faces, and write
`runs/demo/index.html` with every picture and number."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from genfill.config import load_config, resolve_config
from genfill.data.cache import load_cache
from genfill.device import pick_device
from genfill.evaluate import evaluate_methods
from genfill.io import archive_previous, atomic_write_json, save_image
from genfill.models import load_model
from genfill.peers import telea
from genfill.pixels import fill_panel
from genfill.report import esc, figure, table, write_page
from genfill.sample import interpolate, sample_grid
from genfill.train import train

# Mask kinds the demo reports; `square` is seed 002's 32x32 hole with a 16 px margin (25% of a 64x64 face).
DEMO_MASKS = {"square": {"size": 32, "margin": 16}, "thin": {}, "medium": {}, "thick": {}, "box": {}}
EVAL_IMAGES = 500


def run_demo(out_dir: str = "runs", minutes: float = 4.0, count: int = 20000, device: str = "auto",
             verbose: bool = True, config: str | Path | None = None, eval_images: int = EVAL_IMAGES) -> Path:
    t0 = time.time()
    cfg = load_config(config or resolve_config("vae-faces64"), [
        "name=demo", f"out_dir={out_dir}", f"data.count={count}", f"train.time_budget_s={minutes * 60}",
        "train.epochs=1000",
    ])
    moved = archive_previous(cfg.run_dir)
    if moved and verbose:
        print(f"genfill: kept the previous demo as {moved}", file=sys.stderr)
    res = train(cfg, device=device, verbose=verbose)

    dev = pick_device(device)
    model, ckpt = load_model(cfg.run_dir, dev)
    data = load_cache(cfg.data, verbose=verbose)
    run_dir = cfg.run_dir

    # ---- numbers: our VAE and Telea on the same held-out faces and the same holes
    methods = {"genfill VAE": lambda x, m: model.fill(x, m), "OpenCV Telea": telea}
    results = evaluate_methods(methods, data, DEMO_MASKS, n=eval_images, seed=cfg.masks.eval_seed, device=dev)
    rows = []
    for kind in DEMO_MASKS:
        for name, r in results.items():
            rows.append([kind, name, r.mean("hole_ratio", kind) * 100, r.mean("psnr", kind), r.mean("ssim", kind),
                         r.mean("l1_hole", kind), r.mean("edge_hole", kind)])
    summary = {
        "train_seconds": round(res.seconds, 1), "steps": res.step, "epochs": res.epoch,
        "parameters": model.num_parameters(), "eval_images": eval_images, "eval_seed": cfg.masks.eval_seed,
        "psnr": {kind: {name: r.mean("psnr", kind) for name, r in results.items()} for kind in DEMO_MASKS},
        "table": [dict(zip(["mask", "method", "hole_pct", "psnr", "ssim", "l1_hole", "edge_hole"], r)) for r in rows],
    }

    # ---- pictures
    fill_figs = []
    for kind, pos, x, m in data.heldout_batches(DEMO_MASKS, 8, cfg.masks.eval_seed, batch_size=8, device=dev):
        with torch.no_grad():
            ours, classic = model.fill(x, m), telea(x, m)
        save_image(fill_panel(x, m, ours, classic), run_dir / f"fill_{kind}.png")
        fill_figs.append(figure(f"fill_{kind}.png", f"{kind} holes - rows: original, masked, genfill VAE, "
                                                     "OpenCV Telea"))
    sample_grid(model, 100, run_dir / "samples.png", nrow=10)
    interpolate(model, run_dir / "morph.png", rows=4, steps=8, pool=data.batch(data.split("test")[:64]))
    interpolate(model, run_dir / "morph_random.png", rows=4, steps=8)
    summary["wall_seconds"] = round(time.time() - t0, 1)
    atomic_write_json(run_dir / "demo.json", summary)

    sq = summary["psnr"]["square"]
    body = [
        f"<p>A {esc(ckpt['kind'])} inpainter ({model.num_parameters():,} parameters) trained for "
        f"{res.seconds / 60:.1f} min ({res.step} steps) on {len(data.split('train')):,} built-in faces, "
        f"scored on {eval_images} held-out faces; every method sees the same holes (fixed per image, "
        f"seed {cfg.masks.eval_seed}). Metrics are on the composited output.</p>",
        f"<p><b>Square 32x32 hole (25% of the image), whole-image PSNR:</b> genfill VAE "
        f"<b>{sq['genfill VAE']:.2f} dB</b>, OpenCV Telea <b>{sq['OpenCV Telea']:.2f} dB</b>.</p>",
        "<h2>Fill quality</h2>",
        table(["mask", "method", "hole %", "PSNR dB", "SSIM", "L1 (hole)", "edge err (hole)"], rows),
        "<h2>Fills</h2>", *fill_figs,
        "<h2>New faces</h2>", figure("samples.png", "100 samples from the prior"),
        "<h2>Morphs</h2>", figure("morph.png", "between encoded held-out faces"),
        figure("morph_random.png", "between random prior draws (spherical path)"),
        "<h2>Training</h2>", figure("curves.png", "training curves (train and validation)"),
        f"<p>Run directory: <code>{esc(run_dir)}</code>; reproduce with <code>make demo</code>. "
        f"Total wall time {summary['wall_seconds'] / 60:.1f} min.</p>",
        f"<pre>{esc(json.dumps({k: v for k, v in summary.items() if k != 'table'}, indent=1))}</pre>",
    ]
    return write_page(run_dir / "index.html", "genfill demo: inpainting built-in faces", body)
