"""How the sampler's exemplar blend trades thin-stroke FID against calibration: one trained sampler (stored
faces, `train_samples: 0`), its samples drawn several ways, each scored by genfill's own eval job (the first n
faces64 test images, mask seed 1234, FID/KID with a bootstrap spread, K fills for coverage and r).

Why: issue 23 asks one sample to have the lowest-or-tied FID on every kind *and* a 90 % interval covering
>= 0.60 of the truth. `seam` meets the first, `residual` the second (benchmarks/results/
perception_ab_exemplar.md); these probes ask whether some blend between or beside them meets both.

Variants (`--variant`, repeatable; default all). c is a drawn stored face, mean(.) the mean pass under the hole,
r = c - mean(c) the residual blend's detail:
    mean         every sample is the mean fill (no spread: one end of the trade)
    seam         the model's seam blend (genfill.models.exemplars)
    residual     mean(x) + r (the residual blend)
    scale:G      mean(x) + G r
    clip:T       mean(x) + r clipped to T x the per-value median |r| over `exemplar_k` drawn faces
    lum          mean(x) + r's mean over colour channels (its luminance only)
    ring:P       the residual of one of the 8 (of the P nearest by key) whose pixels on the 3 px ring outside
                 the hole best match x's, offset removed
    shift:S      as ring:8, each candidate also shifted by up to S px (the 8 best pairs are drawn from)
    match:S      mean(x) + g r, g = x's local detail energy / c's (0..2), each measured on the known pixels
                 within a Gaussian window of S px (detail: the image minus its 1.5 px blur): c's detail is
                 scaled to what x's own surroundings have (none where x is smooth around the hole);
                 match:S:CAP caps g at CAP instead of 2; matchc:S[:CAP] matches each colour channel apart
    band:S:L:G   mean(x) + G e z in the hole, e = x's detail energy (as in match) in a window of S px and z a
                 standard normal per sample (L = 0) or a normal field blurred by L px, scaled to unit std: the
                 stroke brightened or darkened by as much as x's surroundings vary, no stranger's detail
                 band:S:L:G:F adds a floor: (G e + F) z, F in [-1, 1] units (0.0078 = one grey level)
    bandc:S:L:G[:F]
                 band with a draw per colour channel: the stroke's colour moves, not only its brightness
    warp:G[:B]   mean(x) + G z (u . grad mean(x)), u a random direction and z a normal per sample: the mean fill
                 moved by about G z px; with B, plus band:3:0:B
    self:D:G     mean(x) + G z d(x) moved by D px in a random direction, d x's own detail on the known pixels
    hyb:A:W:G    the model's `hybrid` blend (genfill.models.sampler.hybrid_samples) with HYBRID_DEPTH = (A, A + W)
                 and HYBRID_GAIN = G: residual where the hole is wide, band:3:0:G in thin strokes
    hybs:G       the model's `hybrid` blend with its stroke refiner's error size b at stroke_gain G (thin strokes
                 shifted by G b z): needs a run with model.stroke_width > 0
    hybrid       the model's `hybrid` blend as shipped (hyb:1:2:0.5; hyb:1:2:0.7 until 2026-12-06)
    local:R:S:P:T[:H[:G]]
                 non-parametric sampling from the stored faces, per pixel (Efros & Leung's idea with the
                 training set as the source, positions kept because faces are aligned): each of the P faces
                 nearest by key, moved by up to S px, is compared with x over the known pixels of the
                 (2R+1)^2 window around each hole pixel (mean difference removed); a sample takes, per pixel,
                 one of its T best (face, shift) pairs, chosen by a random score per pair shared across the
                 image (`LocalPairs.draw`), at that pair's value in x's brightness. H = 1 (default): only where
                 the hybrid blend would shift the stroke (residual detail where the hole is wide); G scales
                 the step from the mean fill (default 1)
    oracle:G     NOT a sampler (reads the truth in the hole): mean(x) + G |mean(x) - truth| z, z a normal per
                 sample: spread exactly as large as each pixel's error (what a sampler that knew each pixel's
                 error size, not its sign, would draw); oracle:G:S that size blurred by S px (known only roughly)
    oracleimg:G  NOT a sampler either: band:3:0:G with each image's detail energy rescaled to the RMS of its actual
                 error over the hole (knows how much each image's fill is off, not where)
    nbrsize:G    band's coherent shift (one normal per sample) sized per pixel by G x the mean |c - mean(c)| of the
                 `exemplar_k` nearest stored faces c under the same hole: the mean fill's error where x's look-alikes
                 had it
    V/raw        variant V drawn with the run's stroke refiner (model.stroke_width > 0) taken out: what it adds
    sharp:A:S[:V]
                 variant V's samples (default: the mean fill) plus A x (the composite minus its S px blur) in
                 the hole: an unsharp mask of the fill

    PYTHONPATH=src python benchmarks/blend_variants.py -c runs/sampler-faces64 -n 300 --kinds thin,medium \
        --work /tmp/blends --out benchmarks/results/blend_variants

Each variant's eval.json lands in WORK/<variant>/ and is read back, not re-run. Writes OUT.json and OUT.md.
`--picture PATH --variant V` instead draws the first 6 test faces under their thin eval holes, 3x enlarged, a row
each: masked / original / mean fill / two samples of V / 4 x (first sample - mean fill) on grey; then exits."""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from types import MethodType

