"""Masks from image files: `load_mask_file` (a user's own mask, grey > 127 = hole) and the `file` kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from PIL import Image

from genfill.errors import GenfillError
from genfill.imageread import open_image, to_8bit
from genfill.masks.kinds import _check_hw, _register


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
