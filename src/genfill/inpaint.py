"""Native-resolution fill: a model trained at S x S fills a photo of any size, and only the hole changes.

What happens at which size (the README repeats this):

- **Image no larger than S in either side**: the whole image is reflect-padded to S x S (never stretched),
  filled in one pass, and the padding cropped off.
- **Larger image, hole region of side h <= S** (h = the longer side of the region's bounding box): a square
  window of side max(S, 3h) centred on the region (a margin of at least h on every side, shifted and then
  clipped to the image) is downscaled to fit S x S (box filter, aspect kept, reflect-padded), filled, and the
  predicted hole pixels are upsampled (bicubic) back to the window's own resolution.
- **Hole region with h > S** ("too big for one window": its window would be shrunk more than 3x): a coarse
  fill of that window (the whole image when the margin does not fit) as above, then a refine pass over the
  region in cells of S x S native pixels, each filled inside its own 3S x 3S window (shrunk exactly 3x)
  where the coarse fill of the rest of the hole counts as context.

Hole regions are the 8-connected components of the mask, merged while their margins overlap, filled one
after another (an earlier region's fill is context for the next). Only hole pixels are pasted, with a narrow
feathered edge *inside* the hole: within `feather` px of the hole's edge the upsampled prediction is blended
towards the nearest known pixel, which hides the seam resampling leaves. Every pixel outside the hole is the
input's own, bit for bit (the caller composites in the input's dtype; see api.py).

A fill function is `fill_fn(x, m) -> out`: x (N,C,S,S) float in [-1, 1], m (N,1,S,S) float, 1 = hole,
out composited (N,C,S,S): a GenModel's `fill`, or an exported ONNX graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

FillFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

REFINE_SCALE = 3  # a refine cell of S native pixels sits in a window of REFINE_SCALE * S, shrunk that much


@dataclass
class Region:
    """A group of hole pixels filled together: its bounding box (top, left, bottom, right; exclusive ends)
    and the (H,W) bool mask of its pixels."""

    box: tuple[int, int, int, int]
    pixels: np.ndarray

    @property
    def side(self) -> int:
        t, l, b, r = self.box
        return max(b - t, r - l)


def hole_regions(hole: np.ndarray) -> list[Region]:
    """8-connected components of `hole` (H,W bool), merged while their boxes grown by their own side (the
    margin each gets) overlap, so nearby holes share one window."""
    labels, n = ndimage.label(hole, structure=np.ones((3, 3), bool))
    groups = [([i + 1], (s[0].start, s[1].start, s[0].stop, s[1].stop))
              for i, s in enumerate(ndimage.find_objects(labels))]

    def grown(box):
        t, l, b, r = box
        g = max(b - t, r - l)
        return t - g, l - g, b + g, r + g

    merged = True
    while merged and len(groups) > 1:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                a, c = grown(groups[i][1]), grown(groups[j][1])
                if a[0] < c[2] and c[0] < a[2] and a[1] < c[3] and c[1] < a[3]:
                    (li, bi), (lj, bj) = groups[i], groups[j]
                    groups[i] = (li + lj, (min(bi[0], bj[0]), min(bi[1], bj[1]), max(bi[2], bj[2]), max(bi[3], bj[3])))
                    del groups[j]
                    merged = True
                    break
            if merged:
                break
    return [Region(box, np.isin(labels, ids)) for ids, box in groups]


def square_window(box: tuple[int, int, int, int], side: int, height: int, width: int) -> tuple[int, int, int, int]:
    """A square of `side` centred on `box`, shifted to lie inside the image, clipped where the image is smaller."""

    def span(lo: int, hi: int, limit: int) -> tuple[int, int]:
        s = min(side, limit)
        lo -= (s - (hi - lo)) // 2
        lo = min(max(lo, 0), limit - s)
        return lo, lo + s

    t, b = span(box[0], box[2], height)
    l, r = span(box[1], box[3], width)
    return t, l, b, r


def pad_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect-pad (N,C,h,w) on the bottom and right to (size, size); replicate where reflection runs out."""
    while x.shape[-2] < size or x.shape[-1] < size:
        h, w = x.shape[-2:]
        ph, pw = min(size - h, h - 1), min(size - w, w - 1)
        if ph <= 0 and pw <= 0:  # a side of 1 px cannot be reflected
            return F.pad(x, (0, size - w, 0, size - h), mode="replicate")
        x = F.pad(x, (0, max(pw, 0), 0, max(ph, 0)), mode="reflect")
    return x