import torch
import torch.nn.functional as F

from genfill.evaljob import evaluate_specs, load_eval
from genfill.models import sampler as sampler_module
from genfill.models.exemplars import detail_energy, gaussian_blur as blur
from genfill.resolve import resolve

ALL = ("mean", "seam", "residual", "scale:0.7", "clip:2", "lum", "ring:32", "shift:1")


def shifted(imgs: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """imgs (..., C, H, W) moved by (dy, dx) px, edges replicated."""
    if dy == 0 and dx == 0:
        return imgs
    s = max(abs(dy), abs(dx))
    h, w = imgs.shape[-2:]
    p = F.pad(imgs.reshape(-1, *imgs.shape[-3:]), (s, s, s, s), mode="replicate")
    return p[..., s - dy:s - dy + h, s - dx:s - dx + w].reshape(imgs.shape)


class LocalPairs:
    """Per hole pixel, the `top` (stored face, shift) pairs whose pixels around it best match the query's:
    `local_pairs` makes them once per image and hole, `draw` picks among them per sample.

    idx (N, top, H, W): which pair (face * shifts + shift, out of `pairs`), nearest first; values
    (N, top, C, H, W) what each gives the pixel. Known pixels hold pair 0 and value 0 (never read)."""

    def __init__(self, idx: torch.Tensor, values: torch.Tensor, pairs: int) -> None:
        self.idx, self.values, self.pairs = idx, values, pairs

    def draw(self, reps: int, generator: torch.Generator | None) -> torch.Tensor:
        """(reps * N, C, H, W): per sample one random score per pair, shared by all the pixels of an image;
        each pixel takes the best-scored of its `top` pairs. A pixel's pick is uniform over its own top pairs,
        and neighbouring pixels whose top pairs overlap mostly pick the same one (coherent strokes, not specks)."""
        n, top, c, h, w = self.values.shape
        out = []
        for _ in range(reps):
            score = torch.rand(n, self.pairs, generator=generator,
                               device=generator.device if generator else None).to(self.idx.device)
            pick = score.gather(1, self.idx.flatten(1)).view(self.idx.shape).argmax(1, keepdim=True)
            out.append(self.values.gather(1, pick[:, :, None].expand(-1, -1, c, -1, -1))[:, 0])
        return torch.cat(out)


@torch.no_grad()
def local_pairs(bank, x, m, radius: int, shift: int, pool: int, top: int) -> LocalPairs:
    """For every hole pixel of x (N,C,H,W) under m, its `top` best (stored face, shift) pairs (`LocalPairs`):
    each of the `pool` faces nearest by key (`candidates`; the query itself never), moved by up to `shift`
    px each way, is compared with x over the known pixels of the (2 radius + 1)^2 window around the pixel,
    after removing the per-channel mean difference there (the mean squared difference left). Its value for
    the pixel is its own plus that mean difference: the face's detail in x's brightness and colour.
    One image at a time, hole pixels only (pool x shifts x pixels is large)."""
    imgs, duplicate = bank.candidates(x, m, pool)  # (N, P, C, H, W)
    n, p, c, h, w = imgs.shape
    moves = [(dy, dx) for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)]
    top = min(top, p * len(moves))
    win = 2 * radius + 1
    box = lambda t: F.avg_pool2d(t, win, 1, radius, count_include_pad=False)  # noqa: E731
    idx = torch.zeros(n, top, h * w, dtype=torch.long, device=x.device)
    values = torch.zeros(n, top, c, h * w, dtype=torch.float32, device=x.device)
    for i in range(n):
        hole = m[i, 0].flatten().nonzero().squeeze(1)
        if hole.numel() == 0:
            continue
        k = (1 - m[i:i + 1].float())  # (1, 1, H, W)
        xi = x[i:i + 1].float()
        s0 = box(k).flatten(1)[:, hole].clamp_min(1e-6)  # (1, holes): share of known pixels in the window
        bad = duplicate[i][:, None]
        dist, vals = [], []
        for dy, dx in moves:
            cj = shifted(imgs[i].float(), dy, dx)  # (P, C, H, W)
            diff = xi - cj
            s1 = box(diff * k).flatten(2)[:, :, hole]  # (P, C, holes)
            s2 = box((diff * diff * k).sum(1, keepdim=True)).flatten(1)[:, hole]  # (P, holes)
            mu = s1 / s0
            d = (s2 - (mu * s1).sum(1)) / (s0 * c)
            dist.append(torch.where(bad, torch.full_like(d, float("inf")), d))
            vals.append(cj.flatten(2)[:, :, hole] + mu)
        dist = torch.stack(dist, 1).flatten(0, 1)  # (P * shifts, holes): pair = face * shifts + shift
        best = dist.topk(top, 0, largest=False).indices  # (top, holes)
        idx[i][:, hole] = best
        vals = torch.stack(vals, 1).flatten(0, 1)  # (P * shifts, C, holes)
        values[i][:, :, hole] = vals.gather(0, best[:, None].expand(-1, c, -1))
    return LocalPairs(idx.view(n, top, h, w), values.view(n, top, c, h, w), p * len(moves))


