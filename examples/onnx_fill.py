"""Fill a photo at its own size with an exported genfill model, using numpy, onnxruntime and PIL only.

    python examples/onnx_fill.py EXPORT_DIR/model.onnx photo.jpg mask.png filled.png

`mask.png`: white (> 127) = hole, the photo's size. The model works at its training size S (64 for the faces
presets, read from the model's metadata), so, like `genfill fill` (genfill/inpaint.py, which this file
follows step for step and matches within one grey level):

1. the hole is split into its wide part (its opening by a disk of radius 4 px) and its thin rest; the wide
   part into regions (8-connected components, merged while their margins overlap);
2. every region gets a square window of side max(S, 3 x its side), shrunk to S x S (box filter), its hole
   pixels first set to their nearest known pixel; all windows go through the model in one batch;
3. the predicted hole pixels are upsampled (bicubic) to the window's resolution and pasted, blended towards
   the nearest known pixel within a few pixels of the hole's edge; pixels outside the hole stay the photo's;
4. a region too big for one window (side > S) is then refined cell by cell: its box is split evenly into the
   fewest cells of side <= 1.5 S, each the hole of a 3S x 3S window around it (shrunk 3x), filled from the
   coarse fill, again all in one batch;
5. the thin part (strokes up to ~9 px wide) is filled last, by a harmonic fill of its own pixels (no model).

The model's inputs: image (N,3,S,S) float32 in [-1, 1] (2 * pixel / 255 - 1) and mask (N,1,S,S) float32 of
exactly 0 and 1, 1 = hole; output `filled` the same shape, the image's own pixels outside the hole.
"""

from __future__ import annotations

import sys
from collections import deque

import numpy as np
import onnxruntime as ort
from PIL import Image

REFINE_SCALE = 3


# ---- hole regions


def components(hole: np.ndarray) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """8-connected components of `hole` (H,W bool) as (label-mask indices, box (top, left, bottom, right)),
    in raster order of their first pixel."""
    h, w = hole.shape
    label = np.zeros((h, w), np.int32)
    out = []
    for start in zip(*np.nonzero(hole)):
        if label[start]:
            continue
        n = len(out) + 1
        label[start] = n
        queue, pixels = deque([start]), [start]
        while queue:
            y, x = queue.popleft()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w and hole[yy, xx] and not label[yy, xx]:
                        label[yy, xx] = n
                        queue.append((yy, xx))
                        pixels.append((yy, xx))
        ys, xs = np.array(pixels).T
        out.append(((ys, xs), (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)))
    return out


def regions(hole: np.ndarray) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """Components merged while their boxes grown by their own side overlap: [(pixels (H,W) bool, box)]."""
    groups = [([idx], box) for idx, box in components(hole)]

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
    result = []
    for parts, box in groups:
        pixels = np.zeros(hole.shape, bool)
        for ys, xs in parts:
            pixels[ys, xs] = True
        result.append((pixels, box))
    return result


def square_window(box, side: int, height: int, width: int) -> tuple[int, int, int, int]:
    def span(lo: int, hi: int, limit: int) -> tuple[int, int]:
        s = min(side, limit)
        lo -= (s - (hi - lo)) // 2
        lo = min(max(lo, 0), limit - s)
        return lo, lo + s

    t, b = span(box[0], box[2], height)
    l, r = span(box[1], box[3], width)
    return t, l, b, r


# ---- resampling (the same arithmetic as torch's area and bicubic interpolation)


