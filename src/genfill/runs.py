"""What every training loop shares (`genfill train`, `genfill pretrain`): the run folder (refusing another run's,
stale temp files swept, config.yaml, metrics.jsonl and its curves), whether a checkpoint can be resumed, the
random state a resumed run continues from, the learning-rate schedule, the step and time budget, and the
optimiser's set-up on the device."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from genfill.config import TrainConfig, save_config, to_dict
from genfill.errors import GenfillError
from genfill.io import atomic_write_text, make_dir, own_folder, remove_stale_temps, save_figure
from genfill.models import GenModel, saved_config

def plot_curves(run_dir: Path) -> None:
    """training-curves PNG from metrics.jsonl: every logged part, train and val."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir / "metrics.jsonl")
    keys = sorted({k for r in rows for k in r if k not in ("step", "epoch", "split", "time", "lr")
                   and all(isinstance(r.get(k, 0.0), (int, float)) for r in rows)})
    if not keys:
        return
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for split, style in (("train", "-"), ("val", "o-")):
            pts = [(r["step"], r[key]) for r in rows if r.get("split") == split and key in r]
            if pts:
                ax.plot(*zip(*pts), style, label=split, markersize=3)
        ax.set_title(key)
        ax.set_xlabel("step")
        if all(r[key] > 0 for r in rows if key in r) and key not in ("psnr",):
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, run_dir / "curves.png", dpi=90)


