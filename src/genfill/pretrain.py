"""`genfill pretrain`: self-supervised pretraining of an inpainter's encoder, for `train.init_encoder_from`.

The encoder is the one the inpainter of the config's `model:` section has (`GenModel.encoder_prefixes`: the
U-Net's stem, down path and bottleneck; the VAE's conv stack), fed whole images with no hole
(`GenModel.encoder_features`: the bottleneck features averaged over space). Each step draws two views of every
image of the batch on the device (`genfill.augment`), runs both through the encoder and a projection head as
one batch of 2N, and minimises the method's loss (`genfill.ssl_losses`):

- ``simclr`` (Chen et al. 2020): NT-Xent over the 2N projections, temperature `ssl.temperature`.
- ``byol`` (Grill et al. 2020): a predictor on the online projections regresses the target network's
  projections of the other view (2 - 2 cos, both directions); the target (encoder + projector) is an EMA of
  the online one whose decay rises from `ssl.tau` to 1 by a cosine over the run.
- ``barlow`` (Zbontar et al. 2021): the cross-correlation of the two views' batch-standardised projections is
  pulled to the identity, off-diagonal terms weighted `ssl.lambd`.

The projector (and BYOL's predictor) is Linear-BatchNorm-ReLU per hidden width, then a Linear; the papers'
sizes (2048-128, 4096-256, 8192 x 3) are scaled down in the presets (configs/ssl-*-faces64.yaml) to an encoder
of 128 features. Adam with the `train` section's learning rate and schedule stands in for LARS (batches of
tens, not thousands). The two views go through BatchNorm as one batch (the papers' global BN).

The loop is `genfill train`'s, without masks or validation: resume (`--resume`, same image order and
augmentations), atomic checkpoints (`checkpoints/last.pt`: the whole inpainter as `save_model` writes it,
plus the heads, optimiser and random state), metrics.jsonl, curves.png, the progress bar, train.max_steps /
time_budget_s, bf16 autocast and channels_last on the fast path. `samples/views.png` shows the views of the
first batch (rows: image, view 1, view 2). One process (no torchrun).
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genfill.augment import two_views
from genfill.config import PretrainConfig, SSLConfig, to_dict
from genfill.data.cache import ImageCache, load_cache
from genfill.device import autocast, fast_path, pick_device
from genfill.errors import GenfillError
from genfill.io import load_checkpoint, save_image
from genfill.models import GenModel, build_model, save_model
from genfill.pixels import make_grid
from genfill.progress import Progress, say
from genfill.runs import (adam, check_finite, check_new_run, check_resumable, finished, lr_factor, open_run,
                          out_of_budget, plot_curves, restore_rng, rng_state, set_lr, steps_per_epoch, to_device,
                          total_steps, write_log)
from genfill.ssl_losses import barlow_twins, byol_loss, ema_update, nt_xent

# what a pretrain checkpoint must hold to resume
PRETRAIN_KEYS = ("optim", "step", "epoch", "rng", "rng_aug", "torch_rng", "pretrain", "ssl_heads")
HEAD_KEYS = ("method", "projector", "predictor")  # ssl keys a resumed run may not change (the heads' shapes)


@dataclass
class PretrainResult:
    run_dir: Path
    step: int
    epoch: int
    last: dict  # the last logged row's numbers (loss, z_std, ...); empty when nothing was trained
    seconds: float


def mlp(din: int, widths: list[int]) -> nn.Sequential:
    """Linear-BatchNorm1d-ReLU per hidden width, then Linear to widths[-1] (the papers' heads)."""
    layers: list[nn.Module] = []
    for w in widths[:-1]:
        layers += [nn.Linear(din, w), nn.BatchNorm1d(w), nn.ReLU(inplace=True)]
        din = w
    layers.append(nn.Linear(din, widths[-1]))
    return nn.Sequential(*layers)


class Projected(nn.Module):
    """Encoder (the inpainter's, only its encoder runs) + projector: images -> (N, projector[-1])."""

    def __init__(self, model: GenModel, widths: list[int]) -> None:
        super().__init__()
        self.model = model
        self.projector = mlp(model.feature_dim, widths)

    def forward(self, x: Tensor) -> Tensor:
        return self.projector(self.model.encoder_features(x))


class SSLNet(nn.Module):
    """The online network, BYOL's predictor, and BYOL's target: a copy of the online network, updated by EMA
    only (no gradient, not in the optimiser)."""

    def __init__(self, model: GenModel, sc: SSLConfig) -> None:
        super().__init__()
        self.method = sc.method
        self.online = Projected(model, sc.projector)
        self.predictor = mlp(sc.projector[-1], sc.predictor) if sc.method == "byol" else None
        self.target = copy.deepcopy(self.online).requires_grad_(False) if sc.method == "byol" else None

    def trained_parameters(self) -> list[nn.Parameter]:
        """The encoder's and the heads' parameters: what the optimiser steps (the decoder is not used)."""
        heads = [self.online.projector] + ([self.predictor] if self.predictor is not None else [])
        return self.online.model.encoder_parameters() + [p for h in heads for p in h.parameters()]

    def heads_state(self) -> dict[str, Tensor]:
        """Everything but the inpainter's own weights (save_model writes those)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("online.model.")}


def ssl_loss(net: SSLNet, sc: SSLConfig, v1: Tensor, v2: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """The method's loss on two views (N,C,H,W) of the same images, and its logged parts. The losses run in
    fp32 (autocast leaves the projections in bf16). `z_std`: the per-dimension std of the L2-normalised
    projections times sqrt(D), about 1 when they spread over the sphere, 0 when they collapse to a point."""
    z = net.online(torch.cat([v1, v2])).float()
    z1, z2 = z.chunk(2)
    if sc.method == "simclr":
        loss = nt_xent(z1, z2, sc.temperature)
    elif sc.method == "barlow":
        loss = barlow_twins(z1, z2, sc.lambd)
    else:
        p1, p2 = net.predictor(z).float().chunk(2)
        with torch.no_grad():
            t1, t2 = net.target(torch.cat([v1, v2])).float().chunk(2)
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)  # symmetrised, as in the paper
    z_std = F.normalize(z1.detach(), dim=1).std(0).mean() * math.sqrt(z1.shape[1])
    return loss, {"z_std": z_std}


def byol_tau(base: float, step: int, total: int) -> float:
    """BYOL's target decay at step `step` of `total`: 1 - (1 - base) (cos(pi k / K) + 1) / 2."""
    return 1 - (1 - base) * (math.cos(math.pi * min(step, total) / max(total, 1)) + 1) / 2


def _numbers(loss: Tensor, parts: dict[str, Tensor], lr: float) -> dict[str, float]:
    return {"loss": loss.item(), **{k: v.item() for k, v in parts.items()}, "lr": lr}


def _check_same_heads(ckpt: dict, sc: SSLConfig) -> None:
    saved, now = ckpt["pretrain"], to_dict(sc)
    for key in HEAD_KEYS:
        if saved.get(key) != now[key]:
            raise GenfillError(f"cannot resume: ssl.{key} is {now[key]!r} in the config but {saved.get(key)!r} in "
                               f"the checkpoint; use a new run name to pretrain another way")


def save_views(x: Tensor, v1: Tensor, v2: Tensor, path: Path, n: int = 8) -> None:
    """A picture of the augmentations: rows image / view 1 / view 2 for the first n images."""
    n = min(n, len(x))
    save_image(make_grid(torch.cat([x[:n], v1[:n], v2[:n]]).float().cpu(), nrow=n), path)


@dataclass
class _Run:
    """The network, its optimiser and generators, and where the run is: what a pretrain checkpoint holds and a
    resumed run continues from."""
    model: GenModel  # the inpainter whose encoder is trained (saved as save_model writes it)
    net: SSLNet
    params: list  # the trained parameters (encoder and heads)
    opt: torch.optim.Optimizer
    g: torch.Generator  # image order
    g_aug: torch.Generator  # the views, drawn on the device
    step: int = 0
    epoch: int = 0
    order: Tensor | None = None  # this epoch's image order and how far into it the run is
    seen: int = 0


def _start(cfg: PretrainConfig, data: ImageCache, dev: torch.device, fast: bool) -> _Run:
    """The model and its heads, seeded (after the data: nothing before may change the init), the optimiser."""
    tc = cfg.train
    torch.manual_seed(tc.seed)
    model = build_model(cfg.model, data.size, data.channels)
    net = to_device(SSLNet(model, cfg.ssl), dev, fast)
    params = net.trained_parameters()
    return _Run(model, net, params, adam(params, tc.lr, tc, dev, fast), torch.Generator().manual_seed(tc.seed),
                torch.Generator(dev).manual_seed(tc.seed + 1))


def _resume(r: _Run, cfg: PretrainConfig, data: ImageCache, dev: torch.device, path: Path) -> None:
    ckpt = load_checkpoint(path, dev)
    check_resumable(ckpt, cfg, r.model, data.size, data.channels, PRETRAIN_KEYS)
    _check_same_heads(ckpt, cfg.ssl)
    r.net.load_state_dict({**{f"online.model.{k}": v for k, v in ckpt["model"].items()}, **ckpt["ssl_heads"]})
    r.opt.load_state_dict(ckpt["optim"])
    r.step, r.epoch = ckpt["step"], ckpt["epoch"]
    if ckpt.get("epoch_order") is not None:
        r.order, r.seen = ckpt["epoch_order"].cpu(), int(ckpt["epoch_seen"])
    restore_rng(ckpt, dev, rng=r.g, rng_aug=r.g_aug)


def _save(r: _Run, cfg: PretrainConfig, path: Path, dev: torch.device) -> None:
    save_model(path, r.model, run_config=to_dict(cfg), pretrain=to_dict(cfg.ssl), ssl_heads=r.net.heads_state(),
               optim=r.opt.state_dict(), step=r.step, epoch=r.epoch, epoch_order=r.order, epoch_seen=r.seen,
               **rng_state(dev, rng=r.g, rng_aug=r.g_aug))


def pretrain_step(r: _Run, cfg: PretrainConfig, v1: Tensor, v2: Tensor, horizon: int, dev: torch.device,
                  use_amp: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """One optimiser step on the two views (and BYOL's target update); the loss and its parts, on the device."""
    tc, sc = cfg.train, cfg.ssl
    r.opt.zero_grad(set_to_none=True)
    with autocast(dev, use_amp):
        loss, parts = ssl_loss(r.net, sc, v1, v2)
    loss.backward()
    if tc.grad_clip:
        torch.nn.utils.clip_grad_norm_(r.params, tc.grad_clip)
    r.opt.step()
    if r.net.target is not None:
        tau = byol_tau(sc.tau, r.step, horizon)
        ema_update(r.net.target, r.net.online, tau)
        parts["tau"] = torch.tensor(tau)
    return loss, parts


def pretrain(cfg: PretrainConfig, resume: bool = False, device: str | None = None, verbose: bool = True,
             data: ImageCache | None = None) -> PretrainResult:
    """Pretrain cfg.model's encoder by cfg.ssl into cfg.run_dir (see the module docstring). `data` replaces
    the config's dataset (tests, benchmarks)."""
    tc, sc = cfg.train, cfg.ssl
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise GenfillError("genfill pretrain runs in one process: start it without torchrun")
    dev = pick_device(device or tc.device)
    run_dir = cfg.run_dir
    ckpt_dir = check_new_run(run_dir, resume)

    # ---- set-up: data on the device, the model and its heads, resume
    data = (data if data is not None else load_cache(cfg.data, verbose=verbose)).to(dev)
    n_train = len(data.split("train"))
    if n_train < tc.batch_size:
        raise GenfillError(f"pretraining needs at least train.batch_size ({tc.batch_size}) training images, the "
                           f"data has {n_train}")
    fast = fast_path(tc.fast, dev)
    r = _start(cfg, data, dev, fast)
    if resume:
        _resume(r, cfg, data, dev, ckpt_dir / "last.pt")
        if finished(tc, r.step, r.epoch):
            return PretrainResult(run_dir, r.step, r.epoch, {}, 0.0)
    log = open_run(cfg, [ckpt_dir, run_dir / "samples"], r.step, resume)
    horizon = total_steps(tc, steps_per_epoch(tc, n_train))
    t0, last, stop = time.time(), {}, False
    r.net.train()
    if verbose:
        say(f"genfill: pretraining the {r.model.kind} encoder ({sum(p.numel() for p in r.params):,} parameters "
            f"with the heads) by {sc.method} on {dev} -> {run_dir}")
    bar = Progress(horizon, f"pretrain {cfg.name}", "steps", budget_s=tc.time_budget_s, enabled=verbose,
                   initial=r.step)
    try:
        while not finished(tc, r.step, r.epoch) and not stop:
            if r.order is None:
                r.order, r.seen = data.epoch_order("train", r.g), 0
            ended = True
            for x, _ in data.iterate("train", tc.batch_size, shuffle=True, generator=r.g, drop_last=True,
                                     device=dev, order=r.order, start=r.seen):
                # ---- the step: two views of the batch, the learning rate, one optimiser step
                v1, v2 = two_views(x, sc.augment, r.g_aug)
                if r.step == 0:
                    save_views(x, v1, v2, run_dir / "samples" / "views.png")
                if fast:
                    v1, v2 = (v.contiguous(memory_format=torch.channels_last) for v in (v1, v2))
                lr = tc.lr * lr_factor(tc, r.step, horizon, (time.time() - t0) / tc.time_budget_s
                                       if tc.time_budget_s else 0.0)
                set_lr(r.opt, lr)
                loss, parts = pretrain_step(r, cfg, v1, v2, horizon, dev, tc.amp and fast)
                r.step += 1
                r.seen += tc.batch_size
                bar.update(1)
                # ---- logging: the host reads the device only here, every log_every steps
                if r.step % tc.log_every == 0 or r.step == 1:
                    check_finite(loss, r.step, ckpt_dir / "last.pt")
                    last = _numbers(loss, parts, lr)
                    bar.set_stats(loss=last["loss"])
                    write_log(log, {"step": r.step, "epoch": r.epoch, "split": "train",
                                    "time": round(time.time() - t0, 2), **last})
                if out_of_budget(tc, r.step, time.time() - t0):  # ---- stop
                    stop = True
                    ended = r.seen >= n_train - n_train % tc.batch_size
                    break
            check_finite(loss, r.step, ckpt_dir / "last.pt")
            last = _numbers(loss, parts, lr)  # the last step's, logged or not
            if ended:
                r.epoch += 1
                r.order, r.seen = None, 0
            # ---- checkpoint at the end of an epoch (or a stop inside one), atomically
            _save(r, cfg, ckpt_dir / "last.pt", dev)
            plot_curves(run_dir)
    finally:
        bar.close()
        log.close()
    return PretrainResult(run_dir, r.step, r.epoch, last, time.time() - t0)
