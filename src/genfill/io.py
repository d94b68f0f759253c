"""Files: atomic writes, image reading/writing, checkpoints that load with `weights_only=True`."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from genfill.errors import GenfillError
from genfill.pixels import from_uint8, make_grid, to_uint8  # noqa: F401 (make_grid: importable from io too)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
CHECKPOINT_FORMAT = 1


def _atomic(path: str | Path, write) -> None:
    """Write through a temp file in the same folder, then rename: a killed process never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    _atomic(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    _atomic(path, lambda fh: torch.save(obj, fh))


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    _atomic(path, lambda fh: np.save(fh, array))


def archive_previous(run_dir: Path) -> Path | None:
    """Move an earlier run aside (never delete what a user has): runs/demo -> runs/demo-<time>."""
    if not run_dir.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(run_dir.stat().st_mtime))
    target = run_dir.with_name(f"{run_dir.name}-{stamp}")
    n = 1
    while target.exists():
        target = run_dir.with_name(f"{run_dir.name}-{stamp}-{n}")
        n += 1
    run_dir.rename(target)
    return target


# ---------------------------------------------------------------- images


def read_image(path: str | Path, channels: int = 3) -> Image.Image:
    """Open an image as RGB (alpha composited on white) or L; a clear error for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise GenfillError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            return to_mode(im, channels)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise GenfillError(f"cannot read image {path}: {exc.__class__.__name__}") from exc


def to_mode(im: Image.Image, channels: int) -> Image.Image:
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
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


def save_image(x: torch.Tensor, path: str | Path) -> None:
    """Save one (C,H,W) or (1,C,H,W) image in [-1, 1] atomically; format from the suffix."""
    if x.dim() == 4:
        x = x[0]
    a = to_uint8(x).cpu().numpy()
    im = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}.get(path.suffix.lower(), "PNG")

    def write(fh):
        im.save(fh, format=fmt)

    _atomic(path, write)


def save_figure(fig, path: str | Path, dpi: int = 100) -> None:
    """Render a matplotlib figure to PNG atomically and close it."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | Path, payload: dict) -> None:
    payload = {"format": CHECKPOINT_FORMAT, **payload}
    atomic_torch_save(payload, path)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """Load a genfill checkpoint without unpickling arbitrary objects (weights_only=True)."""
    path = Path(path)
    if path.is_dir():
        # A run directory: take its best checkpoint, else the last.
        for name in ("best.pt", "last.pt"):
            if (path / "checkpoints" / name).is_file():
                path = path / "checkpoints" / name
                break
        else:
            raise GenfillError(f"no checkpoint in run directory {path}")
    if not path.is_file():
        raise GenfillError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise GenfillError(f"{path} is not a readable genfill checkpoint ({exc.__class__.__name__})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or "kind" not in ckpt:
        raise GenfillError(f"{path} is not a genfill checkpoint")
    ckpt["path"] = str(path)
    return ckpt