def read_metrics(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl; a line that is not a JSON object (a kill mid-write tears the last one)
    is skipped, not fatal."""
    rows = []
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return rows
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def check_finite(loss: torch.Tensor, step: int, kept: Path | None = None) -> None:
    if not torch.isfinite(loss):
        where = (f"the last good checkpoint, {kept}, is kept" if kept is not None and kept.is_file()
                 else "no checkpoint was written")
        raise GenfillError(f"loss became {loss.item()} at step {step}: lower train.lr or set train.grad_clip "
                           f"({where})")


def write_log(log, row: dict) -> None:
    """One metrics.jsonl row, flushed: a kill tears at most this line, which `read_metrics` skips."""
    log.write(json.dumps(row) + "\n")
    log.flush()


RESUME_KEYS = ("optim", "step", "epoch", "best_val", "rng", "torch_rng")


def check_resumable(ckpt: dict, cfg, model: GenModel, size: int, channels: int, keys=RESUME_KEYS) -> None:
    """The checkpoint must hold what resume restores (`keys`), for this model (cfg.model) and data shape."""
    path = ckpt["path"]
    for key in keys:
        if key not in ckpt:
            raise GenfillError(f"cannot resume from {path}: it lacks {key!r} (not a training checkpoint)")
    if ckpt["kind"] != cfg.model["kind"]:
        raise GenfillError(f"cannot resume: the checkpoint holds a {ckpt['kind']} model, the config a "
                           f"{cfg.model['kind']}")
    if (ckpt["image_size"], ckpt["channels"]) != (size, channels):
        raise GenfillError(f"cannot resume: the run trained on {ckpt['image_size']}px images with "
                           f"{ckpt['channels']} channel(s), the data now has {size}px and {channels} "
                           f"(data.size / data.channels changed)")
    now, saved = to_dict(model.cfg), saved_config(ckpt["kind"], ckpt["model_config"])
    changed = sorted(k for k in set(now) | set(saved) if now.get(k) != saved.get(k))
    if changed:
        k = changed[0]
        raise GenfillError(f"cannot resume: model.{k} is {now.get(k)!r} in the config but "
                           f"{saved.get(k)!r} in the checkpoint (changed keys: {', '.join(changed)}); "
                           f"use a new run name to train a different model")


def lr_factor(tc: TrainConfig, step: int, total_steps: int, time_frac: float = 0.0) -> float:
    """The learning-rate multiplier for optimiser step `step` (0-based) of `total_steps`: a linear warm-up
    over train.lr_warmup_steps (1/w, 2/w, ..., 1), times 1 (constant) or a cosine from 1 after the warm-up
    to 0 at the end of training; the end is `total_steps`, or the time budget if that comes first
    (`time_frac` = elapsed / train.time_budget_s)."""
    w = tc.lr_warmup_steps
    warm = min(1.0, (step + 1) / w) if w > 0 else 1.0
    if tc.schedule == "constant":
        return warm
    progress = max((step - w) / max(1, total_steps - w), time_frac)
    return warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def steps_per_epoch(tc: TrainConfig, n_train: int) -> int:
    """Optimiser steps in one epoch of `n_train` images (full global batches only; at least one)."""
    return max(1, n_train // tc.batch_size)


def total_steps(tc: TrainConfig, steps_per_epoch: int) -> int:
    """Optimiser steps the run will take when no time budget stops it first."""
    total = tc.epochs * steps_per_epoch
    return min(total, tc.max_steps) if tc.max_steps is not None else total


def to_device(module: torch.nn.Module, dev: torch.device, fast: bool) -> torch.nn.Module:
    """`module` on `dev`; on the fast path channels_last, and on CUDA cuDNN autotuning and TF32."""
    module = module.to(dev)
    if fast:
        module = module.to(memory_format=torch.channels_last)
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return module


def adam(params, lr: float, tc: TrainConfig, dev: torch.device, fast: bool) -> torch.optim.Adam:
    """Adam with train.betas and train.weight_decay (fused on the CUDA fast path)."""
    fused = {"fused": True} if fast and dev.type == "cuda" else {}
    return torch.optim.Adam(params, lr=lr, betas=tc.betas, weight_decay=tc.weight_decay, **fused)


def set_lr(opt: torch.optim.Optimizer | None, lr: float) -> None:
    """Every group's lr: `lr` times the group's own `lr_scale` (1 unless a model's `param_groups` sets one)."""
    for group in (opt.param_groups if opt is not None else ()):
        group["lr"] = lr * group.get("lr_scale", 1.0)


def out_of_budget(tc: TrainConfig, step: int, elapsed: float) -> bool:
    """train.max_steps reached or train.time_budget_s spent: stop inside the epoch."""
    return (tc.max_steps is not None and step >= tc.max_steps) or (
        tc.time_budget_s is not None and elapsed >= tc.time_budget_s)


RUN_FILES = ("checkpoints", "config.yaml", "metrics.jsonl", "samples", "curves.png")  # what a run writes


def check_new_run(run_dir: Path, resume: bool) -> Path:
    """A new run must not write into a folder that holds anything of another run (a best.pt without a last.pt
    is still someone's run), a resumed run must exist. Returns its checkpoints folder. The run's folder is
    the command's own from here: on --resume it rewrites the config and checkpoints it read (genfill.io)."""
    ckpt_dir = run_dir / "checkpoints"
    if not resume:
        if (ckpt_dir / "last.pt").exists():
            raise GenfillError(f"{run_dir} already holds a run: pass --resume, or pick another name (--set name=...)")
        found = [name for name in RUN_FILES if (run_dir / name).exists() and not _empty_dir(run_dir / name)]
        if found:
            raise GenfillError(f"{run_dir} holds {found[0]} of another run (no checkpoints/last.pt to resume): "
                               "pick another name (--set name=...) or move it away")
    if resume and not (ckpt_dir / "last.pt").exists():
        raise GenfillError(f"nothing to resume: {ckpt_dir / 'last.pt'} does not exist")
    own_folder(run_dir)
    return ckpt_dir


def _empty_dir(path: Path) -> bool:
    """A folder holding nothing but temp files a killed writer left (those are swept when the run opens)."""
    try:
        return path.is_dir() and all(p.name.startswith(".") and p.name.endswith(".tmp") for p in path.iterdir())
    except OSError:
        return False


def open_run(cfg, folders: list[Path], step: int, resume: bool, main: bool = True):
    """Make the run's folders (first removing temp files a killed write left), write config.yaml, and open
    metrics.jsonl for appending. The log holds exactly the steps the checkpoint holds: rows written after it
    (a kill between the log and the checkpoint) would be written again on resume, and a torn last line is
    dropped. Only rank 0 (`main`) writes; the others get a log into /dev/null."""
    run_dir = cfg.run_dir
    log_path = run_dir / "metrics.jsonl"
    if main:
        for folder in (run_dir, *folders):
            remove_stale_temps(folder)
        for folder in folders:
            make_dir(folder)
        save_config(cfg, run_dir / "config.yaml")
        rows = [r for r in read_metrics(log_path) if r["step"] <= step] if resume else []
        atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in rows))
    try:
        return open(log_path, "a") if main else open(os.devnull, "w")
    except OSError as exc:
        raise GenfillError(f"cannot write {log_path}: {exc.strerror}") from None


def rng_state(dev: torch.device, **generators: torch.Generator) -> dict:
    """The random state a resumed run continues from: each named generator's, torch's, the GPU's."""
    return {**{k: g.get_state() for k, g in generators.items()}, "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None}


def restore_rng(ckpt: dict, dev: torch.device, **generators: torch.Generator) -> None:
    """Undo `rng_state` (a generator missing from an older checkpoint keeps its seed)."""
    for key, g in generators.items():
        if ckpt.get(key) is not None:
            g.set_state(ckpt[key].cpu())
    torch.set_rng_state(ckpt["torch_rng"].cpu())  # the models' own noise (reparameterisation, ...)
    if dev.type == "cuda" and ckpt.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(ckpt["cuda_rng"].cpu(), dev)


def finished(tc: TrainConfig, step: int, epoch: int) -> bool:
    return epoch >= tc.epochs or (tc.max_steps is not None and step >= tc.max_steps)
