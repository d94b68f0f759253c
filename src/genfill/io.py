"""Files: atomic writes (images, arrays, figures and checkpoints among them), the input guard, checkpoints that
load with `weights_only=True`. Reading images is `genfill.imageread`.

Inside `guard_inputs()` (every `genfill` command runs in one) each file read through this module or
`genfill.imageread` (images, masks, configs, checkpoints, exports) is an input, and no write through this
module may land on one: the same resolved path or the same inode (a hard link) is refused before anything is
written.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import re
import json
import os
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from genfill.errors import GenfillError
from genfill.pixels import to_uint8
from genfill.validate import integer

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


# ---------------------------------------------------------------- inputs are never outputs


@dataclass
class _Inputs:
    """The files one command has read: by (device, inode) and by resolved path; `own` are folders the
    command owns (its run, on --resume), where rewriting what it read is its job."""

    inodes: dict[tuple[int, int], str] = field(default_factory=dict)
    paths: dict[Path, str] = field(default_factory=dict)
    own: list[Path] = field(default_factory=list)


_INPUTS: contextvars.ContextVar[_Inputs | None] = contextvars.ContextVar("genfill_inputs", default=None)


@contextlib.contextmanager
def guard_inputs():
    """A scope in which every file read through genfill.io is protected from being written (nested scopes
    share the outermost one)."""
    if _INPUTS.get() is not None:
        yield
        return
    token = _INPUTS.set(_Inputs())
    try:
        yield
    finally:
        _INPUTS.reset(token)


def _resolved(path: str | Path) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop, a name too long
        return Path(os.path.abspath(path))


def note_input(path: str | Path) -> None:
    """Record `path` as an input of the current command (a no-op outside `guard_inputs`)."""
    inputs = _INPUTS.get()
    if inputs is None:
        return
    inputs.paths[_resolved(path)] = str(path)
    try:
        st = os.stat(path)
    except OSError:
        return
    inputs.inodes[(st.st_dev, st.st_ino)] = str(path)


def own_folder(folder: str | Path) -> None:
    """The current command owns `folder` (a run it resumes): it may rewrite the files it read there."""
    inputs = _INPUTS.get()
    if inputs is not None:
        inputs.own.append(_resolved(folder))


def input_named(path: str | Path) -> str | None:
    """The input `path` is (as the user named it), or None: same resolved path or same inode."""
    inputs = _INPUTS.get()
    if inputs is None:
        return None
    target = _resolved(path)
    if any(target.is_relative_to(folder) for folder in inputs.own):
        return None
    if target in inputs.paths:
        return inputs.paths[target]
    try:
        st = os.stat(path)
    except OSError:
        return None
    return inputs.inodes.get((st.st_dev, st.st_ino))


def check_not_input(path: str | Path) -> None:
    """Refuse to write onto a file this command reads (an image, a mask, a config, a checkpoint)."""
    source = input_named(path)
    if source is not None:
        same = "" if str(source) == str(path) else f" (it is the input {source})"
        raise GenfillError(f"refusing to write {path}: it is an input of this command{same}; name another output")


# ---------------------------------------------------------------- atomic writes


def _temp_prefix(name: str) -> str:
    """Temp files of target NAME are `.NAME.PID.XXXXXXXX.tmp`; a long NAME is hashed so the temp name stays
    under the 255-byte limit whenever NAME itself is legal."""
    if len(name.encode("utf-8", "surrogateescape")) > 200:
        name = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return f".{name}."


_LIVE_TEMPS: set[str] = set()  # names of this process's temp files being written (threads share folders)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


_SWEPT: set[str] = set()  # folders this process has swept (once each: a folder of 10,000 outputs is listed once)
_TEMP_TAIL = re.compile(r"\.(\d+)\.[a-z0-9_]{8}\.tmp$")  # .NAME.PID.XXXXXXXX.tmp (mkstemp's 8 characters)


def sweep_temps(path: str | Path) -> int:
    """Remove the temp files killed writers left next to target `path`: the fixed `.NAME.tmp` of older
    writers for this target, and, at this process's first write into the folder, every `.NAME.PID.X.tmp`
    whose process is gone. A live process's temp file is never touched. Returns how many were removed."""
    path = Path(path)
    n = 0
    legacy = path.with_name(f".{path.name}.tmp")
    if legacy.is_file() and not legacy.is_symlink():
        legacy.unlink(missing_ok=True)
        n += 1
    folder = str(path.parent.resolve()) if path.parent.exists() else str(path.parent)
    if folder in _SWEPT:
        return n
    _SWEPT.add(folder)
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return n
    for entry in entries:
        match = _TEMP_TAIL.search(entry.name) if entry.name.startswith(".") else None
        if match is None:
            continue
        pid = int(match.group(1))
        stale = entry.name not in _LIVE_TEMPS if pid == os.getpid() else not _pid_alive(pid)
        try:
            if stale and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                n += 1
        except OSError:
            pass  # another writer swept it first
    return n


