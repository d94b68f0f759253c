"""The pictures every report shows, drawn from the protocol's own test images and holes: the headline (test image
i under mask kind i), one side-by-side picture per mask kind and one failure gallery per method (its worst
images, with every method's fill of them), each a labelled grid (original, masked, every method), and a model's
several fills with the heat map of their spread. The fills come from the fill functions the calling job hands
over (`genfill.resolve.fillers_of` re-resolves an evaluation read back); nothing here loads a model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from genfill.masks import masks_at
from genfill.io import make_dir, save_image
from genfill.metrics.uncertainty import spread
from genfill.pixels import FillFn, plural_panel, show_masked, to_uint8

TILE = 128  # px per image in the pictures (64 px faces shown at 2x, nearest neighbour)


def slug(name: str) -> str:
    """A method or mask name as a file-name part."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "method"


@dataclass
class Pictures:
    """Picture files of a report, relative to the folder they were written to."""

    headline: str | None = None
    side_by_side: dict[str, str] = field(default_factory=dict)  # mask kind -> file
    failures: dict[str, str] = field(default_factory=dict)  # method -> file
    rows: int = 0

    def prefixed(self, prefix: str) -> "Pictures":
        """The same pictures seen from a page `prefix` above their folder (e.g. "compare/")."""
        return Pictures(prefix + self.headline if self.headline else None,
                        {k: prefix + v for k, v in self.side_by_side.items()},
                        {k: prefix + v for k, v in self.failures.items()}, self.rows)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def labelled_grid(tiles: list[list[torch.Tensor | None]], col_labels: list[str], row_labels: list[str],
                  highlight_col: int | None = None, tile: int = TILE):
    """A PIL image: tiles[r][c] (C,H,W) in [-1, 1] (None = a grey "n/a" tile) upscaled to `tile` px, column
    labels drawn above, row labels on the left; `highlight_col` gets a coloured header and frame."""
    f_col, f_row = _font(15), _font(13)
    pad, head, left = 4, 26, 86
    n_rows, n_cols = len(tiles), len(col_labels)
    w = left + n_cols * (tile + pad) + pad
    h = head + n_rows * (tile + pad) + pad
    im = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(im)
    for c, lab in enumerate(col_labels):
        x0 = left + pad + c * (tile + pad)
        if c == highlight_col:
            draw.rectangle([x0 - 2, 0, x0 + tile + 1, h - 1], fill="#fde2c8")
        text = lab
        while draw.textlength(text, font=f_col) > tile and len(text) > 3:
            text = text[:-2] + "\u2026" if not text.endswith("\u2026") else text[:-2] + "\u2026"
        tw = draw.textlength(text, font=f_col)
        draw.text((x0 + (tile - tw) / 2, 5), text, fill="#111", font=f_col)
    for r, (row, lab) in enumerate(zip(tiles, row_labels)):
        y0 = head + pad + r * (tile + pad)
        for i, line in enumerate(lab.split("\n")[:3]):
            draw.text((6, y0 + 4 + 16 * i), line, fill="#333", font=f_row)
        for c, t in enumerate(row):
            x0 = left + pad + c * (tile + pad)
            if t is None:
                draw.rectangle([x0, y0, x0 + tile - 1, y0 + tile - 1], fill="#ddd")
                draw.text((x0 + tile / 2 - 10, y0 + tile / 2 - 8), "n/a", fill="#666", font=f_row)
                continue
            a = to_uint8(t.float().cpu())
            a = a.repeat(1, 1, 3) if a.shape[-1] == 1 else a
            im.paste(Image.fromarray(a.numpy()).resize((tile, tile), Image.NEAREST), (x0, y0))
    return im


def _fills(x: torch.Tensor, m: torch.Tensor, fillers: dict[str, FillFn | None]) -> dict[str, torch.Tensor | None]:
    out = {}
    for name, fn in fillers.items():
        if fn is None:
            out[name] = None
            continue
        with torch.no_grad():
            dev = x.device
            try:
                dev = next(fn.__self__.parameters()).device  # a model's bound fill: its device
            except (AttributeError, StopIteration, TypeError):
                pass
            out[name] = fn(x.to(dev), m.to(dev)).float().cpu()
    return out


