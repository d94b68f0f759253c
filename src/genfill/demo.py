"""`genfill demo`, the main job: on the built-in faces, train the inpainter that fills best in a few CPU
minutes (`unet-faces64`, see DEMO_CONFIG), fill held-out faces under several mask kinds next to OpenCV's
Telea and scikit-image's biharmonic fill, sample and morph new faces when the family can, and write
`runs/demo/index.html` with every picture and number (per mask kind, the winner marked)."""

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
from genfill.peers import biharmonic, telea
from genfill.pixels import fill_panel
from genfill.report import esc, figure, table, write_page
from genfill.sample import interpolate, sample_grid
from genfill.train import train

# Mask kinds the demo reports; `square` is seed 002's 32x32 hole with a 16 px margin (25% of a 64x64 face).
DEMO_MASKS = {"square": {"size": 32, "margin": 16}, "thin": {}, "medium": {}, "thick": {}, "box": {}}
EVAL_IMAGES = 500
# The family that fills best in the demo's budget: in `genfill reproduce --preset quick` (90 s of 2 CPU cores
# per model) unet-faces64 has the best mean PSNR and LPIPS of every learned family (see its config's notes).
DEMO_CONFIG = "unet-faces64"
OURS = "genfill"


def run_demo(out_dir: str = "runs", minutes: float = 4.0, count: int = 20000, device: str = "auto",
             verbose: bool = True, config: str | Path | None = None, eval_images: int = EVAL_IMAGES,
             overrides: list[str] | None = None) -> Path:
    t0 = time.time()
    cfg = load_config(resolve_config(config or DEMO_CONFIG), [
        "name=demo", f"out_dir={out_dir}", f"data.count={count}", f"train.time_budget_s={minutes * 60}",
        "train.epochs=1000", *(overrides or []),
    ])
    moved = archive_previous(cfg.run_dir)
    if moved and verbose:
        print(f"genfill: kept the previous demo as {moved}", file=sys.stderr)
    res = train(cfg, device=device, verbose=verbose)

    dev = pick_device(device)
    model, ckpt = load_model(cfg.run_dir, dev)
    data = load_cache(cfg.data, verbose=verbose)
    run_dir = cfg.run_dir

    # ---- numbers: ours, Telea and biharmonic on the same held-out faces and the same holes
    methods = {OURS: lambda x, m: model.fill(x, m), "OpenCV Telea": telea, "biharmonic": biharmonic}
    results = evaluate_methods(methods, data, DEMO_MASKS, n=eval_images, seed=cfg.masks.eval_seed, device=dev)
    rows, winners = [], {}
    for kind in DEMO_MASKS:
        winners[kind] = max(results, key=lambda name: results[name].mean("psnr", kind))
        for name, r in results.items():
            mark = "best PSNR" if name == winners[kind] else ""
            rows.append([kind, name, r.mean("hole_ratio", kind) * 100, r.mean("psnr", kind), r.mean("ssim", kind),
                         r.mean("l1_hole", kind), r.mean("edge_hole", kind), mark])
    summary = {
        "train_seconds": round(res.seconds, 1), "steps": res.step, "epochs": res.epoch,
        "parameters": model.num_parameters(), "eval_images": eval_images, "eval_seed": cfg.masks.eval_seed,
        "kind": ckpt["kind"],
        "psnr": {kind: {name: r.mean("psnr", kind) for name, r in results.items()} for kind in DEMO_MASKS},
        "winner": winners,
        "table": [dict(zip(["mask", "method", "hole_pct", "psnr", "ssim", "l1_hole", "edge_hole"], r[:7]))
                  for r in rows],
    }

    # ---- pictures
    fill_figs = []
    for kind, pos, x, m in data.heldout_batches(DEMO_MASKS, 8, cfg.masks.eval_seed, batch_size=8, device=dev):
        with torch.no_grad():
            ours, classic, bih = model.fill(x, m), telea(x, m), biharmonic(x, m)
        save_image(fill_panel(x, m, ours, classic, bih), run_dir / f"fill_{kind}.png")
        fill_figs.append(figure(f"fill_{kind}.png", f"{kind} holes - rows: original, masked, genfill "
                                                     f"{ckpt['kind']}, OpenCV Telea, biharmonic"))
    # New faces and morphs only from a family that has a prior / latent space (the VAE family does).
    gen_figs = []
    if model.can_sample:
        sample_grid(model, 100, run_dir / "samples.png", nrow=10)
        gen_figs += ["<h2>New faces</h2>", figure("samples.png", "100 samples from the prior")]
    if model.can_interpolate:
        interpolate(model, run_dir / "morph.png", rows=4, steps=8, pool=data.batch(data.split("test")[:64]))
        interpolate(model, run_dir / "morph_random.png", rows=4, steps=8)
        gen_figs += ["<h2>Morphs</h2>", figure("morph.png", "between encoded held-out faces"),
                     figure("morph_random.png", "between random prior draws (spherical path)")]
    if not gen_figs:
        gen_figs = [f"<p>A {esc(ckpt['kind'])} model fills holes only: for new faces and morphs run "
                    "<code>genfill demo --config vae-faces64</code>.</p>"]
    summary["wall_seconds"] = round(time.time() - t0, 1)
    atomic_write_json(run_dir / "demo.json", summary)

    wins = ", ".join(f"{kind}: {esc(name)}" for kind, name in winners.items())
    body = [
        f"<p>A {esc(ckpt['kind'])} inpainter ({model.num_parameters():,} parameters) trained for "
        f"{res.seconds / 60:.1f} min ({res.step} steps) on {len(data.split('train')):,} built-in faces, "
        f"scored on {eval_images} held-out faces; every method sees the same holes (fixed per image, "
        f"seed {cfg.masks.eval_seed}). Metrics are on the composited output.</p>",
        f"<p><b>Best whole-image PSNR per mask kind:</b> {wins}.</p>",
        "<h2>Fill quality</h2>",
        table(["mask", "method", "hole %", "PSNR dB", "SSIM", "L1 (hole)", "edge err (hole)", "winner"], rows),
        "<h2>Fills</h2>", *fill_figs, *gen_figs,
        "<h2>Training</h2>", figure("curves.png", "training curves (train and validation)"),
        f"<p>Run directory: <code>{esc(run_dir)}</code>; reproduce with <code>make demo</code>. "
        f"Total wall time {summary['wall_seconds'] / 60:.1f} min.</p>",
        f"<pre>{esc(json.dumps({k: v for k, v in summary.items() if k != 'table'}, indent=1))}</pre>",
    ]
    return write_page(run_dir / "index.html", "genfill demo: inpainting built-in faces", body)
