"""Native-resolution fill: a model trained at S x S fills a photo of any size, and only the hole changes.

What happens at which size (docs/fill.md repeats this):

- **Image no larger than S in either side**: the whole image is reflect-padded to S x S (never stretched),
  filled in one pass, and the padding cropped off.
- **Larger image**: the hole is split by its *width* first. Its **thin** part (the pixels outside the hole's
  morphological opening by a disk of radius THIN = 4 px: strokes up to ~9 px wide, scratches, wires, the
  sharp corners of wide parts) goes through no window: it is filled last, at native resolution, by a
  harmonic (Laplace) fill of its own pixels from everything around it (`harmonic_thin`; a hole this narrow
  has nothing a shrunk window could add but blur, and its cost is the thin pixels', not the image's). The
  **wide** rest is split into regions:
- **Wide region of side h <= S** (h = the longer side of the region's bounding box): a square window of side
  max(S, 3h) centred on the region (a margin of at least h on every side, shifted and then clipped to the
  image) is downscaled to fit S x S (box filter, aspect kept, reflect-padded), filled, and the predicted
  hole pixels are upsampled (bicubic) back to the window's own resolution.
- **Wide region with h > S** ("too big for one window": its window would be shrunk more than 3x): a coarse
  fill of that window (the whole image when the margin does not fit) as above, then a refine pass: the
  region's box is split evenly into the fewest cells of side at most REFINE_CELL * S = 1.5 S, each filled
  inside its own 3S x 3S window (shrunk exactly 3x; a margin of at least 0.75 S) where the coarse fill of the
  rest of the hole counts as context.

Regions are the 8-connected components of the wide part, merged while their margins overlap. Every region's
window is filled from the input alone (all hole pixels, thin ones too, are hole in every window, so no
region's fill depends on another's), then the refine cells of every big region from that coarse fill, then
the thin part from all of that; each stage's windows go through the model in batches (`batch`, across images
too: `fill_native_many`), and the result does not depend on the batch size. A shrunk window's model pixel
is hole when any pixel under it is, and the hole's model pixels hold their nearest known model pixel's value,
so what lies under the hole never reaches the model. Only hole pixels are pasted, with a narrow
feathered edge *inside* the hole: within `feather` px of the hole's edge the upsampled prediction is blended
towards the nearest known pixel, which hides the seam resampling leaves. Every pixel outside the hole is the
input's own, bit for bit (the caller composites in the input's dtype; see api.py).

A fill function is `fill_fn(x, m) -> out`: x (N,C,S,S) float in [-1, 1], m (N,1,S,S) float, 1 = hole,
out composited (N,C,S,S): a GenModel's `fill`, or an exported ONNX graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from genfill.pixels import FillFn

REFINE_SCALE = 3  # a refine cell sits in a window of REFINE_SCALE * S native pixels, shrunk that much
REFINE_CELL = 1.5  # a refine cell's side is at most this many S (its window's margin: (3 - this) / 2 S)


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
    # only hole pixels move: gather those alone (a whole-window gather costs more than the transform)
    at = np.flatnonzero(hole)
    src = idx[0].ravel()[at] * hole.shape[1] + idx[1].ravel()[at]
    out = img.contiguous().clone()
    flat = out.view(img.shape[0], -1)
    flat[:, torch.from_numpy(at).to(img.device)] = flat[:, torch.from_numpy(src).to(img.device)]
    return out, dist


@dataclass
class Window:
    """One window of one image, ready for the model: `xs` (1,C,S,S) and `ms` (1,1,S,S) are what the model
    sees; the rest is what pasting its fill back needs (see `prepare_window`), over `inner`, the bounding box
    of the pixels it pastes."""

    image: int  # index of the image it belongs to
    box: tuple[int, int, int, int]  # (top, left, bottom, right) in the image
    xs: torch.Tensor
    ms: torch.Tensor
    shrunk: tuple[int, int]  # (sh, sw): the window's size in model pixels, before padding
    scale: float  # model pixels per native pixel (<= 1)
    feather: int  # px inside the hole's edge over which the prediction is blended towards x0
    inner: tuple[int, int, int, int]  # (top, left, bottom, right) of the pasted pixels, in the window
    x0: torch.Tensor  # (C,ph,pw) over `inner`: hole pixels within `feather` of a known one hold its value
    dist: np.ndarray  # (ph,pw) over `inner`: each pixel's distance to the nearest known one (> feather: any)
    paste: np.ndarray  # (ph,pw) bool over `inner`: the pixels that take the prediction


def prepare_window(img: torch.Tensor, win: tuple[int, int, int, int], hole: np.ndarray, paste: np.ndarray,
                   size: int, image: int = 0, feather: int | None = None) -> Window | None:
    """The model's input for the window `win` = (top, left, bottom, right) of `img` (C,H,W, [-1, 1]): the
    window shrunk to fit size x size with `hole` (the window's (h,w) bool: every pixel not to be trusted) as
    its hole; `paste` ((h,w) bool, within `hole`) are the pixels its fill replaces, blended towards the nearest
    known pixel within `feather` px of the hole's edge (None: ceil(1 / shrink) + 1 when shrunk, else 0).
    None: nothing to paste."""
    t, l, b, r = win
    x = img[:, t:b, l:r]
    h, w = x.shape[-2:]
    if not paste.any():
        return None
    m = torch.from_numpy(hole).to(x)[None, None]
    scale = min(1.0, size / max(h, w))
    if scale < 1:
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        ms = (F.interpolate(m, size=(sh, sw), mode="area") > 0).to(x)  # any hole pixel under it: hole
        # Every model pixel with a hole pixel under it is hole, so no hole content reaches a known model
        # pixel; the hole's model pixels hold their nearest known model pixel's value (what lay under the hole
        # never reaches the model, and a model that looks into the hole sees a plain extension).
        xs, _ = _nearest_known(F.interpolate(x[None], size=(sh, sw), mode="area")[0], ms[0, 0].cpu().numpy() > 0)
        xs = xs[None]
    else:
        sh, sw, ms = h, w, m
        xs = _nearest_known(x, hole)[0][None]
    feather = (math.ceil(1 / scale) + 1 if scale < 1 else 0) if feather is None else feather
    rows, cols = np.flatnonzero(paste.any(1)), np.flatnonzero(paste.any(0))
    inner = pt, pl, pb, pr = int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1
    # The feather needs the nearest known pixel only where it is within `feather` px: inside the pasted box
    # grown by feather + 1, so the distance transform runs over that crop, not the whole window.
    g = feather + 1
    ct, cl, cb, cr = max(pt - g, 0), max(pl - g, 0), min(pb + g, h), min(pr + g, w)
    crop = hole[ct:cb, cl:cr]
    if crop.all():  # no known pixel near: nothing to blend towards
        x0, dist = x[:, pt:pb, pl:pr], np.full((pb - pt, pr - pl), np.inf)
    else:
        x0, dist = _nearest_known(x[:, ct:cb, cl:cr], crop)
        x0, dist = x0[:, pt - ct : pb - ct, pl - cl : pr - cl], dist[pt - ct : pb - ct, pl - cl : pr - cl]
    return Window(image, win, pad_to(xs, size), pad_to(ms, size), (sh, sw), scale, feather, inner, x0, dist,
                  paste[pt:pb, pl:pr])


def _cubic(t: torch.Tensor, a: float = -0.75) -> list[torch.Tensor]:
    """The 4 bicubic convolution weights (Keys, A = -0.75: torch's and OpenCV's) at fractional offsets `t`."""

    def near(x):
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def bicubic_crop(a: torch.Tensor, size: tuple[int, int], box: tuple[int, int, int, int]) -> torch.Tensor:
    """The part `box` = (top, left, bottom, right) of `a` (C,h,w) resized bicubically to `size` (H',W'):
    torch's bicubic (half-pixel centres, borders replicated), computed for the box's pixels only, so pasting a
    small hole from a big window does not pay for upsampling the whole window."""
    for axis, n_out, lo, hi in ((1, size[0], box[0], box[2]), (2, size[1], box[1], box[3])):
        n_in = a.shape[axis]
        src = (torch.arange(lo, hi, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5
        i0 = torch.floor(src)
        shape = [-1 if d == axis else 1 for d in range(a.ndim)]
        out = torch.zeros(())
        for k, wk in enumerate(_cubic(src - i0)):
            idx = (i0.long() - 1 + k).clamp(0, n_in - 1).to(a.device)
            out = out + a.index_select(axis, idx) * wk.to(a).reshape(shape)
        a = out
    return a


def paste_window(img: torch.Tensor, win: Window, filled: torch.Tensor) -> None:
    """Paste the model's fill `filled` (1,C,S,S) of `win` into `img` (C,H,W) in place: upsampled to the
    window's resolution, feathered towards the nearest known pixel, only at `win.paste` (all of it computed
    over the pasted pixels' box `win.inner` only)."""
    t, l, b, r = win.box
    pt, pl, pb, pr = win.inner
    sh, sw = win.shrunk
    out = filled[0, :, :sh, :sw].to(img)
    if win.scale < 1:
        pred = bicubic_crop(out, (b - t, r - l), win.inner).clamp(-1, 1)
    else:
        pred = out[:, pt:pb, pl:pr]
    if win.feather > 0:
        wgt = torch.from_numpy(np.clip(win.dist / win.feather, 0, 1)).to(img)
        pred = wgt * pred + (1 - wgt) * win.x0
    sel = torch.from_numpy(win.paste).to(img.device)
    x = img[:, t + pt : t + pb, l + pl : l + pr]
    img[:, t + pt : t + pb, l + pl : l + pr] = torch.where(sel, pred, x)


def fill_window(img: torch.Tensor, win: tuple[int, int, int, int], hole: np.ndarray, paste: np.ndarray,
                fill_fn: FillFn, size: int, feather: int | None = None) -> None:
    """Fill `img` (C,H,W, [-1, 1]) in place inside the window `win` = (top, left, bottom, right): the model
    sees the window shrunk to fit size x size with `hole` (the window's (h,w) bool: every pixel not to be
    trusted) as its hole; the pixels `paste` ((h,w) bool, within `hole`) take the upsampled prediction."""
    job = prepare_window(img, win, hole, paste, size, feather=feather)
    if job is not None:
        paste_window(img, job, fill_fn(job.xs, job.ms))


def run_windows(imgs: list[torch.Tensor], jobs: list[Window | None], fill_fn: FillFn, batch: int) -> None:
    """Fill every window of `jobs` (prepared from `imgs` before any of them is pasted, so the result does not
    depend on the order or the batch) `batch` at a time through `fill_fn`, and paste them."""
    jobs = [j for j in jobs if j is not None]
    for i in range(0, len(jobs), max(1, batch)):
        part = jobs[i : i + max(1, batch)]
        out = fill_fn(torch.cat([j.xs for j in part]), torch.cat([j.ms for j in part]))
        for k, j in enumerate(part):
            paste_window(imgs[j.image], j, out[k : k + 1])


BATCH = 32  # windows per model call: what a CPU core's cache and a GPU's memory both hold at S = 64


def fill_native(x: torch.Tensor, hole: np.ndarray, fill_fn: FillFn, size: int, feather: int | None = None,
                batch: int = BATCH) -> torch.Tensor:
    """Fill image `x` (C,H,W) in [-1, 1] of any size under `hole` (H,W bool, True = hole) with a model that
    works at size x size (module docstring). Returns a new (C,H,W) tensor; pixels outside the hole are x's.
    `batch` windows go through the model at once; the result does not depend on it."""
    return fill_native_many([x], [hole], fill_fn, size, feather, batch)[0]


def fill_native_many(xs: list[torch.Tensor], holes: list[np.ndarray], fill_fn: FillFn, size: int,
                     feather: int | None = None, batch: int = BATCH) -> list[torch.Tensor]:
    """`fill_native` of several images (each (C,H,W) under its (H,W) hole; one C for all), their windows
    batched together: first every wide region's window (the whole image when it fits), then the refine cells
    of the regions too big for one window, each stage prepared from the image as the previous stage left it,
    then the thin parts of every hole (`split_thin`) by `harmonic_thin`."""
    imgs = [x.clone() for x in xs]
    coarse: list[Window | None] = []
    cells: list[tuple[int, Region]] = []
    thin: list[np.ndarray | None] = []
    for i, (img, hole) in enumerate(zip(imgs, holes)):
        height, width = hole.shape
        if height <= size and width <= size:
            coarse.append(prepare_window(img, (0, 0, height, width), hole, hole, size, i, feather))
            thin.append(None)
            continue
        wide, narrow = split_thin(hole)
        thin.append(narrow)
        for region in hole_regions(wide):
            t, l, b, r = win = square_window(region.box, max(size, 3 * region.side), height, width)
            # every hole pixel is hole in every window: no region's fill depends on another's
            coarse.append(prepare_window(img, win, hole[t:b, l:r], region.pixels[t:b, l:r], size, i, feather))
            if region.side > size:
                cells.append((i, region))
    run_windows(imgs, coarse, fill_fn, batch)
    refine = [job for i, region in cells for job in _refine_jobs(imgs[i], region, size, i, feather)]
    run_windows(imgs, refine, fill_fn, batch)
    for img, narrow in zip(imgs, thin):
        if narrow is not None and narrow.any():
            if img.device.type == "cpu" and img.dtype == torch.float32 and img.is_contiguous():
                harmonic_thin(img.numpy(), narrow)  # the same memory: filled in place
            else:
                arr = img.detach().cpu().float().numpy().copy()
                harmonic_thin(arr, narrow)
                img.copy_(torch.from_numpy(arr).to(img))
    return imgs


def thin_part(hole: np.ndarray, size: int) -> np.ndarray | None:
    """The pixels of `hole` (H,W bool) that `fill_native_many` fills by `harmonic_thin`, outside the model (the
    same in every sample): `split_thin`'s thin part, or None when the image fits one window of side `size`."""
    if hole.shape[0] <= size and hole.shape[1] <= size:
        return None
    return split_thin(hole)[1]


THIN = 4  # hole pixels farther than this from the hole's wide core (a disk of radius THIN fits) are thin
THIN_SWEEPS = 10  # Jacobi sweeps smoothing the thin fill's peel (astronaut's 3 px strokes, PSNR dB: 0 sweeps
# 20.95, 10: 22.14, 20: 22.03, 40: 21.98, converged (2000): 21.97)


def disk(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) uint8: the pixels within `radius` of the centre (Euclidean, boundary included)."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (yy * yy + xx * xx <= radius * radius).astype(np.uint8)


def split_thin(hole: np.ndarray, radius: int = THIN) -> tuple[np.ndarray, np.ndarray]:
    """(wide, thin) partition of `hole` (H,W bool): wide is the hole's morphological opening by a disk of
    `radius` (the pixels of every such disk lying wholly in the hole; beyond the image counts as hole), thin
    the rest: strokes at most ~2 * radius + 1 px wide, and the sharp corners of wide parts."""
    k = disk(radius)
    h8 = hole.astype(np.uint8)
    core = cv2.erode(h8, k, borderType=cv2.BORDER_CONSTANT, borderValue=1)
    wide = cv2.dilate(core, k, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool) & hole
    return wide, hole & ~wide


def harmonic_thin(img: np.ndarray, thin: np.ndarray, sweeps: int = THIN_SWEEPS) -> None:
    """Fill `img` (C,H,W) float32 in place: its `thin` pixels ((H,W) bool) take the harmonic (Laplace) fill
    from every other pixel, in float32: peeled from the edge inwards (each pass, every thin pixel with a settled
    4-neighbour takes their mean), then `sweeps` Jacobi sweeps over the thin pixels only (4 neighbours, the
    border clamped). A hole this narrow converges in a few dozen sweeps, and the cost is the thin pixels',
    not the image's."""
    c, h, w = img.shape
    ys, xs = np.nonzero(thin)
    n = ys.size
    flat = img.reshape(c, h * w)
    nbrs = np.stack([np.maximum(ys - 1, 0) * w + xs, np.minimum(ys + 1, h - 1) * w + xs,
                     ys * w + np.maximum(xs - 1, 0), ys * w + np.minimum(xs + 1, w - 1)])  # (4, n) flat indices
    slot = np.full(h * w, n)  # each thin pixel's column in u; n (a zero column) for every other pixel
    slot[ys * w + xs] = np.arange(n)
    inner = slot[nbrs]  # (4, n): the neighbour's column in u, or n when it is fixed
    fixed = np.where(inner == n, flat[:, nbrs], np.float32(0))  # (C, 4, n) fixed neighbours' values
    u = np.zeros((c, n + 1), np.float32)  # column n stays 0: what a fixed neighbour adds through u
    settled = np.zeros(n + 1, bool)
    todo = np.arange(n)
    while todo.size:
        nb = inner[:, todo]
        ok = (nb == n) | settled[nb]  # (4, todo)
        count = ok.sum(0)
        new = count > 0
        if not new.any():  # no known pixel at all (the whole image is hole): mid grey
            break
        total = np.where(ok, fixed[:, :, todo] + u[:, nb], np.float32(0)).sum(1)
        u[:, todo[new]] = total[:, new] / count[new].astype(np.float32)
        settled[todo[new]] = True
        todo = todo[~new]
    base = fixed.sum(1)
    for _ in range(sweeps):
        u[:, :n] = (base + u[:, inner[0]] + u[:, inner[1]] + u[:, inner[2]] + u[:, inner[3]]) * np.float32(0.25)
    img[:, ys, xs] = u[:, :n]


def _refine_jobs(img: torch.Tensor, region: Region, size: int, image: int, feather: int | None) -> list[Window | None]:
    """The refine windows of a coarse-filled region: its box split evenly into the fewest cells of side at
    most REFINE_CELL * S, each the hole of a 3S x 3S window (shrunk exactly 3x) where the coarse fill around
    it is context."""
    height, width = region.pixels.shape
    t0, l0, b0, r0 = region.box
    cell = max(1, int(REFINE_CELL * size))
    rows, cols = -(-(b0 - t0) // cell), -(-(r0 - l0) // cell)
    jobs = []
    for i in range(rows):
        ct, cb = t0 + (b0 - t0) * i // rows, t0 + (b0 - t0) * (i + 1) // rows
        for j in range(cols):
            cl, cr = l0 + (r0 - l0) * j // cols, l0 + (r0 - l0) * (j + 1) // cols
            if not region.pixels[ct:cb, cl:cr].any():
                continue
            t, l, b, r = win = square_window((ct, cl, cb, cr), REFINE_SCALE * size, height, width)
            hole = np.zeros((b - t, r - l), bool)
            hole[ct - t : cb - t, cl - l : cr - l] = region.pixels[ct:cb, cl:cr]
            jobs.append(prepare_window(img, win, hole, hole, size, image, feather))
    return jobs
