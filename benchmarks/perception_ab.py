"""Perception A/B: trained runs (a sampler's sample and mean fills, a unet's mean fill, any family) next to the
classical peers on both axes, per mask kind, on the same held-out faces under the same holes.

Distortion: PSNR, SSIM. Perception: LPIPS (AlexNet), FID and KID of the fills against the originals, per
mask kind, with a bootstrap spread over test images (the same resampled images for fills and originals, B
draws: the std and the 5-95 % range). Plural: diversity (mean pairwise LPIPS of K fills) and calibration at
K (coverage of the central 90 % interval of the K fills, pooled over hole values; Pearson r between the
per-pixel spread and the default fill's absolute error). Inception costs ~1 s per image on one busy CPU
core, so FID can run on fewer images (--fid-n) and kinds (--fid-kinds) than the rest.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/perception_ab.py \
        --run sampler=runs/sampler-faces64 --run unet=runs/unet-faces64 --peers telea,ns,biharmonic \
        -n 1000 --fid-n 1000 --k 8 --out benchmarks/results/perception_ab

A sampler run gives two methods: NAME (its default fill, one seeded sample) and "NAME mean" (mean=True).
Writes OUT.json and OUT.md."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from genfill.config import EVAL_MASKS, EVAL_SEED, DataConfig
from genfill.data.cache import load_cache
from genfill.evaluate import evaluate_methods
from genfill.metrics.fid_eval import fid_kid
from genfill.metrics.fid import InceptionFeatures, fid_kid_bootstrap
from genfill.models import GenModel, load_model
from genfill.peers import PEERS

SQUARE = {"size": 32, "margin": 16}  # the issue's 32 px square hole on a 64 px face (genfill eval's default)


def methods_from(runs: list[str], peers: list[str]) -> tuple[dict, dict]:
    """name -> fill (a GenModel or a function), and name -> what it is."""
    methods, about = {}, {}
    for spec in runs:
        name, _, path = spec.partition("=")
        model, ckpt = load_model(path)
        methods[name] = model
        about[name] = {"run": path, "kind": model.kind, "steps": ckpt.get("step"), "fill": "default fill"}
        if model.kind == "sampler":
            methods[f"{name} mean"] = lambda x, m, model=model: model.fill(x, m, mean=True)
            about[f"{name} mean"] = {**about[name], "fill": "mean=True"}
    for p in peers:
        methods[p] = PEERS[p]
        about[p] = {"peer": p}
    return methods, about


def bootstrap_fid(fake: torch.Tensor, real: torch.Tensor, draws: int, seed: int = 0) -> dict:
    """FID and KID of paired features (row i of both = test image i), with a bootstrap over images when
    `draws` >= 2: genfill.metrics.fid.fid_kid_bootstrap (fid/kid, *_std, *_lo/*_hi), else the point values."""
    out = fid_kid_bootstrap(fake, real, draws, seed) if draws >= 2 else fid_kid(fake, real)
    return {**out, "n": len(real), "draws": draws}


@torch.no_grad()
def fid_per_kind(methods: dict, data, kinds: dict, n: int, seed: int, draws: int) -> tuple[dict, float]:
    """{method: {kind: bootstrap_fid}} on the first n test images under the fixed holes, and the seconds."""
    t0 = time.time()
    inc = InceptionFeatures(device="cpu")
    torch.manual_seed(seed)  # the samplers' default fills: the same seeded samples as the other metrics
    feats: dict[str, dict[str, list]] = {name: {} for name in methods}
    real: dict[int, torch.Tensor] = {}
    for kind, pos, x, m in data.heldout_batches(kinds, n, seed, "test", 50):
        todo = [i for i, p in enumerate(pos.tolist()) if p not in real]
        if todo:
            for i, f in zip(todo, inc(x[todo])):
                real[int(pos[i])] = f
        for name, fill in methods.items():
            fn = fill.fill if isinstance(fill, GenModel) else fill
            feats[name].setdefault(kind, []).append(inc(fn(x, m)))
    r = torch.stack([real[p] for p in sorted(real)])
    out = {name: {k: bootstrap_fid(torch.cat(fs), r, draws) for k, fs in by.items()} for name, by in feats.items()}
    return out, time.time() - t0


def summarise(res: dict, fid: dict, kinds: list[str]) -> dict:
    rows = {}
    for name, r in res.items():
        s = r.summary()["mask"]
        plural = r.extras.get("plural", {}).get("by_mask", {})
        rows[name] = {}
        for k in kinds:
            row = {m: s[k].get(m) for m in ("psnr", "ssim", "lpips", "diversity") if s[k].get(m) is not None}
            if k in plural:
                row.update(coverage90=plural[k]["coverage90"], unc_corr=plural[k]["unc_corr"])
            if name in fid and k in fid[name]:
                row.update({key: v for key, v in fid[name][k].items() if key.startswith(("fid", "kid"))})
            rows[name][k] = row
    return rows


def fmt(v, spec=".2f") -> str:
    return "-" if v is None or (isinstance(v, float) and v != v) else format(v, spec)


def markdown(doc: dict) -> str:
    kinds, rows = doc["protocol"]["kinds"], doc["rows"]
    out = [f"# Perception A/B (faces64 test, mask seed {doc['protocol']['seed']})", "",
           f"Command: `{doc['command']}`", "", doc.get("note", ""), "",
           f"n = {doc['protocol']['n']} per kind for PSNR/SSIM/LPIPS/diversity/calibration (K = {doc['protocol']['k']});"
           f" FID/KID on the first {doc['protocol']['fid_n']} of them, kinds {', '.join(doc['protocol']['fid_kinds']) or 'none'}"
           f" ({doc['protocol']['boot']} bootstrap draws over images; +- is their std). Inception time "
           f"{doc['fid_seconds']:.0f} s. Machine: 2 CPU cores shared with other jobs.", ""]
    for k in kinds:
        out += [f"## {k}", "", "| method | PSNR dB | SSIM | LPIPS | FID | KID x1000 | diversity | coverage90 | r(spread, err) |",
                "|---|---|---|---|---|---|---|---|---|"]
        for name, by in rows.items():
            r = by[k]
            fid = f"{fmt(r.get('fid'))} +- {fmt(r.get('fid_std'))}" if r.get("fid") is not None else "-"
            kid = (f"{fmt(1000 * r['kid'])} +- {fmt(1000 * r['kid_std'])}" if r.get("kid") is not None
                   and r.get("kid_std") is not None else "-")
            out.append(f"| {name} | {fmt(r.get('psnr'))} | {fmt(r.get('ssim'), '.4f')} | {fmt(r.get('lpips'), '.4f')} | "
                       f"{fid} | {kid} | {fmt(r.get('diversity'), '.4f')} | {fmt(r.get('coverage90'), '.3f')} | "
                       f"{fmt(r.get('unc_corr'), '.3f')} |")
        out.append("")
    return "\n".join(out + doc.get("verdict", []))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", default=[], metavar="NAME=PATH", help="a run, checkpoint or export")
    ap.add_argument("--peers", default="telea,ns,biharmonic")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--kinds", default=",".join(EVAL_MASKS))
    ap.add_argument("--fid-n", type=int, default=None, help="images per kind for FID/KID (default n)")
    ap.add_argument("--fid-kinds", default=None, help="kinds for FID/KID (default --kinds; '' for none)")
    ap.add_argument("--boot", type=int, default=50, help="bootstrap draws for the FID/KID spread")
    ap.add_argument("--k", type=int, default=8, help="fills per image for diversity and calibration")
    ap.add_argument("--count", type=int, default=20000, help="faces64 data.count the runs were trained with")
    ap.add_argument("--include", action="append", default=[], metavar="JSON",
                    help="rows of an earlier run of this script under the same protocol (e.g. the peers, run once)")
    ap.add_argument("--note", default="")
    ap.add_argument("--out", default="benchmarks/results/perception_ab")
    a = ap.parse_args(argv)
    kinds = [k for k in a.kinds.split(",") if k]
    fid_kinds = kinds if a.fid_kinds is None else [k for k in a.fid_kinds.split(",") if k]
    masks = {k: (SQUARE if k == "square" else {}) for k in kinds}
    data = load_cache(DataConfig(name="faces64", size=64, count=a.count), verbose=False)
    methods, about = methods_from(a.run, [p for p in a.peers.split(",") if p])
    t0 = time.time()
    res = evaluate_methods(methods, data, masks, n=a.n, seed=EVAL_SEED, lpips=True, fid=False, samples=a.k,
                           verbose=True)
    metric_seconds = time.time() - t0
    fid, fid_seconds = ({}, 0.0) if not fid_kinds else fid_per_kind(
        methods, data, {k: masks[k] for k in fid_kinds}, a.fid_n or a.n, EVAL_SEED, a.boot)
    import sys

    doc = {"command": " ".join(["python benchmarks/perception_ab.py", *sys.argv[1:]]) if argv is None else str(argv),
           "note": a.note,
           "protocol": {"data": "faces64 test", "count": a.count, "n": a.n, "seed": EVAL_SEED, "kinds": kinds,
                        "square": SQUARE, "k": a.k, "fid_n": a.fid_n or a.n, "fid_kinds": fid_kinds, "boot": a.boot},
           "methods": about, "metric_seconds": round(metric_seconds, 1), "fid_seconds": round(fid_seconds, 1),
           "rows": summarise(res, fid, kinds)}
    for path in a.include:
        other = json.loads(Path(path).read_text())
        if other["protocol"] != doc["protocol"]:
            raise SystemExit(f"{path}: another protocol ({other['protocol']}), not merged")
        doc["rows"].update(other["rows"])
        doc["methods"].update(other["methods"])
        doc["fid_seconds"] += other["fid_seconds"]
        doc["metric_seconds"] += other["metric_seconds"]
        doc["command"] += f"  (+ rows of {path}: {other['command']})"
    write(doc, Path(a.out))
    print(markdown(doc))


def write(doc: dict, out: Path) -> None:
    """OUT.json and OUT.md of an A/B document."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    out.with_suffix(".md").write_text(markdown(doc))


if __name__ == "__main__":
    main()
