"""Rasterisation shared by the stroke and box kinds, batched on any device: round-ended segments, unions of
boxes, and the `max_area` cap (redraw, then cut to the fullest band of rows)."""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch

from genfill.masks.kinds import hole_ratio

# A mask over its kind's `max_area` is redrawn this many times before it is cut down (see _cap_area).
_AREA_TRIES = 10
# Elements per rasterisation chunk: small enough (1 MB of float32) that the distance maths stays in cache.
_CHUNK_ELEMS = 1 << 18


def _draw_segments(
    n: int,
    height: int,
    width: int,
    sample: torch.Tensor,
    x0: torch.Tensor,
    y0: torch.Tensor,
    x1: torch.Tensor,
    y1: torch.Tensor,
    radius: torch.Tensor,
    device: torch.device,
) -> torch.Tensor:
    """Thick line segments with round ends ("capsules") -> (n,1,H,W) float32.

    All inputs are flat (M,) tensors: segment m is drawn into mask ``sample[m]`` from (x0,y0) to (x1,y1) with
    half-width ``radius``; pixel (row i, col j) is a hole when its centre (x=j, y=i) lies within ``radius`` of
    the segment. Round ends make consecutive segments of a stroke meet in round joints. Each segment is
    evaluated only inside a window around it (the largest segment's box, for a rectangular tensor), in chunks.
    """
    out = torch.zeros(n * height * width, dtype=torch.bool, device=device)
    if sample.numel() > 0:
        xmin, xmax = torch.minimum(x0, x1) - radius, torch.maximum(x0, x1) + radius
        ymin, ymax = torch.minimum(y0, y1) - radius, torch.maximum(y0, y1) + radius
        kx = min(width, int(math.ceil(float((xmax - xmin).max()))) + 2)
        ky = min(height, int(math.ceil(float((ymax - ymin).max()))) + 2)
        ox = torch.floor(xmin).long().clamp(0, width - kx)
        oy = torch.floor(ymin).long().clamp(0, height - ky)
        ax = torch.arange(kx, device=device)
        ay = torch.arange(ky, device=device)
        dx, dy = x1 - x0, y1 - y0
        len2 = (dx * dx + dy * dy).clamp_min(1e-12)
        chunk = max(1, _CHUNK_ELEMS // (kx * ky))
        for c in range(0, sample.numel(), chunk):
            s = slice(c, c + chunk)
            px = ox[s, None] + ax  # (m, kx) pixel columns
            py = oy[s, None] + ay  # (m, ky) pixel rows
            qx = (px - x0[s, None]).float()  # offsets from the segment start
            qy = (py - y0[s, None]).float()
            # With q the offset and d the direction, the closest point is t = clamp(q.d / |d|^2, 0, 1) and
            # dist^2 = |q|^2 - 2 t q.d + t^2 |d|^2; the q-only parts are separable, so only the sums are (m,ky,kx).
            qd = (qy * dy[s, None])[:, :, None] + (qx * dx[s, None])[:, None, :]
            q2 = (qy * qy)[:, :, None] + (qx * qx)[:, None, :]
            l2 = len2[s, None, None]
            t = (qd / l2).clamp_(0.0, 1.0)
            dist2 = q2.addcmul_(t, (t * l2).sub_(qd, alpha=2.0))
            m, iy, ix = (dist2 <= (radius[s] ** 2)[:, None, None]).nonzero(as_tuple=True)
            m = m + c
            out[sample[m] * (height * width) + (oy[m] + iy) * width + (ox[m] + ix)] = True
    return out.view(n, 1, height, width).float()


def _draw_boxes(
    n: int,
    height: int,
    width: int,
    top: torch.Tensor,
    left: torch.Tensor,
    box_h: torch.Tensor,
    box_w: torch.Tensor,
    valid: torch.Tensor,
) -> torch.Tensor:
    """Union of axis-aligned boxes -> (n,1,H,W) float32. All inputs (n, B); box b of sample i covers rows
    top..top+box_h-1 and columns left..left+box_w-1 when ``valid[i, b]``."""
    rows = torch.arange(height, device=top.device)
    cols = torch.arange(width, device=top.device)
    in_rows = (rows >= top[..., None]) & (rows < (top + box_h)[..., None]) & valid[..., None]  # (n, B, H)
    in_cols = (cols >= left[..., None]) & (cols < (left + box_w)[..., None])  # (n, B, W)
    covered = (in_rows.float().transpose(1, 2) @ in_cols.float()) > 0  # (n, H, W): any box covers the pixel
    return covered.float().unsqueeze(1)


def _cap_area(draw: Callable[[int], torch.Tensor], n: int, height: int, max_area: float) -> torch.Tensor:
    """Draw n masks with ``draw(k)`` keeping only those with hole ratio <= max_area.

    Masks over the cap are redrawn up to _AREA_TRIES times (LaMa drops such masks from its test sets:
    ``max_tamper_area``). Any still over are cut to the band of floor(max_area*H) full rows that holds the most
    hole pixels, which keeps the ratio <= max_area and (when the band has a row) at least one hole pixel.
    """
    masks = draw(n)
    if max_area >= 1.0 or n == 0:
        return masks
    for _ in range(_AREA_TRIES):
        over = (hole_ratio(masks) > max_area).nonzero().flatten()
        if over.numel() == 0:
            return masks
        masks[over] = draw(over.numel())
    over = (hole_ratio(masks) > max_area).nonzero().flatten()
    if over.numel() > 0:
        band = max(1, int(math.floor(max_area * height)))
        rows = masks[over, 0].sum(dim=2)  # (k, H) hole pixels per row
        csum = torch.nn.functional.pad(rows.cumsum(dim=1), (1, 0))
        best = (csum[:, band:] - csum[:, :-band]).argmax(dim=1)  # first row of the fullest band
        r = torch.arange(height, device=masks.device)
        keep = (r >= best[:, None]) & (r < best[:, None] + band)
        masks[over] = masks[over] * keep[:, None, :, None].float()
    return masks


def _stroke_bounds(height: int, width: int, p: Mapping[str, Any]) -> tuple[float, float]:
    # Every stroke kind draws at least one stroke of width >= 1 px, so at least one hole pixel; the cap
    # bounds it above (a band cut keeps floor(max_area*H) rows, so the ratio is <= max_area there too).
    return 1.0 / (height * width), float(p["max_area"])
