"""`genfill demo`, the main job: on the built-in faces, train the inpainter that fills best in a few CPU
minutes (`sampler-faces64`, see DEMO_CONFIG), fill held-out faces under several mask kinds with its mean fill
and its samples next to OpenCV's Telea, scikit-image's biharmonic fill and PatchMatch, sample and morph new
faces when the family can, and write `runs/demo/index.html`: genfill.report's shared page (a picture first,
the verdict per mask kind on both axes with the best cell marked and win/loss lines, the same faces side by
side, failure galleries), then samples, morphs and training curves."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from genfill.config import resolve_config, to_dict
from genfill.loadconfig import load_config
from genfill.data.cache import load_cache
from genfill.device import pick_device
from genfill.evaljob import evaluate_specs, load_eval
from genfill.io import archive_previous, atomic_write_json
from genfill.models import load_model
from genfill.peers import PEERS
from genfill.resolve import Filler
from genfill.pictures import make_pictures
from genfill.report import esc, figure, results_sections, write_page
from genfill.progress import say
from genfill.sample import interpolate, sample_grid
from genfill.train import train
from genfill.verdict import winners

# Mask kinds the demo reports; `square` is seed 002's 32x32 hole with a 16 px margin (25% of a 64x64 face).
DEMO_MASKS = {"square": {"size": 32, "margin": 16}, "thin": {}, "medium": {}, "thick": {}, "box": {}}
EVAL_IMAGES = 500
# The family whose fills look best after the demo's budget: sampler-faces64 trains unet-faces64's network as
# its mean pass at a unet's cost per step (train_samples 0) and draws its samples from 16,000 stored faces,
# which put eyes and mouths in a 32 px square where every mean fill leaves a blur (FID per kind:
# benchmarks/results/perception_ab.md). `genfill demo --config unet-faces64` trains the unet alone.
DEMO_CONFIG = "sampler-faces64"
OURS = "genfill"
PEER_NAMES = {"telea": "OpenCV Telea", "biharmonic": "biharmonic", "patchmatch": "PatchMatch"}  # the demo's peers


def run_demo(out_dir: str = "runs", minutes: float = 4.0, count: int = 20000, device: str = "auto",
             verbose: bool = True, config: str | Path | None = None, eval_images: int = EVAL_IMAGES,
             overrides: list[str] | None = None) -> Path:
    """`genfill demo` (module docstring): train, score next to the peers, draw, write `index.html`."""
    t0 = time.time()
    cfg = load_config(resolve_config(config or DEMO_CONFIG), [
        "name=demo", f"out_dir={out_dir}", f"data.count={count}", f"train.time_budget_s={minutes * 60}",
        "train.epochs=1000", *(overrides or []),
    ])
    moved = archive_previous(cfg.run_dir)
    if moved and verbose:
        say(f"genfill: kept the previous demo as {moved}")
    res = train(cfg, device=device, verbose=verbose)

    dev = pick_device(device)
    model, ckpt = load_model(cfg.run_dir, dev)
    data = load_cache(cfg.data, verbose=verbose)
    run_dir = cfg.run_dir
    ours = f"{OURS} {ckpt['kind']}"

    # ---- numbers: ours (a sampler's default fill, a sample, and its mean fill), Telea, biharmonic and
    # PatchMatch on the same held-out faces and the same holes (the eval job, so the demo's numbers are what
    # `genfill eval` would print; its files land in runs/demo/eval/). FID/KID stay off here: 5 methods x 5
    # kinds x 500 faces through Inception cost several minutes of 2 CPU cores, more than the demo's budget;
    # the report then judges perception by LPIPS, and `genfill eval -c runs/demo -c biharmonic -c patchmatch`
    # adds them (benchmarks/results/perception_eval.md).
    fills = _our_fills(model, ours)
    mean = ([Filler(f"{ours} mean", ckpt["path"], ckpt["kind"], fills[f"{ours} mean"])]
            if f"{ours} mean" in fills else [])
    path = evaluate_specs([str(run_dir), *mean, "telea", "biharmonic", "patchmatch"], run_dir / "eval",
                          data=to_dict(cfg.data), masks=DEMO_MASKS, n=eval_images, seed=cfg.masks.eval_seed,
                          device=device, fid=False, names=[ours, *[None] * len(mean), *PEER_NAMES.values()],
                          verbose=verbose, report=False)
    doc, _ = load_eval(path)
    summary = {"train_seconds": round(res.seconds, 1), "steps": res.step, "epochs": res.epoch,
               "parameters": model.num_parameters(), "eval_images": doc["protocol"]["n"],
               "eval_seed": cfg.masks.eval_seed, "kind": ckpt["kind"], **_scores(doc)}

    # ---- pictures: the report's shared ones (same images for every method), then what only a demo shows
    pics = make_pictures(doc, data, {**fills, **{name: PEERS[p] for p, name in PEER_NAMES.items()}}, run_dir)
    gen_figs = _new_faces(model, data, run_dir)
    summary["wall_seconds"] = round(time.time() - t0, 1)
    atomic_write_json(run_dir / "demo.json", summary)

    intro = [
        f"<p>A {esc(ckpt['kind'])} inpainter ({model.num_parameters():,} parameters) trained for "
        f"{res.seconds / 60:.1f} min ({res.step} steps) on {len(data.split('train')):,} built-in faces, "
        f"scored on {doc['protocol']['n']} held-out faces next to OpenCV Telea, scikit-image's biharmonic "
        f"fill and PatchMatch; every method sees the same holes (fixed per image, seed {cfg.masks.eval_seed}). Total wall time "
        f"{summary['wall_seconds'] / 60:.1f} min; reproduce with <code>make demo</code>.</p>",
    ]
    axes = "; ".join(f"{esc(k)}: {esc(summary['winner'][k])} / {esc(summary['winner_lpips'][k] or '-')}"
                     for k in DEMO_MASKS)
    intro.append(f"<p>Winner per mask kind on each axis, distortion (PSNR) / perception (LPIPS): {axes}.</p>")
    if len(fills) > 1:
        intro.append(f"<p>The pictures show {esc(', '.join(fills))}: the first is the default fill (one seeded "
                     "sample), the mean fill is <code>genfill fill --mean</code>; the numbers score both.</p>")
    details = [*gen_figs, "<h2>Training</h2>", figure("curves.png", "training curves (train and validation)"),
               f"<p>Run directory: <code>{esc(run_dir)}</code>.</p>"]
    raw = [("demo.json", "demo.json"), ("eval/eval.json", "eval.json"), ("eval/records.csv", "records.csv"),
           ("eval/summary.csv", "summary.csv"), ("metrics.jsonl", "metrics.jsonl")]
    return write_page(run_dir / "index.html", "genfill demo: inpainting built-in faces",
                      results_sections(doc, pics, intro, details, raw))


def _scores(doc: dict) -> dict:
    """demo.json's numbers per mask kind: PSNR and LPIPS per method, and the report's winners per kind
    (distortion by PSNR, perception by LPIPS here: FID is off; None where the LPIPS weights are missing)."""
    kinds = list(DEMO_MASKS)
    best = winners(doc)
    return {
        "psnr": {k: {name: e["summary"]["mask"][k]["psnr"] for name, e in doc["methods"].items()} for k in kinds},
        "winner": {k: best[k]["distortion"][0] for k in kinds},
        "lpips": {k: {name: e["summary"]["mask"][k].get("lpips") for name, e in doc["methods"].items()}
                  for k in kinds},
        "winner_lpips": {k: best.get(k, {}).get("perception", (None,))[0] for k in kinds},
    }


def _our_fills(model, ours: str) -> dict:
    """The trained model's fills for the pictures: its default fill, and for a sampler its mean fill and two
    more seeded samples beside it."""
    fills = {ours: model.fill}
    if model.kind == "sampler":
        fills[f"{ours} mean"] = lambda x, m: model.fill(x, m, mean=True)
        for i in (1, 2):
            fills[f"{ours} sample {i}"] = lambda x, m, i=i: model.fill_samples(x, m, 1, torch.Generator(x.device).manual_seed(i))[0]
    return fills


def _new_faces(model, data, run_dir: Path) -> list[str]:
    """New faces and morphs, only from a family that has a prior / latent space (the VAE family does); else a
    line saying which config has them."""
    figs = []
    if model.can_sample:
        sample_grid(model, 100, run_dir / "samples.png", nrow=10)
        figs += ["<h2>New faces</h2>", figure("samples.png", "100 samples from the prior")]
    if model.can_interpolate:
        interpolate(model, run_dir / "morph.png", rows=4, steps=8, pool=data.batch(data.split("test")[:64]))
        interpolate(model, run_dir / "morph_random.png", rows=4, steps=8)
        figs += ["<h2>Morphs</h2>", figure("morph.png", "between encoded held-out faces"),
                 figure("morph_random.png", "between random prior draws (spherical path)")]
    if not figs:
        figs = [f"<p>A {esc(model.kind)} model fills holes only: for new faces and morphs run "
                "<code>genfill demo --config vae-faces64</code>.</p>"]
    return figs
