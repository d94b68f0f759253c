"""unet-faces64 training steps/s with the thin-plate prior of genfill.models.thinplate against an older
implementation of the same prior (another checkout's src/genfill/models/unet.py, e.g. main before issue 25),
in one process, alternating, on the CPU (OMP threads as set; the machine may be shared: read the ratio).

    OMP_NUM_THREADS=2 python benchmarks/train_speed.py --old /path/to/old/src/genfill/models/unet.py [--steps N]

Two copies of one freshly initialised unet-faces64 train on the same batches (32 faces under mixed masks, the
preset's optimiser settings): A with the old prior, B with the new one, one step of A then one of B, so both
see the same machine load. Both the step times and the losses after the same number of steps are recorded
(equal quality: the two priors compute the same fill, up to fp32 rounding). Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import importlib.util
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from genfill.loadconfig import load_config
from genfill.masks import fixed_masks
from genfill.io import atomic_write_json, atomic_write_text
from genfill.models import build_model
from genfill.train import prepare, train_step
from genfill.typed import read_yaml

ROOT = Path(__file__).resolve().parents[1]


def old_base_fill(path: Path):
    """The base_fill of the unet module at `path`, bound to a model's config."""
    spec = importlib.util.spec_from_file_location("old_unet", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_unet"] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)

    def bind(model):
        c = model.cfg

        def base_fill(x, m):
            if c.prior == "harmonic":
                return mod.harmonic_fill(x, m, c.prior_iters).to(x.dtype)
            return mod.biharmonic_fill(x, m, c.prior_iters, c.smooth_iters, solver=c.solver).to(x.dtype)

        return base_fill

    return bind


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="the older unet.py whose harmonic_fill/biharmonic_fill to compare")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--config", default=str(ROOT / "configs" / "unet-faces64.yaml"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_speed"))
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    tc = cfg.train
    torch.manual_seed(0)
    base = build_model(read_yaml(args.config)["model"], cfg.data.size, 3)
    old, new, fast = copy.deepcopy(base), copy.deepcopy(base), copy.deepcopy(base)
    old.base_fill = old_base_fill(Path(args.old))(old)
    dev = torch.device("cpu")
    runs = {}
    # "fast": train.fast on the CPU (channels_last activations and weights; train.amp off: no bf16)
    for name, model, is_fast in (("old prior", old, False), ("new prior", new, False),
                                 ("new prior, train.fast (channels_last)", fast, True)):
        model.train()
        model, forward, opt, opt_d = prepare(model, tc, dev, is_fast)
        runs[name] = {"model": model, "forward": forward, "opt": opt, "opt_d": opt_d, "times": [], "cpu": [], "losses": [],
                      "fast": is_fast}
    g = torch.Generator().manual_seed(0)
    for step in range(args.steps + 1):
        x = torch.rand(tc.batch_size, 3, cfg.data.size, cfg.data.size, generator=g) * 2 - 1
        x = torch.nn.functional.avg_pool2d(x, 5, 1, 2)  # smooth images, so the prior has something to continue
        m = fixed_masks("mixed", tc.batch_size, cfg.data.size, cfg.data.size, seed=step)
        for name, r in runs.items():
            t, c = time.perf_counter(), time.process_time()
            xi = x.contiguous(memory_format=torch.channels_last) if r["fast"] else x
            loss, _ = train_step(r["model"], r["forward"], r["opt"], r["opt_d"], xi, m, 1.0, False, tc.grad_clip)
            loss = float(loss)
            if step:  # the first step warms up allocators and TorchScript
                r["times"].append(time.perf_counter() - t)
                r["cpu"].append(time.process_time() - c)
            r["losses"].append(loss)
    doc = {"command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
           "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "batch": tc.batch_size, "steps": args.steps,
           "note": "alternating steps in one process on a shared machine"}
    for name, r in runs.items():
        # CPU seconds of this process per step: what a quiet machine's wall time would be with its threads busy
        doc[name] = {"steps_per_s": 1 / statistics.median(r["times"]),
                     "steps_per_cpu_s": 1 / statistics.median(r["cpu"]), "final_loss": r["losses"][-1],
                     "mean_loss_last5": statistics.mean(r["losses"][-5:])}
    doc["speedup"] = {k: doc[k]["steps_per_s"] / doc["old prior"]["steps_per_s"] for k in runs}
    doc["speedup_cpu_time"] = {k: doc[k]["steps_per_cpu_s"] / doc["old prior"]["steps_per_cpu_s"] for k in runs}
    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), doc)
    md = [f"# unet-faces64 training on the CPU ({doc['date']}, torch {doc['torch']}, {doc['threads']} threads, "
          f"batch {doc['batch']}, shared machine)", "", f"`{doc['command']}`", "",
          "| prior | steps/s wall (median) | steps per CPU second (median) | loss after the same steps (mean of the last 5) |",
          "|---|---|---|---|",
          *[f"| {k} | {doc[k]['steps_per_s']:.3f} | {doc[k]['steps_per_cpu_s']:.3f} | {doc[k]['mean_loss_last5']:.4f} |"
            for k in runs], "",
          "over the old prior, wall: " + ", ".join(f"{k} {v:.2f}x" for k, v in doc["speedup"].items()),
          "", "over the old prior, CPU time (the fairer figure on a shared machine): "
          + ", ".join(f"{k} {v:.2f}x" for k, v in doc["speedup_cpu_time"].items()), ""]
    atomic_write_text(out.with_suffix(".md"), "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