def ring_faces(model, x, m, reps, generator, pool: int, shift: int, ring: int, top: int = 8):
    """(reps * N) stored faces: per image, one of the `top` (face, shift) pairs, among the `pool` nearest by key
    and shifts up to `shift` px, whose pixels on the `ring` px band outside the hole best match x's."""
    imgs, duplicate = model.exemplars.candidates(x, m, pool)
    xf = x.float()[:, None]
    mf = m.float()
    band = (F.max_pool2d(mf, 2 * ring + 1, 1, ring) - mf)[:, None]  # (N, 1, 1, H, W)
    count = band.sum((2, 3, 4)).clamp_min(1)
    moves = [(dy, dx) for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)]
    scores = []
    for dy, dx in moves:
        d = shifted(imgs, dy, dx) - xf
        offset = (d * band).sum((3, 4), keepdim=True) / band.sum((3, 4), keepdim=True).clamp_min(1)
        sc = (((d - offset) ** 2) * band).sum((2, 3, 4)) / count
        scores.append(torch.where(duplicate, torch.full_like(sc, float("inf")), sc))
    flat = torch.stack(scores, 2).flatten(1)  # (N, (pool + 2) * moves)
    best = flat.topk(min(top, flat.shape[1]), largest=False).indices
    usable = torch.isfinite(flat.gather(1, best)).sum(1).clamp_min(1)
    draw = torch.rand(reps, len(x), generator=generator, device=generator.device if generator else None)
    chosen = best.gather(1, ((draw.to(x.device) * usable).long().clamp_max(usable - 1)).T).T  # (reps, N)
    out = []
    for r in range(reps):
        for i in range(len(x)):
            face, move = divmod(int(chosen[r, i]), len(moves))
            out.append(shifted(imgs[i, face], *moves[move]))
    return torch.stack(out).to(x.dtype)