def _panel(data, proto: dict, items: list[tuple[str, int]], fillers: dict[str, FillFn | None],
           row_label: Callable[[str, int, float], str], highlight: str | None = None):
    """The labelled grid of `items` [(mask kind, position in the split)]: original / masked / each method."""
    ids = data.split(proto["split"])
    x = torch.cat([data.batch(ids[i].view(1), "cpu") for _, i in items])
    m = torch.cat([masks_at(k, [i], data.size, data.size, seed=proto["seed"], **proto["masks"][k]) for k, i in items])
    fills = _fills(x, m, fillers)
    names = list(fillers)
    tiles = [[x[r], show_masked(x, m)[r], *[None if fills[n] is None else fills[n][r] for n in names]]
             for r in range(len(items))]
    labels = [row_label(k, i, float(m[r].mean())) for r, (k, i) in enumerate(items)]
    hl = 2 + names.index(highlight) if highlight in names else None
    return labelled_grid(tiles, ["original", "masked", *names], labels, hl)


def make_pictures(doc: dict, data, fillers: dict[str, FillFn | None], out_dir: Path, rows: int = 4,
                  gallery_name: Callable[[str], str] | None = None, gallery_rows: int = 4) -> Pictures:
    """Write the report's pictures into out_dir: `headline.png` (image i under mask kind i, one row each),
    `side_<kind>.png` (the first `rows` test images under that kind) and a failure gallery per method
    (its `gallery_rows` worst images by hole MSE, `entry["failures"]`, with every method's fill of them). `data` holds the
    protocol's split (positions as in eval.json). File names are returned relative to out_dir."""
    proto = doc["protocol"]
    out_dir = Path(out_dir)
    make_dir(out_dir)
    kinds = list(proto["masks"])
    n = min(proto["n"], len(data.split(proto["split"])))
    pics = Pictures(rows=min(rows, n))
    if n == 0 or not fillers:
        return pics

    def label(k: str, i: int, r: float) -> str:
        return f"#{i}\n{k}\n{100 * r:.0f}% hole"

    items = [(k, j % n) for j, k in enumerate(kinds)]
    save_pil(_panel(data, proto, items, fillers, label), out_dir / "headline.png")
    pics.headline = "headline.png"
    for k in kinds:
        name = f"side_{slug(k)}.png"
        save_pil(_panel(data, proto, [(k, i) for i in range(pics.rows)], fillers, label), out_dir / name)
        pics.side_by_side[k] = name
    for meth, e in doc["methods"].items():
        worst = [(f["mask"], f["index"]) for f in e.get("failures") or [] if f["mask"] in proto["masks"]
                 and f["index"] < n][:gallery_rows]
        if not worst:
            continue
        name = gallery_name(meth) if gallery_name else f"failures_{slug(meth)}.png"
        make_dir((out_dir / name).parent)
        save_pil(_panel(data, proto, worst, fillers, label, highlight=meth), out_dir / name)
        pics.failures[meth] = name
    return pics


def plural_picture(data, proto: dict, model, k: int, path: Path, shown: int = 6) -> None:
    """Test image i under mask kind i (the headline's items), one row each: input (hole white), `shown` of
    the model's fills (seeded by the protocol's seed), the heat map of their spread (`pixels.plural_panel`)."""
    kinds = list(proto["masks"])
    n = min(proto["n"], len(data.split(proto["split"])))
    ids = data.split(proto["split"])
    dev = next(model.parameters()).device
    items = [(kind, j % n) for j, kind in enumerate(kinds)]
    x = torch.cat([data.batch(ids[i].view(1), "cpu") for _, i in items]).to(dev)
    m = torch.cat([masks_at(kd, [i], data.size, data.size, seed=proto["seed"], **proto["masks"][kd])
                   for kd, i in items]).to(dev)
    with torch.no_grad():
        fills = model.fill_samples(x, m, min(k, shown), torch.Generator(dev).manual_seed(proto["seed"]))
    save_image(plural_panel(x, m, fills, spread(fills) / 2 * m), path)


def save_pil(im, path: Path) -> None:
    """A PIL image written atomically (through io.save_image's uint8 path)."""
    arr = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float().div(127.5).sub(1)
    save_image(arr, path)
