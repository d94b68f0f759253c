"""GAN (configs/gan-faces64.yaml) vs the demo's VAE (configs/vae-faces64.yaml) on the built-in 64x64 faces,
both trained on seed 002's square 32x32 holes (margin 16) for the same CPU time, one after the other, and
scored on the test split under the same fixed holes with genfill.evaluate.evaluate_methods.

    OMP_NUM_THREADS=2 python benchmarks/gan_vs_vae.py --seconds 180 --count 4000 --out runs/gan-vs-vae

`--gan-set key=value` overrides the GAN config (tuning); `--reuse-vae` scores an already trained VAE run.
Writes <out>/gan_vs_vae.json and prints one table.
"""

from __future__ import annotations

import argparse
from pathlib import Path


from genfill.loadconfig import load_config
from genfill.data.cache import load_cache
from genfill.evaluate import evaluate_methods
from genfill.io import atomic_write_json
from genfill.models import load_model
from genfill.train import train

ROOT = Path(__file__).resolve().parents[1]
MASKS = {"square": {"size": 32, "margin": 16}}
METRICS = ("l1_hole", "edge_hole", "psnr", "ssim", "psnr_hole")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--count", type=int, default=4000)
    ap.add_argument("--out", default="runs/gan-vs-vae")
    ap.add_argument("--cache-dir", default="data/cache")
    ap.add_argument("--gan-name", default="gan")
    ap.add_argument("--gan-set", action="append", default=[])
    ap.add_argument("--reuse-vae", action="store_true")
    ap.add_argument("--skip-gan-train", action="store_true")
    args = ap.parse_args()
    common = [f"out_dir={args.out}", f"data.count={args.count}", f"data.cache_dir={args.cache_dir}",
              "masks.kind=square", "masks.params={size: 32, margin: 16}", f"train.time_budget_s={args.seconds}",
              "train.epochs=1000", "train.device=cpu", "train.sample_every_epoch=false", "train.val_images=200"]
    runs = {}
    for name, cfg_file, extra, skip in (
        ("vae", "vae-faces64.yaml", [], args.reuse_vae),
        (args.gan_name, "gan-faces64.yaml", args.gan_set, args.skip_gan_train),
    ):
        cfg = load_config(ROOT / "configs" / cfg_file, [f"name={name}", *common, *extra])
        if not skip:
            res = train(cfg, device="cpu")
            runs[name] = {"steps": res.step, "epochs": res.epoch, "seconds": round(res.seconds, 1)}
        runs.setdefault(name, {})["dir"] = str(cfg.run_dir)
    data = load_cache(cfg.data, verbose=False)
    methods = {}
    for name, info in runs.items():
        model, _ = load_model(Path(info["dir"]) / "checkpoints" / "last.pt", "cpu")
        info["parameters"] = model.num_parameters()
        methods[name] = (lambda mdl: (lambda x, m: mdl.fill(x, m)))(model)
    results = evaluate_methods(methods, data, MASKS, n=len(data.split("test")), seed=1234)
    table = {name: {k: r.mean(k) for k in METRICS} for name, r in results.items()}
    print(f"{'method':10s} {'params':>10s} {'steps':>6s} " + " ".join(f"{k:>10s}" for k in METRICS))
    for name, row in table.items():
        info = runs[name]
        print(f"{name:10s} {info['parameters']:>10,} {info.get('steps', '-')!s:>6s} "
              + " ".join(f"{row[k]:10.4f}" for k in METRICS))
    atomic_write_json(Path(args.out) / f"{args.gan_name}_vs_vae.json", {"runs": runs, "table": table})


if __name__ == "__main__":
    main()  # threads: torch's default, or OMP_NUM_THREADS
