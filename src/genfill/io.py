"""Files: atomic writes, image reading/writing, checkpoints that load with `weights_only=True`."""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from genfill.errors import GenfillError
from genfill.pixels import from_uint8, make_grid, to_uint8  # noqa: F401 (make_grid: importable from io too)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
CHECKPOINT_FORMAT = 1
# What load_model needs from every checkpoint (training's resume needs more; train.py checks those).
CHECKPOINT_KEYS = {"kind": str, "model_config": dict, "image_size": int, "channels": int, "model": dict}


# Formats save_image writes, by suffix. Anything else (.gif, .txt, no suffix) is refused, never written as PNG.
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
                 ".tiff": "TIFF"}


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def _why(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return "the disk is full"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied (read-only?)"
    return exc.strerror or exc.__class__.__name__


def make_dir(path: str | Path) -> Path:
    """mkdir -p with a clear error: a file in the way, a read-only parent, a full disk."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise GenfillError(f"cannot create folder {path}: a file is in the way") from None
    except OSError as exc:
        raise GenfillError(f"cannot create folder {path}: {_why(exc)}") from None
    return path


def check_target(path: str | Path) -> Path:
    """Refuse to replace what is not a regular file. Symlinks are refused too (not followed): replacing one
    would either clobber the link or write somewhere the user did not name."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    except NotADirectoryError:
        raise GenfillError(f"cannot write {path}: a file is in the way of its folder") from None
    except OSError as exc:
        raise GenfillError(f"cannot write {path}: {_why(exc)}") from None
    if stat.S_ISLNK(st.st_mode):
        raise GenfillError(f"refusing to write {path}: it is a symlink (name the real file instead)")
    if stat.S_ISDIR(st.st_mode):
        raise GenfillError(f"cannot write {path}: it is a directory (name a file inside it)")
    if not stat.S_ISREG(st.st_mode):
        raise GenfillError(f"refusing to write {path}: it is not a regular file (a device, FIFO or socket)")
    return path


def _atomic(path: str | Path, write) -> None:
    """The one output writer. Writes a temp file in the same folder, then renames it over `path`, so a killed
    process never leaves half a file and a failure (a full disk included) leaves the old file intact and no
    temp file behind. New files get 0666 & ~umask (a replaced file keeps its mode); the target must be a
    regular file or absent (see check_target)."""
    path = check_target(path)
    make_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise GenfillError(f"cannot write {path}: {_why(exc)}") from None
    try:
        try:
            old_mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            old_mode = 0o666 & ~_umask()
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            _pause_for_tests("write", path)  # the temp file is whole, the target not yet replaced
            os.fsync(fh.fileno())
        os.chmod(tmp, old_mode)
        check_target(path)  # nothing swapped a link or device in while we wrote
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise GenfillError(f"cannot write {path}: {_why(exc)}; the previous file, if any, is intact") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temps(folder: str | Path) -> int:
    """Delete temp files (`.NAME.*.tmp`) a killed writer left in `folder`; returns how many."""
    n = 0
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.glob(".*.tmp"):
            if p.is_file() and not p.is_symlink():
                p.unlink(missing_ok=True)
                n += 1
    return n


_PAUSE_HITS = [0]


def _pause_for_tests(point: str, name: str | Path = "") -> None:
    """Test hook for the kill -9 fault test (tests/test_faults.py); a no-op unless GENFILL_TEST_PAUSE is set.
    GENFILL_TEST_PAUSE=POINT:NAME:SECONDS sleeps at the (GENFILL_TEST_PAUSE_SKIP + 1)-th time the code passes
    POINT with NAME, after writing GENFILL_TEST_PAUSE_MARKER, so the test's kill lands exactly there. Points:
    write (NAME = the file name, inside the atomic write), step (NAME = the step number, before the step),
    metrics (NAME = the row's step, halfway through writing its line)."""
    spec = os.environ.get("GENFILL_TEST_PAUSE")
    if not spec:
        return
    want, want_name, seconds = spec.split(":")
    if want != point or Path(str(name)).name != want_name:
        return
    _PAUSE_HITS[0] += 1
    if _PAUSE_HITS[0] <= int(os.environ.get("GENFILL_TEST_PAUSE_SKIP", "0")):
        return
    marker = os.environ.get("GENFILL_TEST_PAUSE_MARKER")
    if marker:
        Path(marker).write_text(f"{point} {want_name}\n")  # test-only signal, not an output
    time.sleep(float(seconds))


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


# The guarded reader's pixel limit: larger images (and decompression bombs, whose headers declare huge sizes)
# are refused before decoding. A setting: GENFILL_MAX_PIXELS in the environment, or max_pixels= per call.
MAX_PIXELS = int(os.environ.get("GENFILL_MAX_PIXELS", 64_000_000))


def open_image(path: str | Path, max_pixels: int | None = None) -> Image.Image:
    """The one guarded image reader: a decoded PIL image, any mode, as stored. Missing, unreadable, corrupt,
    truncated or oversized files (over `max_pixels`, default MAX_PIXELS) raise GenfillError."""
    path = Path(path)
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if not path.is_file():
        raise GenfillError(f"image not found: {path}")
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
                im.load()
                return im.copy() if im.mode != "P" else im.convert("RGBA" if "transparency" in im.info else "RGB")
    except GenfillError:
        raise
    except Image.DecompressionBombError:
        raise GenfillError(f"image {path} declares too many pixels, over the limit of PIL's decoder "
                           f"(a decompression bomb?)") from None
    except MemoryError:
        raise GenfillError(f"image {path} is too large to decode in memory") from None
    except Exception as exc:  # noqa: BLE001 - PIL's decoders raise many types on hostile files
        raise GenfillError(f"cannot read image {path}: {exc.__class__.__name__}") from None


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


def image_format(path: str | Path) -> str:
    """The PIL format for an output path's suffix; a suffix genfill does not write is a GenfillError."""
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_FORMATS:
        raise GenfillError(f"cannot write an image to {path}: unsupported suffix {suffix or '(none)'!r} "
                           f"(use {', '.join(sorted(IMAGE_FORMATS))})")
    return IMAGE_FORMATS[suffix]


def save_image(x: torch.Tensor, path: str | Path) -> None:
    """Save one (C,H,W) or (1,C,H,W) image in [-1, 1] atomically, in the format its suffix names."""
    fmt = image_format(path)
    if x.dim() == 4:
        x = x[0]
    a = to_uint8(x).cpu().numpy()
    im = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
    _atomic(path, lambda fh: im.save(fh, format=fmt))


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
    for key, types_ in CHECKPOINT_KEYS.items():
        if not isinstance(ckpt.get(key), types_) or isinstance(ckpt.get(key), bool):
            raise GenfillError(f"{path} is not a complete genfill checkpoint: {key!r} is missing or of the wrong type")
    if ckpt["image_size"] < 1 or ckpt["channels"] not in (1, 3):
        raise GenfillError(f"{path}: image_size {ckpt['image_size']} / channels {ckpt['channels']} are not valid")
    ckpt["path"] = str(path)
    return ckpt
