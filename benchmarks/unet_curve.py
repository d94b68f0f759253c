"""Step-based learning curve of a preset (default unet-faces64) against the classical peers.

Trains ONE run, raising train.max_steps and resuming exactly (same image order), and evaluates after each
step count on faces64 test (n images, mask seed 1234, thin/medium/thick/square, LPIPS on). Measures in
optimiser steps, not seconds, because the CPU is shared; run it at OMP_NUM_THREADS=1, one job at a time.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/unet_curve.py --steps 100,200,400,800 -n 200

Writes benchmarks/results/unet_curve.json and unet_curve.md (per-kind PSNR/LPIPS, gap to biharmonic)."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from genfill.evaljob import evaluate_specs

KINDS = ["thin", "medium", "thick", "square"]
PEERS = ["biharmonic", "telea"]


def per_kind(eval_json: Path, method: str | None = None) -> dict:
    doc = json.loads(eval_json.read_text())
    entry = doc["methods"][method] if method else next(iter(doc["methods"].values()))
    return {k: {"psnr": entry["summary"]["mask"][k].get("psnr"), "lpips": entry["summary"]["mask"][k].get("lpips")}
            for k in KINDS}


def train_to(config: str, run: str, steps: int, resume: bool, extra: list[str]) -> None:
    cmd = [sys.executable, "-m", "genfill.cli", "train", "-c", config, "--quiet", "--set", f"name={run}",
           "--set", f"train.max_steps={steps}", "--set", "train.time_budget_s=null", *sum([["--set", s] for s in extra], [])]
    subprocess.run(cmd + (["--resume"] if resume else []), check=True)


def table(rows: list[dict]) -> str:
    head = "| method | steps | " + " | ".join(f"{k} PSNR (vs bih) | {k} LPIPS" for k in KINDS) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(KINDS))]
    bih = next(r for r in rows if r["method"] == "biharmonic")["kinds"]
    for r in rows:
        cells = []
        for k in KINDS:
            p, l = r["kinds"][k]["psnr"], r["kinds"][k]["lpips"]
            cells += [f"{p:.2f} ({p - bih[k]['psnr']:+.2f})", f"{l:.4f}" if l is not None else "-"]
        lines.append(f"| {r['method']} | {r.get('steps', '-')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="unet-faces64")
    ap.add_argument("--run", default="unet-curve", help="run name (runs/<run>)")
    ap.add_argument("--steps", default="100,200,400,800")
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--set", action="append", default=[], help="extra config override, e.g. model.smooth_iters=150")
    ap.add_argument("--out", default="benchmarks/results/unet_curve")
    a = ap.parse_args()
    out = Path(a.out)
    rows = []
    for peer in PEERS:
        ej = evaluate_specs([peer], out_dir=Path("runs") / f"curve-eval-{peer}", masks=KINDS, n=a.n, verbose=False)
        rows.append({"method": peer, "kinds": per_kind(ej)})
    for i, n_steps in enumerate(int(s) for s in a.steps.split(",")):
        train_to(a.config, a.run, n_steps, resume=i > 0, extra=a.set)
        # last.pt, not the run's best.pt: the point is the model after n_steps, whatever validation said
        ej = evaluate_specs([str(Path("runs") / a.run / "checkpoints" / "last.pt")], out_dir=Path("runs") / a.run / f"eval-{n_steps}",
                            masks=KINDS, n=a.n, verbose=False)
        rows.append({"method": a.run, "steps": n_steps, "kinds": per_kind(ej)})
        doc = {"config": a.config, "overrides": a.set, "n": a.n, "mask_seed": 1234, "rows": rows}
        out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
        out.with_suffix(".md").write_text(table(rows))
        print(table(rows), flush=True)


if __name__ == "__main__":
    main()
