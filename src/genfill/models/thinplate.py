"""The thin-plate prior: the classical fill the unet corrects, computed on the device, batched, no host sync.

Two stages, both fixed iteration counts (so the cost is fixed and the same graph serves every mask):

1. **Harmonic (Laplace) fill** by a coarse-to-fine multigrid cascade. The known-pixel average image and the
   known fraction are pooled 2x down `levels` times (ceil mode, so odd sides pool too); at the coarsest level
   Jacobi sweeps start from each image's mean known colour; each finer level starts from the bilinear
   upsampling of the coarser solution and runs `iters` Jacobi sweeps ``u <- m * avg4(u) + (1 - m) * x``
   (replicate borders = Neumann). A 32x32 square converges in a few dozen sweeps per level instead of
   thousands at full size.
2. **Thin-plate (biharmonic) refinement**: `smooth_iters` conjugate-gradient iterations on
   ``m * laplace(laplace(u)) = 0`` in the hole with the known pixels fixed (what scikit-image's
   `inpaint_biharmonic` solves per region with a sparse direct solver), started from the harmonic fill. It
   continues gradients across thin strokes where the harmonic fill flattens them. Stopping at ~40-50 is
   deliberate: the fully converged thin-plate fill overshoots inside large holes (the measurements, and the
   table per prior: benchmarks/results/presets.md#unet-faces64). The older solver ``descent`` (plain
   gradient steps, several times slower to converge) is kept for unet checkpoints trained on it.

Why it is cheap: every stencil is one replicate pad and in-place sums of its shifted slices, each CG
iteration is ~15 tensor ops (the step sizes are (N,1,1,1) tensors: each image its own, converged images stop
moving), and the loops are TorchScript functions, so eager runs pay no Python per iteration and the ONNX
export holds each loop once, as an ONNX `Loop` (a graph of a few hundred nodes at any image size, instead of
the tens of thousands an unrolled trace gives). The number of pyramid levels is a property of the model
(`levels_for(image_size)`), not of the input, so a dynamic-size ONNX graph computes exactly what torch does.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from genfill.errors import GenfillError
from genfill.pixels import composite

SOLVERS = ("cg", "descent")
COARSEST = 8  # the pyramid stops at this side (or at an odd side)

def levels_for(height: int, width: int | None = None, coarsest: int = COARSEST) -> int:
    """How many 2x poolings the cascade makes for an image of this size: halve while the smaller side is
    above `coarsest` and both sides are even (64 -> 3: 64, 32, 16, 8)."""
    h, w = height, height if width is None else width
    n = 0
    while min(h, w) > coarsest and h % 2 == 0 and w % 2 == 0:
        h, w, n = h // 2, w // 2, n + 1
    return n


def _avg4(u: Tensor) -> Tensor:
    """The mean of the 4 neighbours, replicate borders (Neumann)."""
    p = F.pad(u, (1, 1, 1, 1), mode="replicate")
    return (p[:, :, :-2, 1:-1] + p[:, :, 2:, 1:-1]).add_(p[:, :, 1:-1, :-2]).add_(p[:, :, 1:-1, 2:]).mul_(0.25)


def _laplace(u: Tensor) -> Tensor:
    """5-point Laplacian, replicate borders (Neumann): 4 * (avg4(u) - u), a symmetric operator (which
    conjugate gradients need). One pad and in-place adds of slices: 3x faster on CPU than a depthwise conv."""
    p = F.pad(u, (1, 1, 1, 1), mode="replicate")
    return (p[:, :, :-2, 1:-1] + p[:, :, 2:, 1:-1]).add_(p[:, :, 1:-1, :-2]).add_(p[:, :, 1:-1, 2:]).sub_(u, alpha=4.0)


def _jacobi(u: Tensor, hole: Tensor, fixed: Tensor, sweeps: int) -> Tensor:
    """`sweeps` Jacobi sweeps u <- hole * avg4(u) + fixed (fixed = the known colour outside the hole)."""
    for _ in range(sweeps):
        u = torch.addcmul(fixed, hole, _avg4(u))
    return u


def _cg(u: Tensor, hole: Tensor, iters: int) -> Tensor:
    """`iters` conjugate-gradient iterations on hole * L(L(u)) = 0 from `u` (hole-supported updates)."""
    r = -hole * _laplace(_laplace(u))
    p = r
    rr = (r * r).sum((1, 2, 3), keepdim=True)
    for _ in range(iters):
        ap = hole * _laplace(_laplace(p))
        pap = (p * ap).sum((1, 2, 3), keepdim=True)
        # pap = |L p|^2 > 0 unless p = 0 (a converged image stops moving) or p is constant (an all-hole image)
        alpha = torch.where(pap > 0, rr / pap.clamp_min(1e-30), torch.zeros_like(pap))
        u = torch.addcmul(u, alpha, p)
        r = torch.addcmul(r, alpha, ap, value=-1.0)
        rr_next = (r * r).sum((1, 2, 3), keepdim=True)
        p = torch.addcmul(r, rr_next / rr.clamp_min(1e-30), p)
        rr = rr_next
    return u


def _descent(u: Tensor, hole: Tensor, iters: int, step: float) -> Tensor:
    """`iters` gradient steps u <- u - step * hole * L(L(u)) (the older solver)."""
    for _ in range(iters):
        u = u - step * hole * _laplace(_laplace(u))
    return u


@lru_cache(maxsize=None)
def _scripted(name: str):
    """The TorchScript version of a loop (compiled once per process): no Python per iteration, and an ONNX
    `Loop` in an exported graph."""
    return torch.jit.script({"jacobi": _jacobi, "cg": _cg, "descent": _descent}[name])


def harmonic_fill(x: Tensor, m: Tensor, iters: int = 24, coarsest: int = COARSEST, levels: int | None = None) -> Tensor:
    """Harmonic (Laplace) fill of the hole, (N,C,H,W) float32, known pixels exactly `x` (module docstring).
    `m` (N,1,H,W), 1 = hole. `levels`: 2x poolings of the cascade (default `levels_for(H, W, coarsest)`)."""
    x, m = x.float(), m.float()
    if levels is None:
        levels = levels_for(x.shape[-2], x.shape[-1], coarsest)
    jacobi = _scripted("jacobi")
    known = 1 - m
    pyramid = [(x * known, known)]
    for _ in range(levels):
        xs, ks = pyramid[-1]
        # xs stays "known colour * known fraction", so xs / ks is the mean known colour under a coarse pixel
        pyramid.append((F.avg_pool2d(xs, 2, ceil_mode=True), F.avg_pool2d(ks, 2, ceil_mode=True)))
    u = x
    for i, (xs, ks) in enumerate(reversed(pyramid)):
        colour = xs / ks.clamp_min(1e-6)
        hole = (ks <= 0).to(xs.dtype)  # a coarse pixel is free only when none of its pixels is known
        fixed = (1 - hole) * colour
        if i == 0:  # coarsest: start from each image's mean known colour
            mean = xs.sum((2, 3), keepdim=True) / ks.sum((2, 3), keepdim=True).clamp_min(1e-6)
            u = jacobi(hole * mean + fixed, hole, fixed, iters * 2)
        else:
            u = F.interpolate(u, size=xs.shape[-2:], mode="bilinear", align_corners=False)
            u = jacobi(hole * u + fixed, hole, fixed, iters)
    return composite(x, m, u)


def biharmonic_fill(x: Tensor, m: Tensor, iters: int = 24, smooth_iters: int = 40, step: float = 0.025,
                    solver: str = "cg", levels: int | None = None) -> Tensor:
    """Thin-plate fill (N,C,H,W) float32: the harmonic fill, then `smooth_iters` iterations of `solver`
    (``cg``, or ``descent``: gradient steps of size `step`; the squared 5-point Laplacian has eigenvalues up to
    64, so any step < 2/64 is stable) towards the minimum of sum |laplace u|^2 with the known pixels fixed.
    `m` (N,1,H,W), 1 = hole; `levels` as in `harmonic_fill`."""
    if solver not in SOLVERS:
        raise GenfillError(f"biharmonic_fill: solver {solver!r} is not one of {', '.join(SOLVERS)}")
    u = harmonic_fill(x, m, iters, levels=levels)
    hole = m.float()
    if solver == "descent":
        u = _scripted("descent")(u, hole, smooth_iters, step)
    else:
        u = _scripted("cg")(u, hole, smooth_iters)
    return composite(x.float(), hole, u)
