"""LaMa's irregular masks: `thin`, `medium`, `thick` (strokes of round-brushed segments, sometimes boxes)."""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from genfill.masks.kinds import _float_param, _int_param, _rand, _randint, _register, _scale
from genfill.masks.raster import _cap_area, _draw_boxes, _draw_segments, _stroke_bounds

# LaMa's evaluation sets random_{thin,medium,thick}_256 (configs/data_gen/*.yaml in advimman/lama), in
# pixels at 256x256. Boxes are LaMa's alternative generator with weight 0.3 against 1 for strokes, i.e.
# a mask is boxes with probability 0.3 / 1.3. LaMa drops masks covering more than half the image.
_LAMA_COMMON = {"max_angle": 4, "max_area": 0.5, "scale": None}
_LAMA_SETS = {
    "thin": {"min_times": 4, "max_times": 50, "max_width": 10, "max_len": 40, "box_prob": 0.0,
             "box_margin": 10, "box_min_size": 30, "box_max_size": 100, "box_min_times": 0, "box_max_times": 3},
    "medium": {"min_times": 4, "max_times": 5, "max_width": 50, "max_len": 100, "box_prob": 0.3 / 1.3,
               "box_margin": 0, "box_min_size": 10, "box_max_size": 50, "box_min_times": 1, "box_max_times": 5},
    "thick": {"min_times": 1, "max_times": 5, "max_width": 100, "max_len": 200, "box_prob": 0.3 / 1.3,
              "box_margin": 10, "box_min_size": 30, "box_max_size": 150, "box_min_times": 1, "box_max_times": 3},
}  # fmt: skip