def nearest_known(img: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C,h,w) with each hole pixel set to its nearest known pixel (Euclidean), and each pixel's distance."""
    dist = np.zeros(hole.shape)
    out = img.copy()
    if not hole.any():
        return out, dist
    known = ~hole
    # the nearest known pixel of a hole pixel always touches the hole: only those are candidates
    near = np.zeros_like(hole)
    near[1:, :] |= hole[:-1, :]
    near[:-1, :] |= hole[1:, :]
    near[:, 1:] |= hole[:, :-1]
    near[:, :-1] |= hole[:, 1:]
    # candidates in column-major order, so argmin's first minimum is the tie-break genfill's feature transform
    # (scipy.ndimage.distance_transform_edt) makes: the smallest column, then the smallest row
    kx, ky = np.nonzero((known & near).T)
    hy, hx = np.nonzero(hole)
    for i in range(0, hy.size, 2048):
        d2 = (hy[i : i + 2048, None] - ky[None]) ** 2 + (hx[i : i + 2048, None] - kx[None]) ** 2
        j = d2.argmin(1)
        out[:, hy[i : i + 2048], hx[i : i + 2048]] = img[:, ky[j], kx[j]]
        dist[hy[i : i + 2048], hx[i : i + 2048]] = np.sqrt(d2[np.arange(j.size), j])
    return out, dist


def area_resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C,h,w) -> (C,H',W') by averaging each output pixel's source span (torch's adaptive average pooling)."""
    for axis, n_out in ((1, size[0]), (2, size[1])):
        n_in = a.shape[axis]
        starts = (np.arange(n_out) * n_in) // n_out
        ends = -((-(np.arange(n_out) + 1) * n_in) // n_out)
        c = np.cumsum(np.insert(a, 0, 0, axis=axis), axis=axis, dtype=np.float64)
        a = (np.take(c, ends, axis=axis) - np.take(c, starts, axis=axis)) / (ends - starts).reshape(
            [-1 if i == axis else 1 for i in range(a.ndim)])
    return a.astype(np.float32)


def _cubic(t: np.ndarray, a: float = -0.75) -> list[np.ndarray]:
    def near(x):
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def bicubic_resize(a: np.ndarray, size: tuple[int, int], box=None) -> np.ndarray:
    """(C,h,w) -> (C,H',W') bicubic (A = -0.75, half-pixel centres, borders replicated): torch's bicubic.
    `box` (top, left, bottom, right): only that part of the (H',W') result."""
    box = box or (0, 0, size[0], size[1])
    for axis, n_out, lo, hi in ((1, size[0], box[0], box[2]), (2, size[1], box[1], box[3])):
        n_in = a.shape[axis]
        src = (np.arange(lo, hi) + 0.5) * (n_in / n_out) - 0.5
        i0 = np.floor(src).astype(int)
        weights = _cubic(src - i0)
        out = 0
        for k, wk in enumerate(weights):
            idx = np.clip(i0 - 1 + k, 0, n_in - 1)
            out = out + np.take(a, idx, axis=axis) * wk.astype(np.float32).reshape(
                [-1 if i == axis else 1 for i in range(a.ndim)])
        a = out
    return a.astype(np.float32)


def pad_to(a: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad (C,h,w) at the bottom and right to (size, size); replicate where reflection runs out."""
    while a.shape[-2] < size or a.shape[-1] < size:
        h, w = a.shape[-2:]
        ph, pw = min(size - h, h - 1), min(size - w, w - 1)
        if ph <= 0 and pw <= 0:
            return np.pad(a, ((0, 0), (0, size - h), (0, size - w)), mode="edge")
        a = np.pad(a, ((0, 0), (0, max(ph, 0)), (0, max(pw, 0))), mode="reflect")
    return a


# ---- windows


