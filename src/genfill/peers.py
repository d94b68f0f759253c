"""Classical inpainting baselines ("peers") that every learned model is compared against.

Each peer is `fill(x, m) -> out`: x (N,C,H,W) float in [-1, 1], m (N,1,H,W) float, 1 = hole; out has
x's shape, dtype and device, already composited (`m * pred + (1 - m) * x`), so known pixels are x's own.
They run on the CPU, one image at a time; C may be 1 (greyscale) or 3 (any other C is filled per channel).

`patchmatch` is the exemplar-based peer: it copies patches of the image's own known pixels into the hole
(PatchMatch's randomised nearest-neighbour field, Barnes et al. 2009, inside the coarse-to-fine
expectation-maximisation completion of Wexler et al. 2007, as in Photoshop's Content-Aware Fill), so it
continues textures where the diffusion peers (Telea, Navier-Stokes, biharmonic) draw a smooth blend. It runs
the native library of the `pypatchmatch` wheel (InvokeAI's PyPatchMatch: C++ with a static OpenCV) with a
fixed seed, so the same image and hole always give the same fill. Speed: benchmarks/results/perception_speed.json.
"""

from __future__ import annotations

import threading
from typing import Callable

import cv2
import numpy as np
import torch
from skimage.restoration import inpaint_biharmonic

from genfill.errors import GenfillError
from genfill.pixels import FillFn, composite, from_unit, to_unit


def _check(x: torch.Tensor, m: torch.Tensor) -> None:
    if x.ndim != 4 or m.ndim != 4 or m.shape[1] != 1 or m.shape[0] != x.shape[0] or m.shape[2:] != x.shape[2:]:
        raise GenfillError(f"peers need x (N,C,H,W) and mask (N,1,H,W) of one size, got {tuple(x.shape)}, {tuple(m.shape)}")


def _per_image(fill_one: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> FillFn:
    """Lift fill_one(img HWC float64 in [0, 1], hole HW bool) -> HWC in [0, 1] to a batched peer."""

    def peer(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        _check(x, m)
        imgs = to_unit(x.detach().cpu().double()).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        holes = (m.detach().cpu()[:, 0] > 0.5).numpy()
        out = np.stack([fill_one(img, hole) if hole.any() else img for img, hole in zip(imgs, holes)])
        pred = from_unit(torch.from_numpy(np.ascontiguousarray(out)).permute(0, 3, 1, 2))
        return composite(x, m, pred)

    peer.__doc__ = fill_one.__doc__
    return peer


def _cv2_fill(flag: int, radius: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def fill_one(img: np.ndarray, hole: np.ndarray) -> np.ndarray:
        u8 = np.round(img * 255).astype(np.uint8)
        mask = hole.astype(np.uint8)
        c = u8.shape[2]
        if c in (1, 3):  # cv2.inpaint takes 8-bit images with 1 or 3 channels
            res = cv2.inpaint(u8, mask, radius, flag).reshape(u8.shape)
        else:
            res = np.stack([cv2.inpaint(u8[..., i], mask, radius, flag) for i in range(c)], axis=2)
        return res.astype(np.float64) / 255

    return fill_one


def telea(x: torch.Tensor, m: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Telea's fast-marching inpainting (cv2.INPAINT_TELEA) on 8-bit images."""
    return _per_image(_cv2_fill(cv2.INPAINT_TELEA, radius))(x, m)


def navier_stokes(x: torch.Tensor, m: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Navier-Stokes based inpainting (cv2.INPAINT_NS) on 8-bit images."""
    return _per_image(_cv2_fill(cv2.INPAINT_NS, radius))(x, m)


def _biharmonic_one(img: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Biharmonic inpainting (skimage.restoration.inpaint_biharmonic), clipped to the image range."""
    return np.clip(inpaint_biharmonic(img, hole, channel_axis=-1), 0, 1)


biharmonic = _per_image(_biharmonic_one)


# PatchMatch compares (2 r + 1)^2 patches: r = 3 (7x7, the library's own examples) follows a 64 px face's
# features and fills a 512x512 photo with a 10 % hole in 0.87 s of CPU (benchmarks/results/perception_speed.json).
PATCH_RADIUS = 3
PATCHMATCH_SEED = 0
# The native library keeps its random seed in a global: one fill at a time, so each starts from the seed.
_PATCHMATCH_LOCK = threading.Lock()


def _patchmatch_lib():
    try:
        from patchmatch import patch_match
    except ImportError as exc:
        raise GenfillError(f"the patchmatch peer needs the pypatchmatch wheel: pip install pypatchmatch ({exc})") from exc
    if not patch_match.patchmatch_available:
        raise GenfillError("the patchmatch peer's native library did not load: pip install --force-reinstall pypatchmatch")
    return patch_match


def _patchmatch_one(img: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """PatchMatch exemplar fill (Barnes et al. 2009 with Wexler et al. 2007's coarse-to-fine completion):
    7x7 patches of the known pixels, seeded, on 8-bit images (an image with no known pixel: mid-grey)."""
    if hole.all():
        return np.full_like(img, 0.5)
    lib = _patchmatch_lib()
    u8 = np.round(img * 255).astype(np.uint8)
    mask = hole.astype(np.uint8) * 255
    # The library takes 3-channel images: a greyscale image goes in as grey RGB, other channel counts per channel.
    planes = [u8] if u8.shape[2] == 3 else [np.repeat(u8[..., i:i + 1], 3, axis=2) for i in range(u8.shape[2])]
    out = []
    with _PATCHMATCH_LOCK:
        for plane in planes:
            lib.set_random_seed(PATCHMATCH_SEED)
            out.append(lib.inpaint(np.ascontiguousarray(plane), mask, patch_size=PATCH_RADIUS))
    res = out[0] if u8.shape[2] == 3 else np.stack([o[..., 0] for o in out], axis=2)
    return res.astype(np.float64) / 255


patchmatch = _per_image(_patchmatch_one)


def mean_fill(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Fill holes with each image's per-channel mean over known pixels (0, mid-grey, if none is known)."""
    _check(x, m)
    known = (1 - m).to(x.dtype)
    count = known.sum(dim=(2, 3), keepdim=True)
    mean = (x * known).sum(dim=(2, 3), keepdim=True) / count.clamp_min(1)
    return composite(x, m, mean.expand_as(x))


PEERS: dict[str, FillFn] = {"telea": telea, "ns": navier_stokes, "biharmonic": biharmonic, "patchmatch": patchmatch,
                          "mean": mean_fill}
