"""unet-faces64 training speed on the CPU against the preset as it was before issue 25 (its config and its
unet.py's prior, e.g. main at dc0d1f9), steps/s in one process, alternating; optionally the fill quality of
both after the same number of steps.

    git show dc0d1f9:src/genfill/models/unet.py > /tmp/old_unet.py
    git show dc0d1f9:configs/unet-faces64.yaml > /tmp/old_preset.yaml
    OMP_NUM_THREADS=2 python benchmarks/train_speed.py --old /tmp/old_unet.py --old-config /tmp/old_preset.yaml \
        [--steps N] [--profile] [--quality DIR [--quality-steps 300] [--seeds 0 1]]

Speed: four models train on the same batches (32 synthetic smooth images under mixed masks, each config's
optimiser settings), one step of each in turn, so all see the same machine load: the old preset with the
old prior (the baseline), the old preset's net with the current prior, the current preset (`--config`), and
the current preset on train.fast (channels_last). The wall time and this process's CPU time of every step
are recorded; on a shared machine the CPU-time ratio is the fairer one. The losses after the same steps are
printed too, but only the first two rows train the same net (equal loss = equal prior); the nets' quality is
what `--quality` measures.

Profile (`--profile`): each preset's step split into data, prior, network forward, loss, backward and
optimiser (CPU ms), and its network's time by resolution and op type.

Quality (`--quality DIR`): the old and the current preset each train `--quality-steps` steps per seed on
faces64 (the demo's budget is ~300 steps of 32; one thread, `--quality-threads`) into DIR/old-s<seed> and DIR/new-s<seed>, then each is
evaluated on faces64 test (`--eval-n` images, mask seed 1234, thin/medium/thick/square, no FID): PSNR and
LPIPS per kind. Runs and evaluations already in DIR are reused, so an interrupted run continues. Equal
quality is judged against the run-to-run noise measured here: the spread between the seeds of one preset.
Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import importlib.util
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from genfill.config import EVAL_SEED
from genfill.evaljob import evaluate_specs, load_eval
from genfill.masks import fixed_masks
from genfill.io import atomic_write_json, atomic_write_text
from genfill.loadconfig import load_config
from genfill.models import build_model
from genfill.train import prepare, train, train_step
from genfill.typed import read_yaml

ROOT = Path(__file__).resolve().parents[1]
KINDS = ["thin", "medium", "thick", "square"]


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


def net_label(model_cfg: dict) -> str:
    return f"widths {model_cfg['widths']}, unshuffle {model_cfg.get('unshuffle', 1)}"


def speed(args, old_cfg_path: str) -> dict:
    """Alternating training steps of the four models (module docstring); the per-model medians."""
    old_cfg, cfg = load_config(old_cfg_path), load_config(args.config)
    old_model, new_model = read_yaml(old_cfg_path)["model"], read_yaml(args.config)["model"]
    torch.manual_seed(0)
    old_net = build_model(old_model, old_cfg.data.size, 3)
    torch.manual_seed(0)
    new_net = build_model(new_model, cfg.data.size, 3)
    baseline, old_new_prior = old_net, copy.deepcopy(old_net)
    baseline.base_fill = old_base_fill(Path(args.old))(baseline)
    dev = torch.device("cpu")
    rows = {"old preset, old prior (baseline)": (baseline, old_cfg.train, False),
            "old preset's net, new prior": (old_new_prior, old_cfg.train, False),
            f"new preset ({net_label(new_model)})": (new_net, cfg.train, False),
            # train.fast on the CPU: channels_last activations and weights (train.amp off: no bf16)
            "new preset, train.fast (channels_last)": (copy.deepcopy(new_net), cfg.train, True)}
    runs = {}
    for name, (model, tc, is_fast) in rows.items():
        model.train()
        model, forward, opt, opt_d = prepare(model, tc, dev, is_fast)
        runs[name] = {"model": model, "forward": forward, "opt": opt, "opt_d": opt_d, "times": [], "cpu": [],
                      "losses": [], "fast": is_fast, "clip": tc.grad_clip}
    batch, size = cfg.train.batch_size, cfg.data.size
    g = torch.Generator().manual_seed(0)
    for step in range(args.steps + 1):
        x = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
        x = torch.nn.functional.avg_pool2d(x, 5, 1, 2)  # smooth images, so the prior has something to continue
        m = fixed_masks("mixed", batch, size, size, seed=step)
        for r in runs.values():
            t, c = time.perf_counter(), time.process_time()
            xi = x.contiguous(memory_format=torch.channels_last) if r["fast"] else x
            loss, _ = train_step(r["model"], r["forward"], r["opt"], r["opt_d"], xi, m, 1.0, False, r["clip"])
            loss = float(loss)
            if step:  # the first step warms up allocators and TorchScript
                r["times"].append(time.perf_counter() - t)
                r["cpu"].append(time.process_time() - c)
            r["losses"].append(loss)
    out = {}
    for name, r in runs.items():
        # CPU seconds of this process per step: what a quiet machine's wall time would be with its threads busy
        out[name] = {"steps_per_s": 1 / statistics.median(r["times"]),
                     "steps_per_cpu_s": 1 / statistics.median(r["cpu"]), "final_loss": r["losses"][-1],
                     "mean_loss_last5": statistics.mean(r["losses"][-5:]),
                     "parameters": sum(p.numel() for p in r["model"].generator_parameters())}
    return out


def profile(config: str, old_unet: str | None, steps: int = 8) -> dict:
    """Where a training step of `config`'s net goes, in CPU ms per batch (medians over `steps`): drawing the
    batch and masks, the prior, the network forward, the loss, backward, the clipped Adam step; and the
    network's forward + backward split by the resolution the ops ran at and by op type (torch.profiler,
    self time). `old_unet` swaps in that module's prior (the baseline's)."""
    from collections import Counter

    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cfg = load_config(config)
    torch.manual_seed(0)
    model = build_model(read_yaml(config)["model"], cfg.data.size, 3).train()
    if old_unet:
        model.base_fill = old_base_fill(Path(old_unet))(model)
    model, _, opt, _ = prepare(model, cfg.train, torch.device("cpu"), False)
    batch, size, g = cfg.train.batch_size, cfg.data.size, torch.Generator().manual_seed(0)
    phases: dict[str, list[float]] = {k: [] for k in ("data + masks", "prior", "network forward", "loss",
                                                        "backward", "optimiser")}
    for step in range(steps + 2):
        t = [time.process_time()]
        x = torch.nn.functional.avg_pool2d(torch.rand(batch, 3, size, size, generator=g) * 2 - 1, 5, 1, 2)
        m = fixed_masks("mixed", batch, size, size, seed=step)
        t.append(time.process_time())
        opt.zero_grad(set_to_none=True)
        base = model.base_fill(x, m)
        t.append(time.process_time())
        out = model.net(torch.cat([x * (1 - m), m, base], 1))
        pred = (base + m * out).clamp(-1, 1)
        t.append(time.process_time())
        loss = -10 * torch.log10(((pred - x) ** 2 * m).flatten(1).sum(1) / (3 * m.flatten(1).sum(1)) + 1e-10).mean()
        t.append(time.process_time())
        loss.backward()
        t.append(time.process_time())
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()
        t.append(time.process_time())
        if step >= 2:  # warm-up
            for k, a, b in zip(phases, t, t[1:]):
                phases[k].append(1000 * (b - a))
    x7 = torch.randn(batch, 7, size, size)
    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(2):
            model.net(x7).square().mean().backward()
    by_res, by_op = Counter(), Counter()
    for e in prof.key_averages(group_by_input_shape=True):
        res = max((s[-1] for s in e.input_shapes if isinstance(s, list) and len(s) == 4), default=0)
        ms = e.self_cpu_time_total / 2e3
        by_res[res if res >= 4 else 0] += ms
        by_op["convolution" if "conv" in e.key else "group norm" if "group_norm" in e.key
              else "SiLU" if "silu" in e.key else "other"] += ms
    total = sum(by_res.values())
    return {"phases_cpu_ms": {k: statistics.median(v) for k, v in phases.items()},
            "network_share_by_resolution": {f"{k} px" if k else "other": v / total
                                            for k, v in sorted(by_res.items(), reverse=True)},
            "network_share_by_op": {k: v / total for k, v in by_op.most_common()}}


def quality(args, old_cfg_path: str) -> dict:
    """Train (or reuse) DIR/{old,new}-s<seed> for --quality-steps steps and score each on faces64 test."""
    qdir = Path(args.quality)
    out: dict = {"steps": args.quality_steps, "seeds": args.seeds, "n": args.eval_n, "mask_seed": EVAL_SEED,
                 "runs": {}}
    for seed in args.seeds:
        for label, path in (("old", old_cfg_path), ("new", args.config)):
            name = f"{label}-s{seed}"
            cfg = load_config(path, [f"name={name}", f"out_dir={qdir}", f"train.max_steps={args.quality_steps}",
                                     f"train.seed={seed}"])
            if not (cfg.run_dir / "checkpoints" / "last.pt").is_file():
                t = time.perf_counter()
                train(cfg, verbose=False)
                print(f"trained {name} in {time.perf_counter() - t:.0f} s", flush=True)
            ev = cfg.run_dir / "eval"
            if not (ev / "eval.json").is_file():
                evaluate_specs([str(cfg.run_dir)], ev, masks=KINDS, n=args.eval_n, seed=EVAL_SEED, fid=False,
                               verbose=False, report=False)
            doc, _ = load_eval(ev)
            (summary,) = [e["summary"]["mask"] for e in doc["methods"].values()]
            out["runs"][name] = {k: {"psnr": summary[k]["psnr"], "lpips": summary[k]["lpips"]} for k in KINDS}
    verdict = {}
    for k in KINDS:
        for metric in ("psnr", "lpips"):
            vals = {label: [out["runs"][f"{label}-s{s}"][k][metric] for s in args.seeds] for label in ("old", "new")}
            noise = max(max(v) - min(v) for v in vals.values())  # seed-to-seed spread of either preset
            diff = statistics.mean(vals["new"]) - statistics.mean(vals["old"])
            better = diff >= 0 if metric == "psnr" else diff <= 0
            verdict[f"{k} {metric}"] = {"old_mean": statistics.mean(vals["old"]),
                                        "new_mean": statistics.mean(vals["new"]), "new_minus_old": diff,
                                        "seed_spread": noise, "equal_or_better": better or abs(diff) <= noise}
    out["verdict"] = verdict
    return out


def markdown(doc: dict) -> str:
    sp = doc["speed"]
    base = next(iter(sp))
    md = [f"# unet-faces64 training on the CPU ({doc['date']}, torch {doc['torch']}, {doc['threads']} threads, "
          f"batch {doc['batch']}, load average {doc['load_average']} when it started)", "", f"`{doc['command']}`", "",
          "| model | parameters | steps/s wall (median) | steps per CPU second (median) | wall speed-up | CPU-time speed-up | loss (mean of the last 5) |",
          "|---|---|---|---|---|---|---|",
          *[f"| {k} | {v['parameters']:,} | {v['steps_per_s']:.3f} | {v['steps_per_cpu_s']:.3f} | "
            f"{doc['speedup'][k]:.2f}x | {doc['speedup_cpu_time'][k]:.2f}x | {v['mean_loss_last5']:.4f} |"
            for k, v in sp.items()], "",
          f"Speed-ups are over `{base}`; the losses of rows 3-4 come from another net and say nothing about its "
          "quality (the table below does).", ""]
    if doc.get("profile"):
        pr = doc["profile"]
        names = list(pr)
        phases = list(pr[names[0]]["phases_cpu_ms"])
        md += ["## Where a step goes (CPU ms per batch, medians; the network's forward + backward by resolution "
               "and op, torch.profiler self time)", "", "| phase | " + " | ".join(names) + " |",
               "|---|" + "---|" * len(names),
               *[f"| {ph} | " + " | ".join(f"{pr[n]['phases_cpu_ms'][ph]:.0f}" for n in names) + " |" for ph in phases],
               "| total | " + " | ".join(f"{sum(pr[n]['phases_cpu_ms'].values()):.0f}" for n in names) + " |", "",
               *[f"- {n}: network time by resolution " + ", ".join(f"{k} {v:.0%}" for k, v in
                                                                  pr[n]["network_share_by_resolution"].items())
                 + "; by op " + ", ".join(f"{k} {v:.0%}" for k, v in pr[n]["network_share_by_op"].items())
                 for n in names], ""]
    q = doc.get("quality")
    if q:
        md += [f"## Quality after the same {q['steps']} steps (faces64 test, n={q['n']}, mask seed {q['mask_seed']}, "
               f"seeds {q['seeds']})", "",
               "| run | " + " | ".join(f"{k} PSNR | {k} LPIPS" for k in KINDS) + " |",
               "|---|" + "---|---|" * len(KINDS),
               *[f"| {name} | " + " | ".join(f"{r[k]['psnr']:.2f} | {r[k]['lpips']:.4f}" for k in KINDS) + " |"
                 for name, r in q["runs"].items()], "",
               "| kind, metric | old mean | new mean | new - old | seed spread (max of the two presets) | equal or better |",
               "|---|---|---|---|---|---|",
               *[f"| {k} | {v['old_mean']:.4f} | {v['new_mean']:.4f} | {v['new_minus_old']:+.4f} | "
                 f"{v['seed_spread']:.4f} | {'yes' if v['equal_or_better'] else 'NO'} |"
                 for k, v in q["verdict"].items()], "",
               "Equal or better: the new preset's mean over seeds is better, or worse by no more than the spread "
               "(max - min) between the seeds of one preset, the larger of the two presets' (PSNR higher is better, LPIPS lower).", ""]
    return "\n".join(md)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="the older unet.py whose harmonic_fill/biharmonic_fill to compare")
    ap.add_argument("--old-config", help="the preset before issue 25 (default: --config, the same net)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--config", default=str(ROOT / "configs" / "unet-faces64.yaml"))
    ap.add_argument("--quality", help="folder for the quality runs (trained and evaluated where missing)")
    ap.add_argument("--quality-steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--eval-n", type=int, default=500)
    ap.add_argument("--profile", action="store_true", help="also split a step of each preset into its phases")
    ap.add_argument("--quality-threads", type=int, default=1, help="torch threads of the (untimed) quality runs")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_speed"))
    args = ap.parse_args(argv)
    old_cfg_path = args.old_config or args.config
    doc = {"command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
           "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "batch": load_config(args.config).train.batch_size,
           "load_average": round(os.getloadavg()[0], 2), "steps": args.steps,
           "note": "alternating steps in one process; the machine may be shared: read the ratios"}
    if args.profile:
        doc["profile"] = {"old preset, old prior": profile(old_cfg_path, args.old),
                          "new preset": profile(args.config, None)}
    doc["speed"] = speed(args, old_cfg_path)
    base = next(iter(doc["speed"].values()))
    doc["speedup"] = {k: v["steps_per_s"] / base["steps_per_s"] for k, v in doc["speed"].items()}
    doc["speedup_cpu_time"] = {k: v["steps_per_cpu_s"] / base["steps_per_cpu_s"] for k, v in doc["speed"].items()}
    doc["load_average_after_speed"] = round(os.getloadavg()[0], 2)
    write(doc, Path(args.out))  # the speed figures now: the quality runs take many minutes
    if args.quality:
        # Untimed: one thread, which on a shared machine trains faster than two (benchmarks/results/threads.md)
        torch.set_num_threads(args.quality_threads)
        doc["quality"] = quality(args, old_cfg_path)
        write(doc, Path(args.out))


def write(doc: dict, out: Path) -> None:
    atomic_write_json(out.with_suffix(".json"), doc)
    md = markdown(doc)
    atomic_write_text(out.with_suffix(".md"), md)
    print(md, flush=True)


if __name__ == "__main__":
    main()