def neighbour_error_size(model, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """(N,C,H,W) mean |c - mean fill of c| over x's `exemplar_k` nearest stored faces c (each once) under the
    same holes m (the residual blend's detail, `Sampler.residual_detail`): how far the mean fill was off, pixel by
    pixel, on the faces most like x (`nbrsize`)."""
    k = model.exemplars.k
    draws = ((torch.arange(k, dtype=torch.float32) + 0.5) / k)[:, None].expand(k, len(x))
    return model.residual_detail(x, m, k, None, (draws, draws)).abs().view(k, *x.shape).mean(0)


def variant_fn(name: str):
    """The residual_samples replacement (model, x, m, mean, reps, generator) -> samples for a variant name."""
    kind, _, arg = name.partition(":")
    if kind == "mean":
        return lambda self, x, m, mean, reps, g: mean.repeat(reps, 1, 1, 1)
    if kind == "scale":
        return lambda self, x, m, mean, reps, g: (mean.repeat(reps, 1, 1, 1)
                                                  + float(arg) * self.residual_detail(x, m, reps, g)).clamp(-1, 1)
    if kind == "lum":
        def lum(self, x, m, mean, reps, g):
            r = self.residual_detail(x, m, reps, g)
            return (mean.repeat(reps, 1, 1, 1) + r.mean(1, keepdim=True).expand_as(r)).clamp(-1, 1)
        return lum
    if kind == "clip":
        def clip(self, x, m, mean, reps, g):
            k = self.exemplars.k
            median = self.residual_detail(x, m, k, g).view(k, len(x), *x.shape[1:]).abs().median(0).values
            limit = (float(arg) * median).repeat(reps, 1, 1, 1)
            r = torch.maximum(torch.minimum(self.residual_detail(x, m, reps, g), limit), -limit)
            return (mean.repeat(reps, 1, 1, 1) + r).clamp(-1, 1)
        return clip
    if kind in ("match", "matchc"):
        sigma, _, cap = arg.partition(":")
        sigma, cap, per_channel = float(sigma), float(cap or 2), kind == "matchc"

        def match(self, x, m, mean, reps, g):
            c = self.exemplars.neighbours(x, m, reps, g)
            mr = m.repeat(reps, 1, 1, 1).to(x.dtype)
            known = 1 - mr
            e_x = detail_energy(x.repeat(reps, 1, 1, 1), known, sigma, per_channel)
            gain = (e_x / detail_energy(c, known, sigma, per_channel).clamp_min(1e-4)).clamp(0, cap)
            return (mean.repeat(reps, 1, 1, 1) + gain * (c - self.mean_pass(c, mr))).clamp(-1, 1)
        return match
    if kind in ("band", "bandc"):
        sigma, length, gain, floor = (float(v) for v in (arg + ":0").split(":")[:4])
        zc = 3 if kind == "bandc" else 1  # bandc: one draw per colour channel

        def band(self, x, m, mean, reps, g):
            mr = m.repeat(reps, 1, 1, 1).to(x.dtype)
            e_x = detail_energy(x.repeat(reps, 1, 1, 1), 1 - mr, sigma)
            if length > 0:
                z = blur(torch.randn(len(mr), zc, *x.shape[-2:], generator=g, device=x.device, dtype=x.dtype), length)
                z = z / z.flatten(1).std(1).clamp_min(1e-6).view(-1, 1, 1, 1)
            else:  # one draw per image (per colour channel: bandc)
                z = torch.randn(len(mr), zc, 1, 1, generator=g, device=x.device, dtype=x.dtype)
            return (mean.repeat(reps, 1, 1, 1) + (gain * e_x + floor) * z * mr).clamp(-1, 1)
        return band
    if kind == "oracle":
        gain, spread = (float(v) for v in (arg + ":0").split(":")[:2])

        def oracle(self, x, m, mean, reps, g):
            """Not a sampler: it reads the truth (x inside the hole, which eval passes and models ignore). The mean
            fill moved by G |mean - truth| z, z one normal per sample: a spread whose size at every pixel is that
            pixel's actual error: what a sampler that knew each pixel's error size (not its sign) would draw."""
            mr = m.repeat(reps, 1, 1, 1).to(x.dtype)
            y = mean.repeat(reps, 1, 1, 1)
            err = (y - x.repeat(reps, 1, 1, 1)).abs()
            if spread:  # the error's size known only to within S px (a blur of it)
                err = blur(err, spread)
            z = torch.randn(len(mr), 1, 1, 1, generator=g, device=x.device, dtype=x.dtype)
            return (y + gain * err * z * mr).clamp(-1, 1)
        return oracle
    if kind == "oracleimg":
        gain = float(arg)

        def oracle_image(self, x, m, mean, reps, g):
            """Not a sampler either: band:3:0:G with each image's detail energy rescaled so that its RMS over the hole
            is the RMS of that image's actual error there. It knows how much each image's fill is off, not where."""
            mf = m.to(x.dtype)
            e = detail_energy(x, 1 - mf, 3.0).to(x.dtype)
            err2 = ((mean - x) ** 2 * mf).sum((1, 2, 3)) / (3 * mf.sum((1, 2, 3))).clamp_min(1)
            e2 = (e ** 2 * mf).sum((1, 2, 3)) / mf.sum((1, 2, 3)).clamp_min(1)
            size = e * (err2 / e2.clamp_min(1e-12)).sqrt().view(-1, 1, 1, 1)
            mr = mf.repeat(reps, 1, 1, 1)
            z = torch.randn(len(mr), 1, 1, 1, generator=g, device=x.device, dtype=x.dtype)
            return (mean.repeat(reps, 1, 1, 1) + gain * size.repeat(reps, 1, 1, 1) * z * mr).clamp(-1, 1)
        return oracle_image
    if kind == "nbrsize":
        gain = float(arg)
        memo = {}

        def neighbour_size(self, x, m, mean, reps, g):
            """band's coherent shift, sized per pixel by the mean |c - mean_c| of x's `exemplar_k` nearest stored
            faces c under the same hole: how far the mean fill was off there on the faces most like x."""
            if not (memo.get("x") is not None and memo["x"].shape == x.shape and torch.equal(memo["x"], x)
                    and torch.equal(memo["m"], m)):
                memo.update(x=x.clone(), m=m.clone(), size=neighbour_error_size(self, x, m))
            mr = m.repeat(reps, 1, 1, 1).to(x.dtype)
            z = torch.randn(len(mr), 1, 1, 1, generator=g, device=x.device, dtype=x.dtype)
            return (mean.repeat(reps, 1, 1, 1) + gain * memo["size"].repeat(reps, 1, 1, 1) * z * mr).clamp(-1, 1)
        return neighbour_size
    if kind == "hybrid":
        return lambda self, x, m, mean, reps, g: self.hybrid_samples(x, m, mean, reps, g)
    if kind == "hyb":
        lo, width, gain = (float(v) for v in arg.split(":"))

        def hyb(self, x, m, mean, reps, g, strata=None):  # the model's hybrid blend with these three numbers
            saved = sampler_module.HYBRID_DEPTH, sampler_module.HYBRID_GAIN
            sampler_module.HYBRID_DEPTH, sampler_module.HYBRID_GAIN = (lo, lo + width), gain
            try:
                return self.hybrid_samples(x, m, mean, reps, g, strata)
            finally:
                sampler_module.HYBRID_DEPTH, sampler_module.HYBRID_GAIN = saved
        hyb.strata = True  # drawn with fill_samples' Latin-hypercube draws, as the model's blends are
        return hyb
    if kind == "hybs":
        gain = float(arg)

        def hybrid_strokes(self, x, m, mean, reps, g, strata=None):  # hybrid, its refiner's shift at stroke_gain G
            if self.strokes is None:
                raise SystemExit("hybs:G needs a run with a stroke refiner (model.stroke_width > 0)")
            saved = self.cfg
            self.cfg = replace(saved, stroke_gain=gain)
            try:
                return self.hybrid_samples(x, m, mean, reps, g, strata, self.mean_fill(x, m)[1])
            finally:
                self.cfg = saved
        hybrid_strokes.strata = True
        return hybrid_strokes
    if kind == "local":
        parts = (arg + ":1:1").split(":")
        radius, shift, pool, top, hybrid = (int(v) for v in parts[:5])
        gain = float(parts[5])

        memo = {}

        def local(self, x, m, mean, reps, g):
            """LocalPairs in the thin parts of the hole; with hybrid 1 the residual
            detail where the hole is wide (the hybrid blend's w), else the local pairs everywhere."""
            if not (memo.get("x") is not None and memo["x"].shape == x.shape and torch.equal(memo["x"], x)
                    and torch.equal(memo["m"], m)):  # fill and fill_samples of one batch share the pairs
                memo.update(x=x.clone(), m=m.clone(),
                            pairs=local_pairs(self.exemplars, x, m, radius, shift, pool, top))
            mr = m.repeat(reps, 1, 1, 1).to(x.dtype)
            y = mean.repeat(reps, 1, 1, 1)
            v = y + gain * (memo["pairs"].draw(reps, g).to(x.dtype) - y)
            if hybrid:
                r = self.residual_detail(x, m, reps, g)
                wgt = sampler_module.hybrid_width(mr)
                return (y + (wgt * r + (1 - wgt) * (v - y)) * mr).clamp(-1, 1)
            return (y + (v - y) * mr).clamp(-1, 1)
        return local
    if kind == "sharp":  # sharp:A:S[:B] the hole of B's samples (default the mean fill) sharpened
        parts = arg.split(":", 2)
        amount, sigma, base = float(parts[0]), float(parts[1]), parts[2] if len(parts) > 2 else ""
        inner = variant_fn(base) if base else None

        def sharp(self, x, m, mean, reps, g):
            """B's samples plus A x (the composite minus its S px blur) in the hole: an unsharp mask of the fill
            and the known pixels around it (the mean fill is blurrier than faces are)."""
            y = inner(self, x, m, mean, reps, g) if inner else mean.repeat(reps, 1, 1, 1)
            mr = m.repeat(reps, 1, 1, 1).to(x.dtype)
            comp = x.repeat(reps, 1, 1, 1) * (1 - mr) + y * mr
            return (y + amount * (comp - blur(comp, sigma)) * mr).clamp(-1, 1)
        return sharp
    if kind == "warp":
        gain, bandgain = (float(v) for v in (arg + ":0").split(":")[:2])

        def warp(self, x, m, mean, reps, g):
            mr = m.repeat(reps, 1, 1, 1).to(x.dtype)
            y = mean.repeat(reps, 1, 1, 1)
            p = F.pad(y, (1, 1, 1, 1), mode="replicate")
            gy, gx = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2, (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2
            a = torch.rand(len(mr), 1, 1, 1, generator=g, device=x.device, dtype=x.dtype) * 6.2832
            z = torch.randn(len(mr), 1, 1, 1, generator=g, device=x.device, dtype=x.dtype)
            out = y + gain * z * (torch.cos(a) * gx + torch.sin(a) * gy) * mr
            if bandgain:
                e_x = detail_energy(x.repeat(reps, 1, 1, 1), 1 - mr, 3.0)
                zb = torch.randn(len(mr), 1, 1, 1, generator=g, device=x.device, dtype=x.dtype)
                out = out + bandgain * e_x * zb * mr
            return out.clamp(-1, 1)
        return warp
    if kind == "self":
        dist, gain = (float(v) for v in arg.split(":"))

        def own(self, x, m, mean, reps, g):
            known = 1 - m.to(x.dtype)
            smooth = blur(x * known, 1.5) / blur(known, 1.5).clamp_min(1e-3)
            d = (x - smooth) * known
            out = []
            for r in range(reps):
                a = torch.rand(len(x), generator=g) * 6.2832
                z = torch.randn(len(x), generator=g)
                for i in range(len(x)):
                    dy, dx = int(round(dist * float(torch.sin(a[i])))), int(round(dist * float(torch.cos(a[i]))))
                    out.append(mean[i] + gain * float(z[i]) * shifted(d[i], dy, dx) * m[i])  # d is 0 off known pixels
            return torch.stack(out).clamp(-1, 1)
        return own
    if kind in ("ring", "shift"):
        pool, shift, ring = (int(arg), 0, 3) if kind == "ring" else (8, int(arg), 2)

        def aligned(self, x, m, mean, reps, g):
            c = ring_faces(self, x, m, reps, g, pool, shift, ring)
            return (mean.repeat(reps, 1, 1, 1) + c - self.mean_pass(c, m.repeat(reps, 1, 1, 1))).clamp(-1, 1)
        return aligned
    raise SystemExit(f"unknown variant {name!r} (one of {', '.join(ALL)}, any number after ':')")


def filler_for(run: str, name: str):
    filler = resolve(run, "cpu")
    model = filler.model
    if model is None or model.kind != "sampler" or model.cfg.train_samples != 0 or model.cfg.exemplars <= 0:
        raise SystemExit(f"{run}: needs a sampler with stored faces and train_samples: 0")
    full, name = name, name.removesuffix("/raw")
    if full != name:  # the same weights without their stroke refiner: what the refiner adds
        model.strokes = None
    if name in ("seam", "hybrid"):
        model.use_blend(name)
    else:
        model.use_blend("residual")
        if name != "residual":
            fn = variant_fn(name)
            takes = getattr(fn, "strata", False)  # `hyb` draws K fills as the model's blends do; others, one by one

            def probe(self, x, m, mean, reps, g, strata=None):
                return fn(self, x, m, mean, reps, g, strata) if takes else fn(self, x, m, mean, reps, g)
            model.residual_samples = MethodType(probe, model)
    filler.name = full
    return filler


@torch.no_grad()
def picture(run: str, name: str, path: str) -> None:
    from genfill.config import DataConfig, from_dict
    from genfill.data.cache import load_cache
    from genfill.io import save_image
    from genfill.masks import masks_at

    filler = filler_for(run, name)
    model = filler.model
    data = load_cache(from_dict(DataConfig, filler.data, prefix="data"), verbose=False)
    x = data.batch(data.split("test")[:6], "cpu")
    m = torch.cat([masks_at("thin", [i], data.size, data.size, seed=1234) for i in range(6)])
    mean = model.fill(x, m, mean=True)
    s = model.fill_samples(x, m, 2, torch.Generator().manual_seed(0))
    rows = [torch.cat([x[i] * (1 - m[i]) + m[i], x[i], mean[i], s[0, i], s[1, i], (s[0, i] - mean[i]) * 4], 2)
            for i in range(6)]
    save_image(F.interpolate(torch.cat(rows, 1)[None], scale_factor=3, mode="nearest")[0].clamp(-1, 1), path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", required=True, metavar="RUN", help="a sampler run with stored faces, train_samples: 0")
    ap.add_argument("--variant", action="append", default=None, help=f"repeatable; default: {' '.join(ALL)}")
    ap.add_argument("--kinds", default="thin,medium")
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--boot", type=int, default=20)
    ap.add_argument("--work", default="runs/blend_variants")
    ap.add_argument("--out", default="benchmarks/results/blend_variants")
    ap.add_argument("--picture", metavar="PNG", help="draw the thin-stroke picture of the one --variant instead")
    ap.add_argument("--no-fid", dest="fid", action="store_false",
                    help="calibration only (a variant's one fill, hence its FID, does not depend on how K are drawn)")
    a = ap.parse_args(argv)
    names = a.variant or list(ALL)
    if a.picture:
        if len(names) != 1:
            raise SystemExit("--picture draws one --variant")
        return picture(a.c, names[0], a.picture)
    for name in names:  # a bad name fails before any work
        if name.removesuffix("/raw") not in ("seam", "residual", "hybrid"):
            variant_fn(name.removesuffix("/raw"))
    kinds = a.kinds.split(",")
    rows, seconds = {}, {}
    for name in names:
        path = Path(a.work) / name.replace(":", "_").replace("/", "-") / "eval.json"
        if not path.is_file():
            t0 = time.time()
            torch.manual_seed(0)
            evaluate_specs([filler_for(a.c, name)], path.parent, masks=",".join(kinds), n=a.n, fid=a.fid,
                           samples=a.samples, fid_bootstrap=a.boot, device="cpu", report=False, verbose=False)
            print(f"{name}: {time.time() - t0:.0f} s", flush=True)
        doc, _ = load_eval(path)
        seconds[name] = doc.get("seconds")  # the evaluation's own time (read back with it)
        e = doc["methods"][name]
        rows[name] = {}
        for kind in kinds:
            s, f = e["summary"]["mask"][kind], e.get("by_mask", {}).get(kind, {})
            p = e.get("plural", {}).get("by_mask", {}).get(kind, {})
            rows[name][kind] = {"psnr": s.get("psnr"), "lpips": s.get("lpips"), "diversity": s.get("diversity"),
                                "fid": f.get("fid"), "fid_std": f.get("fid_std"), "kid": f.get("kid"),
                                "coverage90": p.get("coverage90"), "unc_corr": p.get("unc_corr")}
    protocol = {"run": a.c, "n": a.n, "kinds": kinds, "mask_seed": 1234, "samples": a.samples, "boot": a.boot}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out + ".json").write_text(json.dumps({"protocol": protocol, "rows": rows, "seconds": seconds}, indent=1))
    command = ["python benchmarks/blend_variants.py", "-c", a.c, "-n", str(a.n), "--kinds", a.kinds, "--samples",
               str(a.samples), "--boot", str(a.boot)] + ([] if a.fid else ["--no-fid"])
    command += [f"--variant {v}" for v in names]
    lines = [f"# The sampler's exemplar blend: FID against calibration ({', '.join(kinds)})", "",
             f"`{' '.join(command)}`"
             f" (faces64 test, first {a.n} images, mask seed 1234, K = {a.samples}, FID ± the std of {a.boot} "
             "bootstrap draws of test images; FID is biased upwards at small n: compare it only at one n and mask "
             "kind, e.g. with perception_ab_exemplar.md at n = 1,000). Variants: the module docstring of "
             "benchmarks/blend_variants.py.", "",
             "| variant | " + " | ".join(f"{k} FID | {k} coverage90 | {k} r | {k} PSNR" for k in kinds) + " |",
             "|---|" + "---|" * (4 * len(kinds))]
    fmt = lambda v, d: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    for name, r in rows.items():
        cells = []
        for k in kinds:
            c = r[k]
            fid = fmt(c["fid"], 2) + (f" ± {c['fid_std']:.2f}" if c.get("fid_std") else "")
            cells += [fid, fmt(c["coverage90"], 3), fmt(c["unc_corr"], 2), fmt(c["psnr"], 2)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    Path(a.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