def _atomic(path: str | Path, write) -> None:
    """The one output writer. Writes a temp file in the same folder, then renames it over `path`, so a killed
    process never leaves half a file and a failure (a full disk included) leaves the old file intact and no
    temp file behind; temp files killed writers left are swept after the write (`sweep_temps`). New
    files get 0666 & ~umask (a replaced file keeps its mode); the target must be a regular file or absent
    (see check_target) and not an input of the running command (see check_not_input)."""
    path = check_target(path)
    check_not_input(path)
    make_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_temp_prefix(path.name)}{os.getpid()}.",
                                   suffix=".tmp")
    except OSError as exc:
        raise GenfillError(f"cannot write {path}: {_why(exc)}") from None
    _LIVE_TEMPS.add(os.path.basename(tmp))
    try:
        try:
            old_mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            old_mode = 0o666 & ~_umask()
        with os.fdopen(fd, "wb") as fh:
            try:
                write(fh)
            except RuntimeError as exc:  # torch.save reports a failed write (a full disk) as RuntimeError
                raise OSError(errno.ENOSPC if _disk_full(path.parent) else errno.EIO,
                              str(exc).splitlines()[0] if str(exc) else "write failed") from None
            fh.flush()
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
    finally:
        _LIVE_TEMPS.discard(os.path.basename(tmp))
    sweep_temps(path)


def _disk_full(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


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


# ---------------------------------------------------------------- image files (reading them: genfill.imageread)


def save_array(path: str | Path, a: np.ndarray) -> None:
    """Write an (H,W,3|4) uint16 RGB(A) array as a 16-bit PNG or TIFF, atomically (PIL cannot write these);
    any other suffix gets the 8-bit image."""
    import cv2

    fmt = image_format(path)
    if fmt not in ("PNG", "TIFF"):
        im = Image.fromarray(np.round(a / 257.0).astype(np.uint8))
        if fmt == "JPEG":
            im = im.convert("RGB")
        _atomic(path, lambda fh: im.save(fh, format=fmt))
        return
    ok, buf = cv2.imencode(".png" if fmt == "PNG" else ".tiff", a[:, :, [2, 1, 0, 3][: a.shape[2]]])
    if not ok:
        raise GenfillError(f"cannot encode a 16-bit image for {path}")
    atomic_write_bytes(path, buf.tobytes())


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
    note_input(path)
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise GenfillError(f"{path} is not a readable genfill checkpoint ({exc.__class__.__name__})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or "kind" not in ckpt:
        raise GenfillError(f"{path} is not a genfill checkpoint")
    for key, types_ in CHECKPOINT_KEYS.items():
        if not isinstance(ckpt.get(key), types_) or isinstance(ckpt.get(key), bool):
            raise GenfillError(f"{path} is not a complete genfill checkpoint: {key!r} is missing or of the wrong type")
    integer(f"{path}: image_size", ckpt["image_size"], 8, 4096)  # data.size's range
    if ckpt["channels"] not in (1, 3):
        raise GenfillError(f"{path}: channels {ckpt['channels']} is not valid (1 or 3)")
    ckpt["path"] = str(path)
    return ckpt
