"""Fill holes in image files with a trained model: the filled image plus a panel as seed 002 shows
(original / masked / predicted hole / composite)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from genfill.data.masks import fixed_masks, load_mask_file
from genfill.errors import GenfillError
from genfill.io import IMAGE_EXTENSIONS, center_crop_resize, image_to_tensor, read_image, save_image
from genfill.models import GenModel
from genfill.pixels import fill_panel
from genfill.progress import Progress


@dataclass
class FillResult:
    source: Path
    filled: Path
    panel: Path
    hole_ratio: float


def crop_resize_mask(m: torch.Tensor, size: int) -> torch.Tensor:
    """The same centre-crop + resize the image gets, for a (1,1,H,W) mask (nearest, stays binary)."""
    h, w = m.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    m = m[..., top : top + side, left : left + side]
    if side != size:
        m = F.interpolate(m, size=(size, size), mode="nearest")
    return m


def panel(x: torch.Tensor, m: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """(4 images) original / masked (hole white) / predicted hole on black / composite, as one grid."""
    return fill_panel(x, m, filled * m - (1 - m), filled, nrow=4)


def output_paths(src: Path, out: Path, many: bool) -> tuple[Path, Path]:
    """`-o` is a file for one input with an image suffix, else a folder of <stem>_filled / <stem>_panel."""
    if not many and out.suffix.lower() in IMAGE_EXTENSIONS:
        return out, out.with_name(f"{out.stem}_panel.png")
    return out / f"{src.stem}_filled.png", out / f"{src.stem}_panel.png"


def fill_files(model: GenModel, images: list[str], out: str, mask_file: str | None = None,
               mask_kind: str | None = None, mask_params: dict | None = None, seed: int = 0,
               verbose: bool = True, **fill_options) -> list[FillResult]:
    if not images:
        raise GenfillError("no images given to fill")
    if mask_file and mask_kind:
        raise GenfillError("give either --mask FILE or --mask-kind KIND, not both")
    device = next(model.parameters()).device
    size, channels = model.image_size, model.channels
    out_path = Path(out)
    results = []
    bar = Progress(len(images), "fill", "img", enabled=verbose and len(images) > 1)
    for i, name in enumerate(images):
        src = Path(name)
        im = read_image(src, channels)
        if mask_file:
            m = crop_resize_mask(load_mask_file(mask_file, size=(im.height, im.width)), size)
        else:
            m = fixed_masks(mask_kind or "thick", 1, size, size, seed=seed, start=i, **(mask_params or {}))
        x = image_to_tensor(center_crop_resize(im, size)).to(device)
        m = m.to(device)
        filled = model.fill(x, m, **fill_options)
        filled_path, panel_path = output_paths(src, out_path, len(images) > 1)
        save_image(filled, filled_path)
        save_image(panel(x, m, filled), panel_path)
        results.append(FillResult(src, filled_path, panel_path, float(m.mean())))
        bar.update(1)
    bar.close()
    return results