def _lama(kind: str, n, height, width, g, device, p: Mapping[str, Any]) -> torch.Tensor:
    lo_t = _int_param(kind, "min_times", p["min_times"], 1)
    hi_t = _int_param(kind, "max_times", p["max_times"], lo_t)
    max_angle = _int_param(kind, "max_angle", p["max_angle"], 1)
    max_len = _int_param(kind, "max_len", p["max_len"], 1)
    max_width = _int_param(kind, "max_width", p["max_width"], 1)
    box_prob = _float_param(kind, "box_prob", p["box_prob"], 0.0, 1.0)
    margin = _int_param(kind, "box_margin", p["box_margin"], 0)
    b_lo = _int_param(kind, "box_min_size", p["box_min_size"], 1)
    b_hi = _int_param(kind, "box_max_size", p["box_max_size"], b_lo)
    bt_lo = _int_param(kind, "box_min_times", p["box_min_times"], 0)
    bt_hi = _int_param(kind, "box_max_times", p["box_max_times"], max(1, bt_lo))
    max_area = _float_param(kind, "max_area", p["max_area"], 0.0, 1.0, low_open=True)
    s = _scale(kind, p["scale"], height, width)
    segs = 5  # LaMa: 1..5 segments per stroke

    def strokes(k: int) -> torch.Tensor:
        times = _randint(g, lo_t, hi_t, (k, 1), device)
        nseg = _randint(g, 1, segs, (k, hi_t, 1), device)
        ok = (torch.arange(segs, device=device) < nseg) & (torch.arange(hi_t, device=device) < times)[..., None]
        # LaMa: angle = 0.01 + randint(max_angle) radians, mirrored (2*pi - angle) on even strokes;
        # length = 10 + randint(max_len), brush = 5 + randint(max_width), both in 256-px units.
        angle = 0.01 + _randint(g, 0, max_angle - 1, (k, hi_t, segs), device).float()
        even = (torch.arange(hi_t, device=device) % 2 == 0)[:, None]
        angle = torch.where(even, 2 * math.pi - angle, angle)
        length = (10 + _randint(g, 0, max_len - 1, (k, hi_t, segs), device)).float() * s
        brush = (5 + _randint(g, 0, max_width - 1, (k, hi_t, segs), device)).float() * s
        radius = brush.clamp_min(1.0) / 2
        x = _randint(g, 0, width - 1, (k, hi_t), device).float()
        y = _randint(g, 0, height - 1, (k, hi_t), device).float()
        xs0, ys0, xs1, ys1 = [], [], [], []
        for j in range(segs):  # a walk: each segment starts where the clipped previous one ended
            nx = (x + length[..., j] * torch.sin(angle[..., j])).clamp(0, width - 1)
            ny = (y + length[..., j] * torch.cos(angle[..., j])).clamp(0, height - 1)
            xs0.append(x), ys0.append(y), xs1.append(nx), ys1.append(ny)
            x, y = nx, ny
        x0, y0, x1, y1 = (torch.stack(c, dim=-1) for c in (xs0, ys0, xs1, ys1))
        sample = torch.arange(k, device=device)[:, None, None].expand_as(ok)
        return _draw_segments(
            k, height, width, sample[ok], x0[ok], y0[ok], x1[ok], y1[ok], radius[ok], device
        )

    def boxes(k: int) -> torch.Tensor:
        # LaMa: box sides uniform in [min_size, max_size), max_size limited by the image minus margins.
        m = min(int(round(margin * s)), (height - 1) // 2, (width - 1) // 2)
        hi = max(1, min(int(round(b_hi * s)), height - 2 * m, width - 2 * m))
        lo = min(max(1, int(round(b_lo * s))), hi)
        count = _randint(g, max(1, bt_lo), bt_hi, (k, 1), device)  # at least one box: never an empty mask
        valid = torch.arange(bt_hi, device=device) < count
        box_h = _randint(g, lo, hi, (k, bt_hi), device)
        box_w = _randint(g, lo, hi, (k, bt_hi), device)
        top = _randint(g, m, height - m - box_h, (k, bt_hi), device)
        left = _randint(g, m, width - m - box_w, (k, bt_hi), device)
        return _draw_boxes(k, height, width, top, left, box_h, box_w, valid)

    def draw(k: int) -> torch.Tensor:
        use_box = _rand(g, (k,), device) < box_prob
        out = torch.empty(k, 1, height, width, device=device)
        idx_box = use_box.nonzero().flatten()
        idx_stroke = (~use_box).nonzero().flatten()
        out[idx_stroke] = strokes(idx_stroke.numel())
        if idx_box.numel() > 0:
            out[idx_box] = boxes(idx_box.numel())
        return out

    return _cap_area(draw, n, height, max_area)


def _lama_doc(kind: str) -> str:
    q = _LAMA_SETS[kind]
    boxes = (
        f"With probability box_prob (default {q['box_prob']:.4f} = 0.3/1.3, LaMa's weights) the mask is instead "
        f"box_min_times..box_max_times boxes (default {max(1, q['box_min_times'])}..{q['box_max_times']}) with "
        f"sides box_min_size..box_max_size (default {q['box_min_size']}..{q['box_max_size']}) and box_margin "
        f"{q['box_margin']} px to the edges, in 256-px units."
        if q["box_prob"] > 0
        else "box_prob defaults to 0 (no boxes); the box_* parameters apply when it is raised."
    )
    return (
        f"LaMa {kind} irregular masks (random_{kind}_256): strokes of 1..5 straight segments with a round brush.\n\n"
        f"    Per mask min_times..max_times strokes (default {q['min_times']}..{q['max_times']}) from uniform start "
        f"pixels; each segment has angle 0.01 + randint(max_angle) (default max_angle 4, mirrored on even strokes), "
        f"length 10 + randint(max_len) (default max_len {q['max_len']}) and brush width 5 + randint(max_width) "
        f"(default max_width {q['max_width']}); lengths and widths are 256-px units multiplied by scale "
        f"(None = min(H,W)/256; widths at least 1 px); ends are clipped to the image. {boxes} Masks over "
        f"max_area (default 0.5, LaMa's max_tamper_area) are redrawn (see _cap_area).\n"
        f"    Hole ratio: guaranteed in [1/(H*W), max_area]; measured spread in benchmarks/results/mask_stats.md."
    )


def _make_lama(kind: str) -> None:
    def generate(n, height, width, g, device, **p):
        return _lama(kind, n, height, width, g, device, p)

    generate.__name__ = f"_{kind}"
    generate.__doc__ = _lama_doc(kind)
    _register(kind, {**_LAMA_SETS[kind], **_LAMA_COMMON}, _stroke_bounds)(generate)


for _kind in _LAMA_SETS:
    _make_lama(_kind)
