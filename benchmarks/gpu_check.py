"""The GPU check behind `benchmarks/gpu_check.sh`: one prepared run for a GPU lent for minutes.

    python benchmarks/gpu_check.py OUT [--smoke] [--train-seconds S] [--n N]

Steps, each a subprocess whose output goes to OUT/gpu_check.log, timed and recorded in OUT/gpu_check.json
(a failed step is recorded, and the steps that do not need it still run):

1. env: torch, CUDA, the GPU, this checkout's git commit.
2. data: the built-in faces cache (drawn once, shared by the runs; cheap next to training).
3. train: `unet-faces64-gpu`, and `sampler-faces64-gpu` when configs/ has it, each for its own time budget
   (5 minutes); two presets train at the same time on the one GPU, so the check stays within 9 minutes.
4. eval: every trained run next to the biharmonic peer, one protocol (n = 500 test faces under thin, medium,
   thick and square holes, mask seed 1234): PSNR and LPIPS per kind.
5. throughput: `benchmarks/throughput.py --device cuda` for unet and gan (the GPU presets, 64x64), real-loop
   column included.

`--smoke`: the same steps on the CPU at tiny sizes (a few faces, 32x32, two-level nets, seconds of training,
8 test faces, throughput --quick): what `make test` runs (tests/benchmarks/test_gpu_check.py) to keep this command working.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
PRESETS = ("unet-faces64-gpu", "sampler-faces64-gpu")  # the sampler's once its config exists
MASKS = "thin,medium,thick,square"
BUDGET_S = 540  # 9 minutes of one H100


def presets() -> list[str]:
    return [p for p in PRESETS if (CONFIGS / f"{p}.yaml").is_file()]


def smoke_overrides(preset: str) -> list[str]:
    """--set overrides that shrink a preset to seconds on a CPU (model keys only where the preset has them)."""
    model = yaml.safe_load((CONFIGS / f"{preset}.yaml").read_text()).get("model", {})
    sets = ["data.count=64", "data.size=32", "train.max_steps=3", "train.batch_size=8", "train.val_images=8",
            "train.time_budget_s=30", "train.device=cpu", "train.fast=false", "train.compile=false",
            "train.amp=false", "train.sample_every_epoch=false"]
    small = {"widths": "[8,16]", "blocks": 1, "context_blocks": 0, "w_perceptual": 0.0, "smooth_iters": 10}
    sets += [f"model.{k}={v}" for k, v in small.items() if k in model]
    return sets


class Runner:
    """Runs the steps, logging their output and recording what each did."""

    def __init__(self, out: Path, env: dict[str, str]) -> None:
        self.out, self.env = out, env
        self.log = (out / "gpu_check.log").open("a")
        self.steps: list[dict] = []

    def say(self, msg: str) -> None:
        line = f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def start(self, name: str, cmd: list[str]) -> tuple[dict, subprocess.Popen]:
        self.say(f"{name}: {' '.join(shlex.quote(c) for c in cmd)}")
        step = {"name": name, "command": cmd, "start": time.monotonic()}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        return step, proc

    def finish(self, step: dict, proc: subprocess.Popen) -> bool:
        step["rc"] = proc.wait()
        step["seconds"] = round(time.monotonic() - step.pop("start"), 1)
        self.steps.append(step)
        self.say(f"{step['name']}: exit {step['rc']} after {step['seconds']} s")
        return step["rc"] == 0

    def run(self, name: str, cmd: list[str]) -> bool:
        return self.finish(*self.start(name, cmd))


def per_kind(eval_json: Path) -> dict:
    """{method: {kind: {psnr, lpips}}} from an eval.json (means over the images of each mask kind)."""
    doc = json.loads(eval_json.read_text())
    return {name: {k: {m: v.get(m) for m in ("psnr", "lpips")} for k, v in entry["summary"]["mask"].items()}
            for name, entry in doc["methods"].items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="folder for gpu_check.json, gpu_check.log, runs/, eval/, throughput.json")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: check the command end to end")
    ap.add_argument("--train-seconds", type=float, default=None, help="override each preset's time budget")
    ap.add_argument("-n", type=int, default=None, help="test faces per mask kind (default 500; smoke 8)")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    if args.smoke:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU, even where a GPU is present
    r = Runner(out, env)
    py = sys.executable
    device = "cpu" if args.smoke else "cuda"
    n = args.n or (8 if args.smoke else 500)
    result: dict = {"smoke": args.smoke, "device": device, "budget_s": BUDGET_S, "n": n, "masks": MASKS}

    # 1. env
    probe = ("import json, torch; c = torch.cuda.is_available(); print(json.dumps({'torch': torch.__version__, "
             "'cuda': torch.version.cuda, 'gpu': torch.cuda.get_device_name(0) if c else None, 'cuda_available': c}))")
    env_out = subprocess.run([py, "-c", probe], capture_output=True, text=True, env=env)
    result["env"] = json.loads(env_out.stdout) if env_out.returncode == 0 else {"error": env_out.stderr[-500:]}
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    result["env"]["commit"] = git.stdout.strip() or None
    r.say(f"env: {result['env']}")
    if not args.smoke and not result["env"].get("cuda_available"):
        r.say("no CUDA device: run with --smoke on a CPU")
        result["error"] = "no CUDA device"

    # 2. data, 3. train (concurrently), shared data cache under OUT
    names = presets()
    common = [f"out_dir={out / 'runs'}", f"data.cache_dir={out / 'data'}"]
    sets = {p: common + (smoke_overrides(p) if args.smoke else [f"train.device={device}"])
            + ([f"train.time_budget_s={args.train_seconds}"] if args.train_seconds else []) for p in names}
    data_cmd = [py, "-c", "import sys; from genfill.loadconfig import load_config; from genfill.data.cache import load_cache; "
                "load_cache(load_config(sys.argv[1], sys.argv[2:]).data)", str(CONFIGS / f"{names[0]}.yaml"),
                *[s for s in sets[names[0]] if s.startswith("data.")]]
    r.run("data", data_cmd)
    running = []
    for p in names:
        cmd = [py, "-m", "genfill.cli", "--quiet", "train", "-c", p]
        for s in sets[p]:
            cmd += ["--set", s]
        running.append(r.start(f"train {p}", cmd))
    trained = [p for p, (step, proc) in zip(names, running) if r.finish(step, proc)]
    runs = {}
    for p in trained:
        run_dir = out / "runs" / yaml.safe_load((CONFIGS / f"{p}.yaml").read_text())["name"]
        metrics = run_dir / "metrics.jsonl"
        lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()] if metrics.is_file() else []
        runs[p] = {"run": str(run_dir), "last_metrics": lines[-1] if lines else None, "logged_lines": len(lines)}
    result["train"] = runs

    # 4. eval: the runs next to biharmonic, one protocol
    if runs:
        cmd = [py, "-m", "genfill.cli", "--quiet", "eval", "--masks", MASKS, "-n", str(n), "--device", device,
               "-o", str(out / "eval")]
        for p in runs:
            cmd += ["-c", runs[p]["run"]]
        cmd += ["-c", "biharmonic"]
        if r.run("eval", cmd) and (out / "eval" / "eval.json").is_file():
            result["eval"] = per_kind(out / "eval" / "eval.json")

    # 5. throughput: unet and gan, the real loop included
    fams = ["unet-faces64", "gan-faces64"] if args.smoke else ["unet-faces64-gpu", "gan-faces64-gpu"]
    cmd = [py, str(ROOT / "benchmarks" / "throughput.py"), "--device", device, "--families", *fams,
           "--out", str(out / "throughput.json")] + (["--quick"] if args.smoke else ["--sizes", "64"])
    if r.run("throughput", cmd) and (out / "throughput.json").is_file():
        result["throughput"] = json.loads((out / "throughput.json").read_text())

    result["steps"] = r.steps
    result["seconds"] = round(time.monotonic() - t0, 1)
    result["within_budget"] = result["seconds"] <= BUDGET_S
    result["ok"] = all(s["rc"] == 0 for s in r.steps) and "error" not in result
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str))
    r.say(f"{'ok' if result['ok'] else 'FAILED'} in {result['seconds']} s -> {out / 'gpu_check.json'}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