def prepare(img: np.ndarray, win, hole: np.ndarray, paste: np.ndarray, size: int) -> dict | None:
    t, l, b, r = win
    if not paste.any():
        return None
    x = img[:, t:b, l:r]
    h, w = x.shape[-2:]
    scale = min(1.0, size / max(h, w))
    if scale < 1:
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        ms = (area_resize(hole[None].astype(np.float32), (sh, sw)) > 0).astype(np.float32)
        # the shrunk window's hole pixels take their nearest known (shrunk) pixel's value
        xs = nearest_known(area_resize(x, (sh, sw)), ms[0] > 0)[0]
    else:
        sh, sw, ms = h, w, hole[None].astype(np.float32)
        xs = nearest_known(x, hole)[0]
    feather = int(np.ceil(1 / scale)) + 1 if scale < 1 else 0
    # pasting needs only the pasted pixels' box, and their nearest known pixel only within `feather` of it
    rows, cols = np.flatnonzero(paste.any(1)), np.flatnonzero(paste.any(0))
    pt, pl, pb, pr = rows[0], cols[0], rows[-1] + 1, cols[-1] + 1
    g = feather + 1
    ct, cl, cb, cr = max(pt - g, 0), max(pl - g, 0), min(pb + g, h), min(pr + g, w)
    if hole[ct:cb, cl:cr].all():
        x0, dist = x[:, pt:pb, pl:pr], np.full((pb - pt, pr - pl), np.inf)
    else:
        x0, dist = nearest_known(x[:, ct:cb, cl:cr], hole[ct:cb, cl:cr])
        x0, dist = x0[:, pt - ct : pb - ct, pl - cl : pr - cl], dist[pt - ct : pb - ct, pl - cl : pr - cl]
    return {"win": win, "xs": pad_to(xs, size), "ms": pad_to(ms, size), "shrunk": (sh, sw), "scale": scale,
            "feather": feather, "inner": (pt, pl, pb, pr), "x0": x0, "dist": dist, "paste": paste[pt:pb, pl:pr]}


def paste(img: np.ndarray, job: dict, filled: np.ndarray) -> None:
    t, l, b, r = job["win"]
    pt, pl, pb, pr = job["inner"]
    sh, sw = job["shrunk"]
    out = filled[:, :sh, :sw]
    if job["scale"] < 1:
        out = np.clip(bicubic_resize(out, (b - t, r - l), job["inner"]), -1, 1)
    else:
        out = out[:, pt:pb, pl:pr]
    if job["feather"] > 0:
        wgt = np.clip(job["dist"] / job["feather"], 0, 1).astype(np.float32)
        out = wgt * out + (1 - wgt) * job["x0"]
    x = img[:, t + pt : t + pb, l + pl : l + pr]
    img[:, t + pt : t + pb, l + pl : l + pr] = np.where(job["paste"], out, x)


def run(session: ort.InferenceSession, img: np.ndarray, jobs: list, batch: int = 32) -> None:
    jobs = [j for j in jobs if j is not None]
    for i in range(0, len(jobs), batch):
        part = jobs[i : i + batch]
        feeds = {"image": np.stack([j["xs"] for j in part]).astype(np.float32),
                 "mask": np.stack([j["ms"] for j in part]).astype(np.float32)}
        filled = session.run(["filled"], feeds)[0]
        for j, f in zip(part, filled):
            paste(img, j, f)


# ---- thin parts: no window, a harmonic fill of their own pixels

THIN = 4
THIN_SWEEPS = 10


def split_thin(hole: np.ndarray, radius: int = THIN) -> tuple[np.ndarray, np.ndarray]:
    """(wide, thin): wide = the hole's opening by a disk of `radius` (beyond the image counts as hole)."""
    h, w = hole.shape
    offsets = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
               if dy * dy + dx * dx <= radius * radius]
    padded = np.pad(hole, radius, constant_values=True)
    core = np.ones_like(hole)
    for dy, dx in offsets:  # erosion: every pixel of the disk around it is hole
        core &= padded[radius + dy : radius + dy + h, radius + dx : radius + dx + w]
    padded = np.pad(core, radius, constant_values=False)
    wide = np.zeros_like(hole)
    for dy, dx in offsets:  # dilation: within the disk of a core pixel
        wide |= padded[radius + dy : radius + dy + h, radius + dx : radius + dx + w]
    wide &= hole
    return wide, hole & ~wide


