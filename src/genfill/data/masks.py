"""Hole masks for inpainting: (N,1,H,W) float32, values exactly 0.0 or 1.0, **1 = hole**, 0 = known.

Every kind is a batched torch generator registered in ``MASK_KINDS``; draw masks with

    make_masks("thin", 16, 256, 256, generator=g)        # random, for training
    fixed_masks("thick", 100, 256, 256, seed=0)          # the same holes for every model, forever
    load_mask_file("hole.png", size=(256, 256))          # a user's own mask

Kinds (parameters and their defaults are in each generator's docstring and in ``MASK_KINDS[k].defaults``):

    square    one size x size square, `margin` px from every edge (seed 002's 32 px / 16 px masks)
    box       1..max_boxes random axis-aligned rectangles
    center    one centred rectangle covering `ratio` of each side
    freeform  DeepFill v2 free-form brush strokes
    thin, medium, thick   LaMa's irregular masks (strokes; medium/thick sometimes LaMa's boxes instead)
    mixed     per sample, one kind drawn uniformly from a list
    file      a mask image on disk, repeated n times

Hole ratios. ``MaskKind.bounds(h, w, **params)`` gives bounds that *every* mask obeys (derived from the
geometry and the ``max_area`` caps, not measured) and ``MaskKind.ratio_range`` is that pair at 256x256
with default parameters. The measured spread, 1st..99th percentile of 1000 masks
(``python benchmarks/mask_stats.py``), default parameters:

    kind       64x64          256x256        guaranteed at 256x256
    square     0.250 (exact)  0.0156 (exact) (0.0156, 0.0156)
    box        0.021..0.376   0.021..0.371   (0.0103, 0.7500)
    center     0.250 (exact)  0.250 (exact)  (0.2500, 0.2500)
    freeform   0.020..0.357   0.019..0.354   (1.5e-05, 0.5000)
    thin       0.043..0.476   0.038..0.475   (1.5e-05, 0.5000)
    medium     0.004..0.428   0.006..0.425   (1.5e-05, 0.5000)
    thick      0.020..0.496   0.022..0.495   (1.5e-05, 0.5000)
    mixed      0.015..0.465   0.013..0.464   (1.5e-05, 0.7500)

The stroke kinds' guaranteed lower bound is one pixel: LaMa's smallest stroke (one 10 px segment, 5 px
brush at 256) is that small by design. At 64x64 the default square has one place only, the centre.

Randomness: all draws go through one ``torch.Generator`` living on the output's device, so nothing touches
torch's global RNG. ``fixed_masks`` gives each index its own CPU generator seeded from
(kind, seed, index), which makes mask i independent of the batch it is drawn in and of the device.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from genfill.errors import GenfillError, did_you_mean

__all__ = [
    "MASK_KINDS",
    "MaskBank",
    "MaskKind",
    "check_params",
    "fixed_masks",
    "hole_ratio",
    "load_mask_file",
    "make_masks",
    "mask_bank",
    "mask_kinds",
]

# LaMa's and DeepFill's pixel parameters were tuned for 256x256 crops; we scale them by min(H, W) / 256.
REFERENCE_SIDE = 256
# A mask over its kind's `max_area` is redrawn this many times before it is cut down (see _cap_area).
_AREA_TRIES = 10
# Elements per rasterisation chunk: small enough (1 MB of float32) that the distance maths stays in cache.
_CHUNK_ELEMS = 1 << 18


# ----------------------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------------------

Generate = Callable[..., torch.Tensor]  # (n, height, width, generator, device, **params) -> (n,1,H,W)
Bounds = Callable[[int, int, Mapping[str, Any]], "tuple[float, float]"]


@dataclass(frozen=True)
class MaskKind:
    """One registered mask kind.

    ``generate(n, height, width, generator, device, **params)`` returns (n,1,H,W) float32 masks on ``device``;
    it receives every parameter (defaults filled in). ``bounds(height, width, **params)`` returns the
    (low, high) hole ratio that every mask of that size obeys. ``random`` is False for kinds whose output
    does not depend on the generator (center, file).
    """

    name: str
    generate: Generate
    defaults: Mapping[str, Any]
    bounds_fn: Bounds
    random: bool = True
    summary: str = field(default="", compare=False)

    def bounds(self, height: int = REFERENCE_SIDE, width: int = REFERENCE_SIDE, **params: Any) -> tuple[float, float]:
        """Guaranteed (low, high) hole ratio of every mask of this kind at ``height`` x ``width``."""
        full = _resolve(self.name, params)
        _check_size(1, height, width)
        return self.bounds_fn(height, width, full)

    @property
    def ratio_range(self) -> tuple[float, float]:
        """Guaranteed (low, high) hole ratio at the reference size 256x256 with default parameters."""
        return self.bounds(REFERENCE_SIDE, REFERENCE_SIDE)


MASK_KINDS: dict[str, MaskKind] = {}


def _register(name: str, defaults: Mapping[str, Any], bounds: Bounds, random: bool = True):
    def wrap(fn: Generate) -> Generate:
        doc = (fn.__doc__ or "").strip().splitlines()
        MASK_KINDS[name] = MaskKind(name, fn, dict(defaults), bounds, random, doc[0] if doc else "")
        return fn

    return wrap


def mask_kinds() -> list[str]:
    """Names of the registered mask kinds, in registration order."""
    return list(MASK_KINDS)


def _get_kind(kind: str) -> MaskKind:
    if kind not in MASK_KINDS:
        raise GenfillError(f"unknown mask kind {kind!r}{did_you_mean(kind, MASK_KINDS)}; valid kinds: "
                           f"{', '.join(MASK_KINDS)}")
    return MASK_KINDS[kind]


def check_params(kind: str, params: Mapping[str, Any]) -> None:
    """Raise GenfillError if ``kind`` is not registered or ``params`` holds a key the kind does not take.

    Only the keys are checked here; values are checked by the generator when masks are drawn.
    """
    spec = _get_kind(kind)
    unknown = [k for k in params if k not in spec.defaults]
    if unknown:
        valid = ", ".join(spec.defaults) or "(none)"
        raise GenfillError(f"unknown parameter {unknown[0]!r} for mask kind {kind!r}; valid parameters: {valid}")


def check_mask(kind: str, params: Mapping[str, Any], height: int, width: int) -> None:
    """`check_params`, and the values too: the kind's geometry at height x width (its bounds), without
    drawing a mask, so a config is refused at load time as the run would refuse it."""
    _get_kind(kind).bounds(height, width, **params)


def _resolve(kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
    check_params(kind, params)
    return {**MASK_KINDS[kind].defaults, **params}


# ----------------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------------


def make_masks(
    kind: str,
    n: int,
    height: int,
    width: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    **params: Any,
) -> torch.Tensor:
    """Draw ``n`` random masks of ``kind``: (n,1,height,width) float32 on ``device``, 1 = hole.

    ``generator`` must live on ``device`` (torch draws random numbers where the tensor is made). When it is
    None a fresh generator is seeded from OS entropy (``torch.Generator(device).seed()``): the masks are
    then unpredictable, and torch's global RNG state is neither read nor advanced.
    """
    spec = _get_kind(kind)
    full = _resolve(kind, params)
    _check_size(n, height, width)
    device = _as_device(device)
    if generator is None:
        generator = torch.Generator(device=device)
        generator.seed()
    elif not _same_device(generator.device, device):
        raise GenfillError(f"the mask generator is on {generator.device} but masks were asked for on {device}")
    masks = spec.generate(n, height, width, generator, device, **full)
    return masks.to(dtype=torch.float32)


def fixed_masks(
    kind: str,
    n: int,
    height: int,
    width: int,
    *,
    seed: int = 0,
    start: int = 0,
    device: torch.device | str = "cpu",
    **params: Any,
) -> torch.Tensor:
    """Deterministic masks for indices ``start .. start+n-1``: (n,1,height,width) float32 on ``device``.

    Mask i depends only on (kind, params, seed, start+i, height, width): each index gets its own CPU
    generator seeded from a hash of (kind, seed, index), so ``fixed_masks(k, 10, ...)`` equals the first ten
    of ``fixed_masks(k, 100, ...)``, ``start=10`` continues where they stopped, and the result is the same
    on every device (drawn on CPU, then moved). One index at a time: use it for evaluation sets, not in a
    training loop.
    """
    _check_size(n, height, width)
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise GenfillError(f"start must be an integer >= 0, got {start!r}")
    return masks_at(kind, range(start, start + n), height, width, seed=seed, device=device, **params)


def masks_at(
    kind: str,
    indices: Sequence[int],
    height: int,
    width: int,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    **params: Any,
) -> torch.Tensor:
    """The fixed masks of `fixed_masks` for any indices (in any order): (len(indices),1,height,width)."""
    spec = _get_kind(kind)
    full = _resolve(kind, params)
    _check_size(len(indices), height, width)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise GenfillError(f"seed must be an integer, got {seed!r}")
    cpu = torch.device("cpu")
    out = torch.empty(len(indices), 1, height, width, dtype=torch.float32)
    for i, index in enumerate(indices):
        g = torch.Generator(device=cpu)
        g.manual_seed(_index_seed(kind, seed, int(index)))
        out[i] = spec.generate(1, height, width, g, cpu, **full)[0]
    return out.to(_as_device(device))


def hole_ratio(masks: torch.Tensor) -> torch.Tensor:
    """Fraction of hole pixels per mask: (N,1,H,W) -> (N,) float32."""
    if masks.dim() != 4 or masks.shape[1] != 1:
        raise GenfillError(f"masks must have shape (N,1,H,W), got {tuple(masks.shape)}")
    return masks.flatten(1).float().mean(dim=1)


def load_mask_file(
    path: str | Path,
    size: tuple[int, int] | None = None,
    *,
    resize: bool = False,
) -> torch.Tensor:
    """Read a mask image (any format PIL opens) as (1,1,H,W) float32; a grey level > 127 is a hole.

    Colour images are converted to grey first (PIL's "L" mode; alpha is dropped). ``size`` = (H, W) is the
    size the caller needs: a file of another size is an error unless ``resize=True``, which rescales it with
    nearest-neighbour sampling (so the mask stays binary). ``size=None`` keeps the file's own size.
    """
    from PIL import Image

    from genfill.io import open_image, to_8bit

    path = Path(path)
    if not path.is_file():
        raise GenfillError(f"mask file {path} does not exist")
    img = open_image(path)  # the guarded reader: pixel limit, bombs, corrupt files -> GenfillError
    alpha = img.getchannel("A") if "A" in img.getbands() else None
    try:
        grey = to_8bit(img).convert("L")
    except Exception as exc:  # noqa: BLE001 - a mode PIL cannot turn grey
        raise GenfillError(f"cannot read mask file {path}: mode {img.mode} ({exc.__class__.__name__})") from None
    if grey.getextrema()[1] <= 127:
        # A mask with no hole would fill nothing: say so, and why, instead of returning the image unchanged.
        hint = ("its shape is only in the alpha channel; draw the hole white on black"
                if alpha is not None and alpha.getextrema()[0] != alpha.getextrema()[1]
                else "draw the hole white (grey > 127) on black")
        raise GenfillError(f"mask file {path} has no hole (no pixel brighter than mid-grey): {hint}")
    file_h, file_w = grey.height, grey.width
    if size is not None:
        want_h, want_w = _check_hw(size)
        if (file_h, file_w) != (want_h, want_w):
            if not resize:
                raise GenfillError(
                    f"mask file {path} is {file_h}x{file_w} (HxW) but {want_h}x{want_w} is needed; "
                    "resize it or pass resize=True"
                )
            grey = grey.resize((want_w, want_h), Image.Resampling.NEAREST)
    data = torch.frombuffer(bytearray(grey.tobytes()), dtype=torch.uint8).view(1, 1, grey.height, grey.width)
    return (data > 127).to(torch.float32)


# ----------------------------------------------------------------------------------------------------
# Validation and small helpers
# ----------------------------------------------------------------------------------------------------


def _check_size(n: int, height: int, width: int) -> None:
    for name, value, low in (("n", n, 0), ("height", height, 1), ("width", width, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise GenfillError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_hw(size: Any) -> tuple[int, int]:
    try:
        h, w = size
    except (TypeError, ValueError):
        raise GenfillError(f"size must be (height, width), got {size!r}") from None
    _check_size(1, h, w)
    return h, w


def _as_device(device: torch.device | str) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise GenfillError(f"bad device {device!r}: {err}") from None


def _same_device(a: torch.device, b: torch.device) -> bool:
    # "cuda" and "cuda:0" name the same device when the current device is 0.
    if a.type != b.type:
        return False
    if a.type == "cpu":
        return True
    current = torch.cuda.current_device() if a.type == "cuda" else 0
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)


def _index_seed(kind: str, seed: int, index: int) -> int:
    # A stable hash (Python's hash() of a str changes between processes); 63 bits fit manual_seed.
    digest = hashlib.sha256(f"genfill-mask|{kind}|{seed}|{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _int_param(kind: str, name: str, value: Any, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise GenfillError(f"{kind}: {name} must be an integer >= {low}, got {value!r}")
    return value


def _float_param(kind: str, name: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (isinstance(value, int) or math.isfinite(value))  # NaN and inf would draw nothing sensible
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise GenfillError(f"{kind}: {name} must be a number in {bracket}{low}, {high}], got {value!r}")
    return float(value)


def _scale(kind: str, scale: Any, height: int, width: int) -> float:
    if scale is None:
        return min(height, width) / REFERENCE_SIDE
    return _float_param(kind, "scale", scale, 0.0, math.inf, low_open=True)


def _rand(g: torch.Generator, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=g, device=device)


def _randint(g: torch.Generator, low: Any, high: Any, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Uniform integers in [low, high] inclusive; low/high may be tensors broadcastable to ``shape``."""
    low_t = torch.as_tensor(low, device=device, dtype=torch.float32)
    high_t = torch.as_tensor(high, device=device, dtype=torch.float32)
    draw = torch.floor(low_t + _rand(g, shape, device) * (high_t - low_t + 1))
    return torch.minimum(draw, high_t).long()  # rand < 1, but float rounding can still land on high + 1


# ----------------------------------------------------------------------------------------------------
# Rasterisation (batched, any device)
# ----------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------
# square, box, center
# ----------------------------------------------------------------------------------------------------


def _square_geometry(height: int, width: int, p: Mapping[str, Any]) -> tuple[int, int, int]:
    size = _int_param("square", "size", p["size"], 1)
    margin = _int_param("square", "margin", p["margin"], 0)
    if size > height or size > width:
        raise GenfillError(f"square: size {size} does not fit a {height}x{width} image; pass a smaller size")
    # Too little room for the margin: shrink it on that axis so the square still fits, centred at worst.
    return size, min(margin, (height - size) // 2), min(margin, (width - size) // 2)


def _square_bounds(height: int, width: int, p: Mapping[str, Any]) -> tuple[float, float]:
    size = _square_geometry(height, width, p)[0]
    ratio = size * size / (height * width)
    return ratio, ratio


@_register("square", {"size": 32, "margin": 16}, _square_bounds)
def _square(n, height, width, g, device, *, size, margin):
    """One square hole of ``size`` px, placed uniformly with at least ``margin`` px to every edge.

    Parameters: ``size`` (int >= 1, default 32), ``margin`` (int >= 0, default 16). When the image is too
    small for size + 2*margin on an axis, the margin on that axis is reduced to (side - size) // 2 (the
    square stays inside, at worst centred); a size larger than the image is a GenfillError.
    Hole ratio: exactly size^2 / (H*W) (0.25 at 64x64, 1/64 at 256x256 with defaults).
    """
    size, my, mx = _square_geometry(height, width, {"size": size, "margin": margin})
    top = _randint(g, my, height - size - my, (n, 1), device)
    left = _randint(g, mx, width - size - mx, (n, 1), device)
    side = torch.full((n, 1), size, device=device)
    return _draw_boxes(n, height, width, top, left, side, side, torch.ones(n, 1, dtype=torch.bool, device=device))


def _side_px(frac: float, side: int) -> int:
    return min(side, max(1, int(math.floor(frac * side + 0.5))))


def _box_params(p: Mapping[str, Any]) -> tuple[int, float, float]:
    max_boxes = _int_param("box", "max_boxes", p["max_boxes"], 1)
    lo = _float_param("box", "min_frac", p["min_frac"], 0.0, 1.0, low_open=True)
    hi = _float_param("box", "max_frac", p["max_frac"], 0.0, 1.0, low_open=True)
    if lo > hi:
        raise GenfillError(f"box: min_frac {lo} is larger than max_frac {hi}")
    return max_boxes, lo, hi


def _box_bounds(height: int, width: int, p: Mapping[str, Any]) -> tuple[float, float]:
    max_boxes, lo, hi = _box_params(p)
    area = height * width
    smallest = _side_px(lo, height) * _side_px(lo, width) / area
    largest = _side_px(hi, height) * _side_px(hi, width) / area
    return smallest, min(1.0, max_boxes * largest)


@_register("box", {"max_boxes": 3, "min_frac": 0.1, "max_frac": 0.5}, _box_bounds)
def _box(n, height, width, g, device, *, max_boxes, min_frac, max_frac):
    """1..``max_boxes`` random axis-aligned rectangles, each side a uniform fraction of the image side.

    Parameters: ``max_boxes`` (int >= 1, default 3; the count is uniform in 1..max_boxes), ``min_frac`` and
    ``max_frac`` (in (0, 1], defaults 0.1 and 0.5): box height = round(f*H), width = round(g*W) with f, g
    uniform in [min_frac, max_frac], at least 1 px; each box lies fully inside, uniformly placed; boxes may
    overlap. Hole ratio: guaranteed in [min_frac^2, min(1, max_boxes*max_frac^2)] up to rounding
    ([0.01, 0.75] with defaults); measured 1st..99th percentile 0.021..0.376 at 64x64.
    """
    max_boxes, lo, hi = _box_params({"max_boxes": max_boxes, "min_frac": min_frac, "max_frac": max_frac})
    shape = (n, max_boxes)
    count = _randint(g, 1, max_boxes, (n, 1), device)
    valid = torch.arange(max_boxes, device=device) < count

    def sides(side: int) -> torch.Tensor:
        frac = lo + _rand(g, shape, device) * (hi - lo)
        return torch.floor(frac * side + 0.5).clamp(1, side).long()

    box_h, box_w = sides(height), sides(width)
    top = _randint(g, 0, height - box_h, shape, device)
    left = _randint(g, 0, width - box_w, shape, device)
    return _draw_boxes(n, height, width, top, left, box_h, box_w, valid)


def _center_geometry(height: int, width: int, p: Mapping[str, Any]) -> tuple[int, int]:
    ratio = _float_param("center", "ratio", p["ratio"], 0.0, 1.0, low_open=True)
    return _side_px(ratio, height), _side_px(ratio, width)


def _center_bounds(height: int, width: int, p: Mapping[str, Any]) -> tuple[float, float]:
    h, w = _center_geometry(height, width, p)
    return h * w / (height * width), h * w / (height * width)


@_register("center", {"ratio": 0.5}, _center_bounds, random=False)
def _center(n, height, width, g, device, *, ratio):
    """A centred rectangle whose sides are ``ratio`` of the image sides (not random).

    Parameters: ``ratio`` (in (0, 1], default 0.5). Sides round(ratio*H) x round(ratio*W), at least 1 px,
    top-left at ((H-h)//2, (W-w)//2). Hole ratio: exactly h*w/(H*W), 0.25 for even sides with the default.
    """
    h, w = _center_geometry(height, width, {"ratio": ratio})
    mask = torch.zeros(n, 1, height, width, device=device)
    top, left = (height - h) // 2, (width - w) // 2
    mask[:, :, top : top + h, left : left + w] = 1.0
    return mask


# ----------------------------------------------------------------------------------------------------
# freeform (DeepFill v2)
# ----------------------------------------------------------------------------------------------------

_FREEFORM_DEFAULTS = {
    "min_strokes": 1,
    "max_strokes": 3,
    "min_vertices": 4,
    "max_vertices": 11,
    "mean_angle": 2 * math.pi / 5,
    "angle_range": 2 * math.pi / 15,
    "min_width": 12.0,
    "max_width": 40.0,
    "max_area": 0.5,
    "scale": None,
}


@_register("freeform", _FREEFORM_DEFAULTS, _stroke_bounds)
def _freeform(
    n, height, width, g, device, *, min_strokes, max_strokes, min_vertices, max_vertices, mean_angle,
    angle_range, min_width, max_width, max_area, scale,
):  # fmt: skip
    """DeepFill v2 free-form brush strokes: random zig-zag vertex walks drawn with a round brush.

    Per mask, min_strokes..max_strokes strokes (default 1..3). A stroke starts at a uniform point and makes
    min_vertices..max_vertices steps (default 4..11); step k turns to angle a_k (absolute, alternating a and
    2*pi - a) with a uniform in [mean_angle - u1, mean_angle + u2], u1, u2 uniform in [0, angle_range]
    (defaults 2*pi/5 and 2*pi/15); step length ~ Normal(r, r/2) clipped to [0, 2r] with
    r = sqrt(H^2 + W^2)/8; vertices are clipped to the image. One brush width per stroke, uniform in
    [min_width, max_width] * scale (defaults 12..40 px at 256, scale = min(H,W)/256 when None, at least 1 px).
    The mask is then flipped left-right and top-bottom with probability 1/2 each. Masks with hole ratio over
    ``max_area`` (default 0.5) are redrawn (see _cap_area).
    Hole ratio: guaranteed in [1/(H*W), max_area]; measured 1st..99th percentile 0.020..0.357 at 64x64.
    """
    kind = "freeform"
    lo_s = _int_param(kind, "min_strokes", min_strokes, 1)
    hi_s = _int_param(kind, "max_strokes", max_strokes, lo_s)
    lo_v = _int_param(kind, "min_vertices", min_vertices, 1)
    hi_v = _int_param(kind, "max_vertices", max_vertices, lo_v)
    mean_angle = _float_param(kind, "mean_angle", mean_angle, -math.inf, math.inf)
    angle_range = _float_param(kind, "angle_range", angle_range, 0.0, math.inf)
    lo_w = _float_param(kind, "min_width", min_width, 0.0, math.inf, low_open=True)
    hi_w = _float_param(kind, "max_width", max_width, lo_w, math.inf)
    max_area = _float_param(kind, "max_area", max_area, 0.0, 1.0, low_open=True)
    s = _scale(kind, scale, height, width)
    avg_radius = math.sqrt(height * height + width * width) / 8

    def draw(k: int) -> torch.Tensor:
        strokes = _randint(g, lo_s, hi_s, (k, 1), device)
        verts = _randint(g, lo_v, hi_v, (k, hi_s, 1), device)
        stroke_ok = torch.arange(hi_s, device=device) < strokes  # (k, S)
        seg_ok = (torch.arange(hi_v, device=device) < verts) & stroke_ok[..., None]  # (k, S, V)
        a_min = mean_angle - _rand(g, (k, hi_s, 1), device) * angle_range
        a_max = mean_angle + _rand(g, (k, hi_s, 1), device) * angle_range
        angle = a_min + _rand(g, (k, hi_s, hi_v), device) * (a_max - a_min)
        even = torch.arange(hi_v, device=device) % 2 == 0
        angle = torch.where(even, 2 * math.pi - angle, angle)
        length = (avg_radius + 0.5 * avg_radius * torch.randn((k, hi_s, hi_v), generator=g, device=device))
        length = length.clamp(0.0, 2 * avg_radius)
        brush = (lo_w + _rand(g, (k, hi_s, 1), device) * (hi_w - lo_w)) * s
        radius = (brush.clamp_min(1.0) / 2).expand(k, hi_s, hi_v)
        x = _rand(g, (k, hi_s), device) * (width - 1)
        y = _rand(g, (k, hi_s), device) * (height - 1)
        xs0, ys0, xs1, ys1 = [], [], [], []
        for v in range(hi_v):  # a walk: each vertex depends on the clipped previous one
            nx = (x + length[..., v] * torch.cos(angle[..., v])).clamp(0, width - 1)
            ny = (y + length[..., v] * torch.sin(angle[..., v])).clamp(0, height - 1)
            xs0.append(x), ys0.append(y), xs1.append(nx), ys1.append(ny)
            x, y = nx, ny
        x0, y0, x1, y1 = (torch.stack(c, dim=-1) for c in (xs0, ys0, xs1, ys1))  # (k, S, V)
        flip_x = _rand(g, (k, 1, 1), device) < 0.5
        flip_y = _rand(g, (k, 1, 1), device) < 0.5
        x0, x1 = torch.where(flip_x, width - 1 - x0, x0), torch.where(flip_x, width - 1 - x1, x1)
        y0, y1 = torch.where(flip_y, height - 1 - y0, y0), torch.where(flip_y, height - 1 - y1, y1)
        sample = torch.arange(k, device=device)[:, None, None].expand_as(seg_ok)
        return _draw_segments(
            k, height, width, sample[seg_ok], x0[seg_ok], y0[seg_ok], x1[seg_ok], y1[seg_ok],
            radius[seg_ok], device,
        )  # fmt: skip

    return _cap_area(draw, n, height, max_area)


# ----------------------------------------------------------------------------------------------------
# thin, medium, thick (LaMa)
# ----------------------------------------------------------------------------------------------------

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
        f"    Hole ratio: guaranteed in [1/(H*W), max_area]; measured spread in the module docstring."
    )


def _make_lama(kind: str) -> None:
    def generate(n, height, width, g, device, **p):
        return _lama(kind, n, height, width, g, device, p)

    generate.__name__ = f"_{kind}"
    generate.__doc__ = _lama_doc(kind)
    _register(kind, {**_LAMA_SETS[kind], **_LAMA_COMMON}, _stroke_bounds)(generate)


for _kind in _LAMA_SETS:
    _make_lama(_kind)


# ----------------------------------------------------------------------------------------------------
# mixed, file
# ----------------------------------------------------------------------------------------------------

_MIXED_DEFAULT = ("thin", "medium", "thick", "box", "square", "freeform")


def _mixed_members(p: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    kinds = p["kinds"]
    if isinstance(kinds, str) or not kinds:
        raise GenfillError(f"mixed: kinds must be a non-empty list of mask kinds, got {kinds!r}")
    per_kind = p["kind_params"] or {}
    if not isinstance(per_kind, Mapping):
        raise GenfillError(f"mixed: kind_params must map a kind to its parameters, got {per_kind!r}")
    for name in per_kind:
        if name not in kinds:
            raise GenfillError(f"mixed: kind_params names {name!r}, which is not in kinds {list(kinds)}")
    members = []
    for name in kinds:
        if name in ("mixed", "file"):
            raise GenfillError(f"mixed: {name!r} cannot be a member of mixed")
        members.append((name, _resolve(name, per_kind.get(name, {}))))
    return members


def _mixed_bounds(height: int, width: int, p: Mapping[str, Any]) -> tuple[float, float]:
    bounds = [MASK_KINDS[k].bounds_fn(height, width, q) for k, q in _mixed_members(p)]
    return min(b[0] for b in bounds), max(b[1] for b in bounds)


@_register("mixed", {"kinds": _MIXED_DEFAULT, "kind_params": None}, _mixed_bounds)
def _mixed(n, height, width, g, device, *, kinds, kind_params):
    """Per mask, one kind drawn uniformly from ``kinds``.

    Parameters: ``kinds`` (list of kind names, default thin, medium, thick, box, square, freeform; a name may
    repeat to weight it), ``kind_params`` (optional {kind: {param: value}} for the members). Every member's
    limits apply: with the default square (32 px) the image must be at least 32x32.
    Hole ratio: within the union of the members' bounds; measured 1st..99th percentile 0.015..0.465 at 64x64.
    """
    return _mixed_draw(n, height, width, g, device, {"kinds": kinds, "kind_params": kind_params})[0]


def _mixed_draw(n, height, width, g, device, p: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """mixed's masks and, per mask, the index of the member kind that drew it (the bank needs to know)."""
    members = _mixed_members(p)
    for name, q in members:  # fail before drawing anything, e.g. a square too large for the image
        MASK_KINDS[name].bounds_fn(height, width, q)
    choice = _randint(g, 0, len(members) - 1, (n,), device)
    out = torch.empty(n, 1, height, width, device=device)
    for i, (name, q) in enumerate(members):
        idx = (choice == i).nonzero().flatten()
        if idx.numel() > 0:
            out[idx] = MASK_KINDS[name].generate(idx.numel(), height, width, g, device, **q)
    return out, choice


def _file_bounds(height: int, width: int, p: Mapping[str, Any]) -> tuple[float, float]:
    return 0.0, 1.0


@_register("file", {"path": None, "resize": False}, _file_bounds, random=False)
def _file(n, height, width, g, device, *, path, resize):
    """A mask image from ``path`` (required), repeated n times; see load_mask_file (grey > 127 = hole).

    Parameters: ``path`` (str or Path), ``resize`` (default False: a size mismatch is an error; True:
    nearest-neighbour resize). Hole ratio: whatever the file holds, in [0, 1].
    """
    if path is None:
        raise GenfillError("file: the parameter 'path' (the mask image) is required")
    mask = load_mask_file(path, (height, width), resize=bool(resize))
    return mask.to(device).expand(n, 1, height, width).clone()


# ----------------------------------------------------------------------------------------------------
# The mask bank: training masks drawn once, then sampled on the device
# ----------------------------------------------------------------------------------------------------

# Kinds whose masks may be rolled (shifted with wrap-around): strokes with no margin and no box shape to
# keep. A rolled stroke that leaves one edge comes back at the other, still a stroke; a rolled square
# would break its margin and a rolled box would split into corner pieces, so those are never rolled.
ROLL_KINDS = ("thin", "freeform")
# Masks drawn per call while building: enough to amortise the per-call overhead (on a GPU, its launch
# latency), few enough that the rasteriser's working set stays in cache on a CPU.
_BANK_CHUNK = {"cpu": 1024, "cuda": 8192}
_BANK_FORMAT = 1
_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)  # pixel 0 of a byte in its most significant bit


def _pack_bits(masks: torch.Tensor) -> torch.Tensor:
    """(n,1,H,W) binary -> (n,H,ceil(W/8)) uint8, 8 pixels a byte, pixel j in bit 7 - j % 8 of byte j // 8."""
    n, _, h, w = masks.shape
    bits = torch.nn.functional.pad(masks[:, 0] > 0.5, (0, -w % 8)).view(n, h, -1, 8).to(torch.uint8)
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=masks.device)
    return (bits * weights).sum(-1, dtype=torch.uint8)


class MaskBank:
    """A fixed set of training masks resident on the device as packed bits, sampled with random symmetries.

    ``sample(n, generator)`` returns (n,1,H,W) float32 on the bank's device, 1 = hole: n masks picked
    uniformly from the bank, each under a random dihedral transform (flip rows, flip columns, and on a
    square size a transpose: 8 symmetries, every one of which maps a mask of any registered kind to a
    mask the kind could have drawn) and, for masks of ``ROLL_KINDS``, a random roll. Every transform
    permutes pixels, so a sampled mask has exactly its bank mask's hole ratio. One gather and a few
    elementwise ops on the device, with the generator on the device: no host work, no host sync.
    """

    def __init__(self, packed: torch.Tensor, rollable: torch.Tensor, height: int, width: int,
                 info: dict | None = None) -> None:
        if packed.dim() != 3 or packed.dtype != torch.uint8 or packed.shape[1:] != (height, (width + 7) // 8):
            raise GenfillError(f"a mask bank is (n,{height},{(width + 7) // 8}) uint8, got {tuple(packed.shape)} "
                               f"{packed.dtype}")
        if len(packed) == 0:
            raise GenfillError("a mask bank needs at least one mask")
        self.packed, self.rollable = packed, rollable.to(device=packed.device, dtype=torch.bool)
        self.height, self.width, self.info = height, width, dict(info or {})
        self._rows = torch.arange(height, device=packed.device).view(1, height, 1)
        self._cols = torch.arange(width, device=packed.device).view(1, 1, width)

    def __len__(self) -> int:
        return self.packed.shape[0]

    @property
    def device(self) -> torch.device:
        return self.packed.device

    def to(self, device: torch.device | str) -> "MaskBank":
        return MaskBank(self.packed.to(device), self.rollable.to(device), self.height, self.width, self.info)

    def masks(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """The bank's own masks `idx` (all when None), untransformed: (k,1,H,W) float32."""
        packed = self.packed if idx is None else self.packed[idx]
        return self._unpack(packed[:, self._rows.expand(1, self.height, self.width)[0], self._cols[0] >> 3],
                            self._cols[0])

    @staticmethod
    def _unpack(byte: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        return ((byte >> (7 - (col & 7)).to(torch.uint8)) & 1).unsqueeze(1).float()

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n random masks (n,1,H,W) float32 on the bank's device; `generator` must live there too."""
        dev, h, w = self.device, self.height, self.width
        if not _same_device(generator.device, dev):
            raise GenfillError(f"the mask generator is on {generator.device} but the bank is on {dev}")
        idx = torch.randint(0, len(self), (n,), generator=generator, device=dev)
        flips = torch.randint(0, 2, (n, 3, 1, 1), generator=generator, device=dev).bool()
        shift = torch.stack([torch.randint(0, h, (n,), generator=generator, device=dev),
                             torch.randint(0, w, (n,), generator=generator, device=dev)], 1)
        shift = shift * self.rollable[idx, None]  # (n,2): zero where the mask's kind is not rolled
        # Output pixel (i, j) reads bank pixel (r, c): transpose, flips, then roll, all as index maps.
        r, c = self._rows.expand(n, h, w), self._cols.expand(n, h, w)
        if h == w:
            r, c = torch.where(flips[:, 2], c, r), torch.where(flips[:, 2], r, c)
        r = torch.where(flips[:, 0], h - 1 - r, r)
        c = torch.where(flips[:, 1], w - 1 - c, c)
        r = (r + shift[:, 0, None, None]) % h
        c = (c + shift[:, 1, None, None]) % w
        return self._unpack(self.packed[idx[:, None, None], r, c >> 3], c)


def _bank_key(kind: str, full: Mapping[str, Any], height: int, width: int, seed: int, count: int,
              device: torch.device) -> tuple[str, dict]:
    # The drawing device is part of the key: CPU and CUDA generators give different streams for one seed.
    meta = {"format": _BANK_FORMAT, "kind": kind, "params": {k: full[k] for k in sorted(full)},
            "height": height, "width": width, "seed": seed, "count": count, "drawn_on": device.type}
    text = json.dumps(meta, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20], json.loads(text)


def draw_bank(kind: str, count: int, height: int, width: int, *, seed: int = 0,
              device: torch.device | str = "cpu", progress=None, **params: Any) -> MaskBank:
    """Draw `count` masks of `kind` with one generator seeded by `seed`, in chunks, on `device`;
    `progress(k)` is called after each chunk of k masks."""
    spec = _get_kind(kind)
    full = _resolve(kind, params)
    _check_size(count, height, width)
    if count < 1:
        raise GenfillError(f"a mask bank needs at least one mask, got count {count}")
    device = _as_device(device)
    g = torch.Generator(device=device).manual_seed(int(seed))
    packed, rollable = [], []
    chunk = _BANK_CHUNK.get(device.type, 1024)
    for start in range(0, count, chunk):
        k = min(chunk, count - start)
        if kind == "mixed":
            masks, choice = _mixed_draw(k, height, width, g, device, full)
            members = [name in ROLL_KINDS for name in full["kinds"]]
            roll = torch.tensor(members, device=device)[choice]
        else:
            masks = spec.generate(k, height, width, g, device, **full)
            roll = torch.full((k,), kind in ROLL_KINDS, device=device)
        packed.append(_pack_bits(masks))
        rollable.append(roll)
        if progress is not None:
            progress(k)
    key, meta = _bank_key(kind, full, height, width, int(seed), count, device)
    return MaskBank(torch.cat(packed), torch.cat(rollable), height, width, {**meta, "key": key})


def mask_bank(kind: str, count: int, height: int, width: int, *, seed: int = 0,
              device: torch.device | str = "cpu", cache_dir: str | Path | None = None, verbose: bool = False,
              **params: Any) -> MaskBank:
    """The bank of `draw_bank`, read from `cache_dir/masks/` when it was drawn before, else drawn and
    written there atomically (keyed by kind, resolved parameters, size, seed, count and the drawing
    device's type). Resident on `device`."""
    import time

    from genfill.io import atomic_torch_save

    device = _as_device(device)
    full = _resolve(kind, params)
    _check_size(count, height, width)
    key, meta = _bank_key(kind, full, height, width, int(seed), count, device)
    path = Path(cache_dir) / "masks" / f"{kind}-{height}x{width}-{count}-{key}.pt" if cache_dir else None
    if path is not None and path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("meta") == meta:
                return MaskBank(saved["packed"], saved["rollable"], height, width,
                                {**meta, "key": key, "path": str(path)}).to(device)
        except (OSError, RuntimeError, KeyError, AttributeError, EOFError, ValueError, pickle.UnpicklingError):
            pass  # a damaged or foreign file: draw again and replace it
    from genfill.progress import Progress, say

    t0 = time.perf_counter()
    with Progress(count, f"drawing a bank of {kind} masks", "masks", enabled=verbose) as bar:
        bank = draw_bank(kind, count, height, width, seed=seed, device=device, progress=bar.update, **params)
    if verbose:
        say(f"genfill: drew a bank of {count} {kind} masks at {height}x{width} in "
            f"{time.perf_counter() - t0:.1f} s" + (f" -> {path}" if path else ""))
    if path is not None:
        from genfill.usercache import mark

        mark(Path(cache_dir))
        atomic_torch_save({"meta": meta, "packed": bank.packed.cpu(), "rollable": bank.rollable.cpu()}, path)
        bank.info["path"] = str(path)
    return bank
