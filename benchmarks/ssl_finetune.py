"""Does self-supervised pretraining of the encoder help the inpainter? unet-faces64 trained for the same number
of optimiser STEPS from scratch and from each SSL encoder (SimCLR, BYOL, Barlow Twins, pretrained on faces64),
on two datasets: faces64 and a folder of non-face 64x64 crops cut from the images scikit-image ships
(`skimage.data`, offline; the astronaut and the face-detector files left out), to see whether face-pretrained
features transfer. Every fine-tuned model is scored by `genfill eval` (evaljob.evaluate_specs) on the same
holes: the dataset's test split, n images, mask seed 1234, thin/medium/thick/square, with biharmonic beside,
and the scratch run again under other train.seed values (--seeds) to show how far the seed alone moves a score.

Measured in steps, not seconds, because the CPU is shared; run it at OMP_NUM_THREADS=1, one job at a time:

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/ssl_finetune.py --pretrain-steps 150 --finetune-steps 150 -n 100

Runs go to --runs (default runs/ssl-bench; finished runs are reused, so a stopped benchmark picks up where
it was). Writes benchmarks/results/ssl_finetune.json and .md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from genfill.config import EVAL_SEED, resolve_config
from genfill.loadconfig import load_config, load_pretrain_config
from genfill.evaljob import evaluate_specs
from genfill.io import atomic_write_text, load_checkpoint, make_dir
from genfill.pretrain import pretrain
from genfill.train import train

KINDS = ["thin", "medium", "thick", "square"]
METHODS = ["simclr", "byol", "barlow"]
# skimage.data's bundled files that are photos or textures and not faces (read from disk: no download)
SKIMAGE_FILES = ["brick.png", "camera.png", "cell.png", "chelsea.png", "coffee.png", "coins.png", "color.png",
                 "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg", "ihc.png", "microaneurysms.png",
                 "moon.png", "motorcycle_left.png", "page.png", "retina.jpg", "rocket.jpg", "text.png",
                 "clock_motion.png", "chessboard_RGB.png", "logo.png"]


def make_texture_folder(folder: Path, count: int, size: int = 64, seed: int = 0) -> Path:
    """`count` size x size RGB crops of skimage's sample images (at full and half scale), the same for a seed;
    written once as PNG files."""
    import skimage
    from PIL import Image

    if folder.is_dir() and len(list(folder.glob("*.png"))) == count:
        return folder
    make_dir(folder)
    rng = np.random.default_rng(seed)
    root = Path(skimage.__file__).parent / "data"
    sources = []
    for name in SKIMAGE_FILES:
        im = Image.open(root / name).convert("RGB")
        for scale in (1.0, 0.5):
            s = im.resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC) if scale != 1 else im
            if min(s.size) >= size:
                sources.append(np.asarray(s))
    for i in range(count):
        a = sources[i % len(sources)]
        y, x = rng.integers(0, a.shape[0] - size + 1), rng.integers(0, a.shape[1] - size + 1)
        Image.fromarray(a[y:y + size, x:x + size]).save(folder / f"crop{i:05d}.png")
    return folder


def done(run: Path, steps: int) -> bool:
    try:
        return load_checkpoint(run / "checkpoints" / "last.pt")["step"] >= steps
    except Exception:  # noqa: BLE001 - no run yet, or a broken one: train it (again)
        return False


def per_kind(eval_json: Path) -> dict[str, dict]:
    doc = json.loads(eval_json.read_text())
    return {name: {k: {"psnr": e["summary"]["mask"][k]["psnr"], "lpips": e["summary"]["mask"][k].get("lpips")}
                   for k in KINDS} for name, e in doc["methods"].items()}


def table(title: str, scores: dict[str, dict]) -> str:
    base = scores["scratch"]
    head = ("| init | " + " | ".join(f"{k} PSNR" for k in KINDS) + " | mean PSNR (vs scratch) | mean LPIPS |")
    lines = [f"**{title}**", "", head, "|" + "---|" * (len(KINDS) + 3)]
    mean = lambda s, key: float(np.mean([s[k][key] for k in KINDS]))  # noqa: E731
    for name, s in scores.items():
        lp = mean(s, "lpips") if all(s[k]["lpips"] is not None for k in KINDS) else float("nan")
        lines.append(f"| {name} | " + " | ".join(f"{s[k]['psnr']:.2f}" for k in KINDS)
                     + f" | {mean(s, 'psnr'):.2f} ({mean(s, 'psnr') - mean(base, 'psnr'):+.2f}) | {lp:.4f} |")
    spread = [mean(s, "psnr") for name, s in scores.items() if name.startswith("scratch")]
    if len(spread) > 1:
        lines += ["", f"Scratch over {len(spread)} seeds: mean PSNR {min(spread):.2f} to {max(spread):.2f} "
                      f"(a spread of {max(spread) - min(spread):.2f} dB from the seed alone)."]
    return "\n".join(lines) + "\n"


def command(a: argparse.Namespace) -> str:
    return ("OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/ssl_finetune.py "
            f"--pretrain-steps {a.pretrain_steps} --finetune-steps {a.finetune_steps} -n {a.n}"
            + (f" --freeze {a.freeze}" if a.freeze else "") + (f" --seeds {a.seeds}" if a.seeds != "1,2" else "")
            + (f" --datasets {a.datasets}" if a.datasets != "faces64,textures" else "")
            + (f" --runs {a.runs}" if a.runs != "runs/ssl-bench" else "")
            + (f" --out {a.out}" if a.out != "benchmarks/results/ssl_finetune" else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pretrain-steps", type=int, default=150)
    ap.add_argument("--finetune-steps", type=int, default=150)
    ap.add_argument("-n", type=int, default=100, help="test images per dataset (each under every mask kind)")
    ap.add_argument("--count", type=int, default=3000, help="faces64 images drawn (train 80 %%)")
    ap.add_argument("--textures", type=int, default=2000, help="non-face crops in the transfer folder")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--datasets", default="faces64,textures")
    ap.add_argument("--freeze", type=int, default=0, help="train.freeze_encoder_steps of the fine-tunes")
    ap.add_argument("--seeds", default="1,2", help="extra train.seed values of the scratch run: how much the "
                    "scores move with the seed alone (empty: none)")
    ap.add_argument("--config", default="unet-faces64", help="the inpainter fine-tuned")
    ap.add_argument("--runs", default="runs/ssl-bench")
    ap.add_argument("--out", default="benchmarks/results/ssl_finetune")
    a = ap.parse_args()
    runs, methods = Path(a.runs), [m for m in a.methods.split(",") if m]
    seeds = [int(k) for k in a.seeds.split(",") if k]
    faces = {"name": "faces64", "size": 64, "count": a.count}
    datasets = {"faces64": faces,
                "textures": {"name": "folder", "size": 64,
                             "root": str(make_texture_folder(Path("data/ssl-textures"), a.textures))}}
    datasets = {k: v for k, v in datasets.items() if k in a.datasets.split(",")}
    sets = lambda d, prefix: [f"{prefix}.{k}={v}" for k, v in d.items()]  # noqa: E731

    # 1. pretrain each method's encoder on faces64
    encoders = {}
    for m in methods:
        run = runs / f"pre-{m}"
        if not done(run, a.pretrain_steps):
            cfg = load_pretrain_config(resolve_config(f"ssl-{m}-faces64"), [
                f"name={run.name}", f"out_dir={runs}", f"train.max_steps={a.pretrain_steps}", *sets(faces, "data")])
            pretrain(cfg, resume=(run / "checkpoints" / "last.pt").is_file())
        encoders[m] = run

    # 2. per dataset: the inpainter from scratch and from each encoder, the same steps, seed and data order;
    # 3. scored on the same holes
    results = {}
    md = [f"{a.config} trained {a.finetune_steps} optimiser steps from scratch (train.seed 0, and also "
          f"{', '.join(map(str, seeds)) or 'no other seed'}) or from an encoder pretrained {a.pretrain_steps} steps by each method (its "
          f"configs/ssl-*-faces64.yaml preset) on the faces64 training split ({a.count} faces drawn); "
          f"freeze_encoder_steps {a.freeze}; each run's last.pt scored by genfill eval. Textures: "
          f"{a.textures} 64x64 crops of scikit-image's sample images (no faces). Made by `{command(a)}`.\n"]
    for dname, data in datasets.items():
        specs, names = [], []
        for init in ["scratch", *methods, *(f"scratch-seed{k}" for k in seeds)]:
            run = runs / f"ft-{dname}-{init}"
            if init.startswith("scratch"):  # another seed: another init, image order and masks
                extra = [f"train.seed={init.removeprefix('scratch-seed')}"] if init != "scratch" else []
            else:
                extra = [f"train.init_encoder_from={encoders[init]}", f"train.freeze_encoder_steps={a.freeze}"]
            if not done(run, a.finetune_steps):
                cfg = load_config(resolve_config(a.config), [
                    f"name={run.name}", f"out_dir={runs}", f"train.max_steps={a.finetune_steps}",
                    "train.time_budget_s=null", "train.val_images=64", "train.sample_every_epoch=false",
                    *sets(data, "data"), *extra])
                train(cfg, resume=(run / "checkpoints" / "last.pt").is_file())
            specs.append(str(run / "checkpoints" / "last.pt"))  # the weights after exactly the budget (best.pt may be earlier)
            names.append(init)
        ej = evaluate_specs([*specs, "biharmonic"], out_dir=runs / f"eval-{dname}", data=data, masks=KINDS, n=a.n,
                            seed=EVAL_SEED, names=[*names, None], report=False)
        scores = per_kind(ej)
        results[dname] = scores
        md.append(table(f"{dname} test (n={a.n}, mask seed {EVAL_SEED})", scores))
        doc = {"command": command(a),
               "inpainter": a.config, "pretrain_steps": a.pretrain_steps, "finetune_steps": a.finetune_steps,
               "freeze_encoder_steps": a.freeze, "scratch_seeds": [0, *seeds], "n": a.n, "mask_seed": EVAL_SEED, "faces_count": a.count,
               "datasets": datasets, "results": results}
        atomic_write_text(Path(a.out).with_suffix(".json"), json.dumps(doc, indent=1) + "\n")
        atomic_write_text(Path(a.out).with_suffix(".md"), "\n".join(md))
        print(md[-1], flush=True)


if __name__ == "__main__":
    main()