def harmonic_thin(img: np.ndarray, thin: np.ndarray, sweeps: int = THIN_SWEEPS) -> None:
    """Fill the `thin` pixels of `img` (C,H,W) in place: peeled from the edge (each pass, a pixel with a settled
    4-neighbour takes their mean), then `sweeps` Jacobi sweeps (4 neighbours, border clamped)."""
    c, h, w = img.shape
    ys, xs = np.nonzero(thin)
    n = ys.size
    flat = img.reshape(c, h * w)
    nbrs = np.stack([np.maximum(ys - 1, 0) * w + xs, np.minimum(ys + 1, h - 1) * w + xs,
                     ys * w + np.maximum(xs - 1, 0), ys * w + np.minimum(xs + 1, w - 1)])
    slot = np.full(h * w, n)
    slot[ys * w + xs] = np.arange(n)
    inner = slot[nbrs]
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


REFINE_CELL = 1.5


def fill(session: ort.InferenceSession, photo: np.ndarray, hole: np.ndarray, size: int) -> np.ndarray:
    """(H,W,3) uint8 photo, (H,W) bool hole -> the filled photo (H,W,3) uint8; only hole pixels change."""
    img = (photo.astype(np.float32) / 255).transpose(2, 0, 1) * 2 - 1
    img = np.ascontiguousarray(img)
    height, width = hole.shape
    if height <= size and width <= size:
        run(session, img, [prepare(img, (0, 0, height, width), hole, hole, size)])
    else:
        wide, thin = split_thin(hole)
        coarse, big = [], []
        for pixels, box in regions(wide):
            side = max(box[2] - box[0], box[3] - box[1])
            t, l, b, r = win = square_window(box, max(size, 3 * side), height, width)
            coarse.append(prepare(img, win, hole[t:b, l:r], pixels[t:b, l:r], size))
            if side > size:
                big.append((pixels, box))
        run(session, img, coarse)
        cells = []
        step = max(1, int(REFINE_CELL * size))
        for pixels, (t0, l0, b0, r0) in big:
            rows, cols = -(-(b0 - t0) // step), -(-(r0 - l0) // step)
            for i in range(rows):
                ct, cb = t0 + (b0 - t0) * i // rows, t0 + (b0 - t0) * (i + 1) // rows
                for j in range(cols):
                    cl, cr = l0 + (r0 - l0) * j // cols, l0 + (r0 - l0) * (j + 1) // cols
                    if not pixels[ct:cb, cl:cr].any():
                        continue
                    t, l, b, r = win = square_window((ct, cl, cb, cr), REFINE_SCALE * size, height, width)
                    cell = np.zeros((b - t, r - l), bool)
                    cell[ct - t : cb - t, cl - l : cr - l] = pixels[ct:cb, cl:cr]
                    cells.append(prepare(img, win, cell, cell, size))
        run(session, img, cells)
        if thin.any():
            harmonic_thin(img, thin)
    new = np.clip(np.round((img.transpose(1, 2, 0) + 1) / 2 * 255), 0, 255).astype(np.uint8)
    return np.where(hole[:, :, None], new, photo)


def main(argv: list[str]) -> None:
    if len(argv) != 4:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    model, photo_path, mask_path, out_path = argv
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    size = int(meta["training_size"])
    photo = np.asarray(Image.open(photo_path).convert("RGB"))
    hole = np.asarray(Image.open(mask_path).convert("L")) > 127
    if hole.shape != photo.shape[:2]:
        sys.exit(f"the mask is {hole.shape[1]}x{hole.shape[0]}, the photo {photo.shape[1]}x{photo.shape[0]}")
    if not hole.any() or hole.all():
        sys.exit("the mask must mark some pixels, not all, as hole (white)")
    Image.fromarray(fill(session, photo, hole, size)).save(out_path)
    print(f"{photo_path} ({photo.shape[1]}x{photo.shape[0]}, hole {100 * hole.mean():.1f}%) -> {out_path}")


if __name__ == "__main__":
    main(sys.argv[1:])
