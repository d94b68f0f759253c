"""Pixel conventions in one place. Inside the library an image is a float tensor (N,C,H,W) in [-1, 1]; metrics
and classical peers work on [0, 1]; stored and saved images are uint8. A mask is float (N,1,H,W), 1 = hole.
A fill is always composited: known pixels are the input's own, the hole is the prediction's.

A leaf module (torch and numpy only), so data, models, metrics and writers can all share it.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from genfill.errors import GenfillError


# A fill: (x (N,C,H,W) in [-1, 1], m (N,1,H,W), 1 = hole) -> the composited fill (N,C,H,W) in [-1, 1]. A classical
# peer, a model's bound `fill` and the windows of `inpaint` all have this type.
FillFn = Callable[[Tensor, Tensor], Tensor]


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1] (no clamping)."""
    return (x + 1) / 2


def from_unit(x: Tensor) -> Tensor:
    """[0, 1] -> [-1, 1] (no clamping)."""
    return x * 2 - 1


def from_uint8(a: Tensor) -> Tensor:
    """uint8 values 0..255 (any layout) -> float32 in [-1, 1], same layout."""
    return a.float().div_(127.5).sub_(1.0)


def to_uint8(x: Tensor) -> Tensor:
    """float (N,C,H,W) or (C,H,W) in [-1, 1] -> uint8 NHWC / HWC (clamped, rounded), on x's device; the
    layout images are stored and saved in."""
    x = x.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1) if x.dim() == 4 else x.permute(1, 2, 0)


def composite(x: Tensor, m: Tensor, pred: Tensor) -> Tensor:
    """Keep known pixels, take the prediction in the hole: out = m * pred + (1 - m) * x, in x's dtype and on
    x's device (a peer's prediction may come back from the CPU in float64)."""
    pred = pred.to(device=x.device, dtype=x.dtype)
    m = m.to(device=x.device, dtype=x.dtype)
    return m * pred + (1 - m) * x


def show_masked(x: Tensor, m: Tensor) -> Tensor:
    """The masked image as shown to a person: the hole white."""
    return x * (1 - m) + m


def make_grid(x: Tensor, nrow: int, pad: int = 2, value: float = 1.0) -> Tensor:
    """Tile (N,C,H,W) images into one (C,H',W') grid (on the CPU) with `pad` px of background between them."""
    if not isinstance(nrow, int) or isinstance(nrow, bool) or nrow < 1:
        raise GenfillError(f"images per row must be at least 1, got {nrow}")
    n, c, h, w = x.shape
    ncol = min(nrow, max(n, 1))
    nrows = (n + ncol - 1) // ncol
    grid = torch.full((c, nrows * (h + pad) + pad, ncol * (w + pad) + pad), value, dtype=x.dtype)
    for i in range(n):
        r, col = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top : top + h, left : left + w] = x[i].cpu()
    return grid


# The heat map's fixed scale: a per-pixel spread of this much (in [0, 1] pixel units) is drawn white, so
# maps of different images and models read the same (a std of 0.15 is already a hole that could hold anything
# from dark to light; values in [0, 1] have at most 0.5).
HEAT_MAX = 0.15


def heat(u: Tensor, vmax: float = HEAT_MAX) -> Tensor:
    """An uncertainty map (N,1,H,W), >= 0, in [0, 1] pixel units -> an RGB heat map (N,3,H,W) in [-1, 1]:
    black (0) -> red -> yellow -> white (`vmax` or more), matplotlib's "hot"."""
    t = (u.float() / vmax).clamp(0, 1)
    rgb = torch.cat([(t * 3).clamp(0, 1), (t * 3 - 1).clamp(0, 1), (t * 3 - 2).clamp(0, 1)], 1)
    return from_unit(rgb)


def fill_panel(x: Tensor, m: Tensor, *fills: Tensor, nrow: int | None = None,
               uncertainty: Tensor | None = None) -> Tensor:
    """The panel every fill picture uses: the originals, the masked images (hole white), then each of `fills`
    (N,C,H,W), one row each (`nrow` images per row; default N), and with `uncertainty` (N,1,H,W, [0, 1]
    pixel units) a last row of its heat maps. Returns a float32 (C,H',W') grid."""
    rows = [x, show_masked(x, m), *fills]
    if uncertainty is not None:
        rows.append(_as_channels(heat(uncertainty), x.shape[1]))
    return make_grid(torch.cat([r.float().cpu() for r in rows]), nrow=nrow or len(x))


def plural_panel(x: Tensor, m: Tensor, samples: Tensor, uncertainty: Tensor) -> Tensor:
    """One row per image: the input (hole white), its K fills, the heat map of `uncertainty` (N,1,H,W, [0, 1]
    pixel units). `samples` (K,N,C,H,W). Returns a float32 RGB (3,H',W') grid (grey images drawn as grey RGB,
    so the heat map keeps its colours)."""
    k = samples.shape[0]
    rgb = lambda t: t.float().cpu().expand(*t.shape[:-3], 3, *t.shape[-2:])  # noqa: E731
    tiles = torch.stack([rgb(show_masked(x, m)), *rgb(samples), heat(uncertainty).cpu()], 1)
    return make_grid(tiles.flatten(0, 1), nrow=k + 2)


def _as_channels(rgb: Tensor, c: int) -> Tensor:
    """An RGB picture for a panel of c-channel images (grey: its mean)."""
    return rgb if c == 3 else rgb.mean(1, keepdim=True).expand(-1, c, -1, -1)
