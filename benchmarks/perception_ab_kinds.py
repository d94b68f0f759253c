"""Perception A/B through genfill's own eval job, one mask kind at a time: every method on the same first n
faces64 test images under the same holes (mask seed 1234), both axes per kind (PSNR, SSIM; LPIPS, FID and KID
with a bootstrap spread over test images), diversity and calibration of K fills for the models that draw
several. Each kind's `eval.json` lands in OUT/eval_<kind>/ when that kind is done, and a kind already there is
read back, not re-run (a long run on a shared CPU can stop and resume); the peers' Inception features and
scores go to genfill's per-protocol cache, so `genfill eval` reuses them.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/perception_ab_kinds.py -c runs/sampler-faces64 \
        -c runs/unet-demo -c biharmonic -c patchmatch -c telea -n 1000 --samples 8 --boot 50 \
        --work /tmp/ab --out benchmarks/results/perception_ab_exemplar

Writes OUT.json and OUT.md (the kinds done so far)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from genfill.config import EVAL_MASKS
from genfill.evaljob import evaluate_specs, load_eval


def run_kind(specs: list[str], kind: str, n: int, samples: int, boot: int, work: Path) -> dict:
    path = work / f"eval_{kind}" / "eval.json"
    if not path.is_file():
        t0 = time.time()
        evaluate_specs(specs, path.parent, masks=kind, n=n, fid=True, samples=samples, fid_bootstrap=boot,
                       device="cpu", report=False, verbose=True)
        print(f"{kind}: {time.time() - t0:.0f} s", flush=True)
    doc, _ = load_eval(path)
    return doc


def rows_of(doc: dict, kind: str) -> dict:
    out = {}
    for name, e in doc["methods"].items():
        s = e["summary"]["mask"][kind]
        f = e.get("by_mask", {}).get(kind, {})
        p = e.get("plural", {}).get("by_mask", {}).get(kind, {})
        out[name] = {"kind": e["kind"], "psnr": s.get("psnr"), "ssim": s.get("ssim"), "lpips": s.get("lpips"),
                     "diversity": s.get("diversity"), "fid": f.get("fid"), "fid_std": f.get("fid_std"),
                     "kid": f.get("kid"), "kid_std": f.get("kid_std"), "coverage90": p.get("coverage90"),
                     "unc_corr": p.get("unc_corr"), "ms_per_image": e.get("ms_per_image")}
    return out


def fmt(v, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def markdown(doc: dict) -> str:
    out = [f"# Perception A/B, one mask kind at a time (faces64 test, n = {doc['n']}, mask seed {doc['seed']})", "",
           f"Command: `{doc['command']}`", "",
           f"FID/KID per kind on the same n images, +- the std over {doc['boot']} bootstrap draws of the test "
           f"images; diversity and calibration from K = {doc['samples']} fills per image (a sampler's; 0.70 is "
           "the ideal coverage of the 5-95 % interval of 8 fills). Machine: 2 CPU cores shared with other jobs.", ""]
    for kind, rows in doc["kinds"].items():
        out += [f"## {kind}", "", "| method | PSNR dB | SSIM | LPIPS | FID | KID x1000 | diversity | coverage90 | "
                "r(spread, err) |", "|---|---|---|---|---|---|---|---|---|"]
        for name, r in rows.items():
            fid = f"{fmt(r['fid'])} +- {fmt(r['fid_std'])}" if r["fid"] is not None else "-"
            kid = (f"{fmt(1000 * r['kid'])} +- {fmt(1000 * r['kid_std'])}" if r["kid"] is not None
                   and r["kid_std"] is not None else "-")
            out.append(f"| {name} ({r['kind']}) | {fmt(r['psnr'])} | {fmt(r['ssim'], '.4f')} | {fmt(r['lpips'], '.4f')}"
                       f" | {fid} | {kid} | {fmt(r['diversity'], '.4f')} | {fmt(r['coverage90'], '.3f')} | "
                       f"{fmt(r['unc_corr'], '.3f')} |")
        out.append("")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", action="append", required=True, metavar="RUN|PEER", help="a method (repeatable)")
    ap.add_argument("--kinds", default=",".join(EVAL_MASKS))
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--boot", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--work", default="runs/perception_ab", help="where each kind's eval.json goes")
    ap.add_argument("--out", default="benchmarks/results/perception_ab_exemplar")
    a = ap.parse_args(argv)
    if a.seed != 1234:
        raise SystemExit("the A/B's protocol is mask seed 1234 (genfill eval's default)")
    doc = {"command": " ".join(["python benchmarks/perception_ab_kinds.py", *(sys.argv[1:] if argv is None else argv)]),
           "n": a.n, "seed": a.seed, "samples": a.samples, "boot": a.boot, "methods": a.c, "kinds": {}}
    for kind in [k for k in a.kinds.split(",") if k]:
        doc["kinds"][kind] = rows_of(run_kind(a.c, kind, a.n, a.samples, a.boot, Path(a.work)), kind)
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
        out.with_suffix(".md").write_text(markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