def _nearest_known(img: torch.Tensor, hole: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """(C,h,w) image whose hole pixels hold the value of their nearest known pixel, and each pixel's
    distance to it (0 outside the hole)."""
    dist, idx = ndimage.distance_transform_edt(hole, return_indices=True)
    iy = torch.from_numpy(idx[0]).to(img.device)
    ix = torch.from_numpy(idx[1]).to(img.device)
    return img[:, iy, ix], dist


def fill_window(img: torch.Tensor, win: tuple[int, int, int, int], hole: np.ndarray, paste: np.ndarray,
                fill_fn: FillFn, size: int, feather: int | None = None) -> None:
    """Fill `img` (C,H,W, [-1, 1]) in place inside the window `win` = (top, left, bottom, right): the model
    sees the window shrunk to fit size x size with `hole` (the window's (h,w) bool: every pixel not to be
    trusted) as its hole; the pixels `paste` ((h,w) bool, within `hole`) take the upsampled prediction."""
    t, l, b, r = win
    x = img[:, t:b, l:r]
    h, w = x.shape[-2:]
    if not paste.any():
        return
    # Hole pixels get their nearest known value first, so what lies under the hole never leaks into the
    # known pixels around it when the window is shrunk.
    x0, dist = _nearest_known(x, hole)
    m = torch.from_numpy(hole).to(x)[None, None]
    scale = min(1.0, size / max(h, w))
    if scale < 1:
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        xs = F.interpolate(x0[None], size=(sh, sw), mode="area")
        ms = (F.interpolate(m, size=(sh, sw), mode="area") > 0).to(x)  # any hole pixel under it: hole
    else:
        sh, sw, xs, ms = h, w, x0[None], m
    out = fill_fn(pad_to(xs, size), pad_to(ms, size))[..., :sh, :sw].to(x)
    if scale < 1:
        out = F.interpolate(out, size=(h, w), mode="bicubic", align_corners=False).clamp(-1, 1)
    pred = out[0]
    feather = (math.ceil(1 / scale) + 1 if scale < 1 else 0) if feather is None else feather
    if feather > 0:
        wgt = torch.from_numpy(np.clip(dist / feather, 0, 1)).to(x)
        pred = wgt * pred + (1 - wgt) * x0
    sel = torch.from_numpy(paste).to(x.device)
    img[:, t:b, l:r] = torch.where(sel, pred, x)


def fill_native(x: torch.Tensor, hole: np.ndarray, fill_fn: FillFn, size: int, feather: int | None = None) -> torch.Tensor:
    """Fill image `x` (C,H,W) in [-1, 1] of any size under `hole` (H,W bool, True = hole) with a model that
    works at size x size (module docstring). Returns a new (C,H,W) tensor; pixels outside the hole are x's."""
    img = x.clone()
    height, width = hole.shape
    if height <= size and width <= size:
        fill_window(img, (0, 0, height, width), hole, hole, fill_fn, size, feather)
        return img
    todo = hole.copy()  # hole pixels not filled yet: part of the model's hole in every window
    for region in hole_regions(hole):
        side = region.side
        t, l, b, r = win = square_window(region.box, max(size, 3 * side), height, width)
        fill_window(img, win, todo[t:b, l:r], region.pixels[t:b, l:r], fill_fn, size, feather)
        todo &= ~region.pixels
        if side > size:
            _refine(img, region, todo, fill_fn, size, feather)
    return img


def _refine(img: torch.Tensor, region: Region, todo: np.ndarray, fill_fn: FillFn, size: int,
            feather: int | None) -> None:
    """Refine a coarse fill cell by cell: each S x S cell of the region is the hole of a 3S x 3S window
    (where other regions' unfilled pixels stay hole too)."""
    height, width = region.pixels.shape
    t0, l0, b0, r0 = region.box
    for ct in range(t0, b0, size):
        for cl in range(l0, r0, size):
            cb, cr = min(ct + size, b0), min(cl + size, r0)
            if not region.pixels[ct:cb, cl:cr].any():
                continue
            t, l, b, r = win = square_window((ct, cl, cb, cr), REFINE_SCALE * size, height, width)
            cell = np.zeros((b - t, r - l), bool)
            cell[ct - t : cb - t, cl - l : cr - l] = region.pixels[ct:cb, cl:cr]
            fill_window(img, win, cell | todo[t:b, l:r], cell, fill_fn, size, feather)
