"""Reading image files: the one guarded decoder (`open_image`: pixel limit, decompression bombs and damaged files
refused with one line, EXIF orientation applied, 16-bit colour kept on request), modes (`read_image`, `to_mode`,
`to_8bit`: 16-bit and float images scaled, not clipped), `center_crop_resize`, `image_to_tensor`.

Every file opened here is noted as the command's input (`genfill.io.note_input`), so no write may replace it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genfill.errors import GenfillError
from genfill.io import note_input
from genfill.pixels import from_uint8

# The guarded reader's pixel limit: larger images (and decompression bombs, whose headers declare huge sizes)
# are refused before decoding. A setting: GENFILL_MAX_PIXELS in the environment, or max_pixels= per call.
MAX_PIXELS = int(os.environ.get("GENFILL_MAX_PIXELS", 64_000_000))


def open_image(path: str | Path, max_pixels: int | None = None, keep_depth: bool = False) -> Image.Image | np.ndarray:
    """The one guarded image reader: a decoded PIL image, any mode, as stored, turned upright by its EXIF
    orientation (as every viewer shows it; image, mask and output alike). Missing, unreadable, corrupt,
    truncated or oversized files (over `max_pixels`, default MAX_PIXELS) raise GenfillError. PIL has no mode
    for 16 bits per colour channel: with `keep_depth`, such a PNG or TIFF comes back as an (H,W,3|4) uint16
    numpy array (RGB(A) order, upright) instead of losing its low bytes; without, as 8-bit RGB(A)."""
    path = Path(path)
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if not path.is_file():
        raise GenfillError(f"image not found: {path}")
    note_input(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL warns on damaged files; they are refused or read
            with Image.open(path) as im:
                w, h = im.size
                if w < 1 or h < 1:
                    raise GenfillError(f"cannot read image {path}: it is {w}x{h} pixels")
                if w * h > limit:
                    raise GenfillError(f"image {path} is {w}x{h} = {w * h:,} pixels, over the limit of {limit:,} "
                                       f"(set GENFILL_MAX_PIXELS to raise it)")
                deep = keep_depth and _deep_colour(im)  # before getexif(), which may load and close the file
                orientation = _orientation(im)
                if deep:
                    return _orient_array(_read_deep(path), orientation)
                im.load()
                out = im.copy() if im.mode != "P" else im.convert("RGBA" if "transparency" in im.info else "RGB")
                return _orient_pil(out, orientation)
    except GenfillError:
        raise
    except Image.DecompressionBombError:
        raise GenfillError(f"image {path} declares too many pixels, over the limit of PIL's decoder "
                           f"(a decompression bomb?)") from None
    except MemoryError:
        raise GenfillError(f"image {path} is too large to decode in memory") from None
    except Exception as exc:  # noqa: BLE001 - PIL's decoders raise many types on hostile files
        raise GenfillError(f"cannot read image {path}: {exc.__class__.__name__}") from None


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)  # EXIF Orientation
    except Exception:  # noqa: BLE001 - a damaged EXIF block: the pixels as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


# EXIF orientation -> the PIL transpose that makes the picture upright (as ImageOps.exif_transpose does)
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


def _orient_pil(im: Image.Image, orientation: int) -> Image.Image:
    if orientation in _UPRIGHT:
        im = im.transpose(_UPRIGHT[orientation])
        im.info.pop("exif", None)  # the pixels are upright now: a copied tag would turn them again
    return im


def _orient_array(a: np.ndarray, orientation: int) -> np.ndarray:
    """The same transposes as `_orient_pil`, on an (H,W,...) array."""
    t = {2: lambda b: b[:, ::-1], 3: lambda b: b[::-1, ::-1], 4: lambda b: b[::-1],
         5: lambda b: b.swapaxes(0, 1), 6: lambda b: np.rot90(b, -1), 7: lambda b: np.rot90(b, 2).swapaxes(0, 1),
         8: lambda b: np.rot90(b, 1)}.get(orientation)
    return np.ascontiguousarray(a if t is None else t(a))


def _deep_colour(im: Image.Image) -> bool:
    """A PNG or TIFF with 16 bits per colour channel (PIL decodes these as 8-bit RGB(A))."""
    if im.mode not in ("RGB", "RGBA"):
        return False
    if im.format == "PNG":
        return _png_depth(im) == 16
    if im.format == "TIFF":
        bits = im.tag_v2.get(258) if hasattr(im, "tag_v2") else None
        return bool(bits) and max(bits if isinstance(bits, tuple) else (bits,)) == 16
    return False


def _png_depth(im: Image.Image) -> int:
    fp = getattr(im, "fp", None)
    try:
        pos = fp.tell()
        fp.seek(24)  # the signature (8) + IHDR length, type, width, height (16): then the bit depth byte
        depth = fp.read(1)[0]
        fp.seek(pos)  # where PIL's decoder expects it
        return depth
    except Exception:  # noqa: BLE001 - not a seekable PNG stream
        return 8


def _read_deep(path: Path) -> np.ndarray:
    import cv2

    a = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if a is None or a.dtype != np.uint16 or a.ndim != 3 or a.shape[2] not in (3, 4):
        raise GenfillError(f"cannot read the 16-bit image {path}")
    return a[:, :, [2, 1, 0, 3][: a.shape[2]]]  # OpenCV's BGR(A) -> RGB(A)


def read_image(path: str | Path, channels: int = 3, max_pixels: int | None = None) -> Image.Image:
    """Open an image through the guarded reader as RGB (alpha composited on white) or L, 16-bit and float
    modes scaled to 8 bits (not clipped)."""
    im = open_image(path, max_pixels)
    try:
        return to_mode(im, channels)
    except GenfillError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a mode PIL cannot convert
        raise GenfillError(f"cannot convert image {path} (mode {im.mode}): {exc.__class__.__name__}") from None


def to_8bit(im: Image.Image) -> Image.Image:
    """16-bit ("I;16*", "I") and float ("F") single-channel images as 8-bit "L", scaled by range: PIL's own
    convert("L") clips them, so a 16-bit PNG would read as white."""
    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.asarray(im, dtype=np.float64)
        return Image.fromarray(np.clip(np.round(a / 257.0), 0, 255).astype(np.uint8), "L")
    if im.mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        top = 1.0 if a.size == 0 or a.max() <= 1.0 else 255.0  # float images are 0..1, else 0..255
        return Image.fromarray(np.clip(np.round(a / top * 255.0), 0, 255).astype(np.uint8), "L")
    return im


def to_mode(im: Image.Image, channels: int) -> Image.Image:
    im = to_8bit(im)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    return im.convert("RGB" if channels == 3 else "L")


def center_crop_resize(im: Image.Image, size: int, crop: int | None = None) -> Image.Image:
    """Centre-crop to a square (of side `crop`, or the short side), then resize to size x size."""
    w, h = im.size
    side = min(w, h) if crop is None else min(crop, w, h)
    left, top = (w - side) // 2, (h - side) // 2
    im = im.crop((left, top, left + side, top + side))
    if side != size:
        im = im.resize((size, size), Image.BICUBIC, reducing_gap=3.0 if side > 2 * size else None)
    return im


def image_to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL -> float (1,C,H,W) in [-1, 1]."""
    a = np.asarray(im, dtype=np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    return from_uint8(torch.from_numpy(a.copy()).permute(2, 0, 1)[None])
