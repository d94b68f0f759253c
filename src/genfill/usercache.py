"""The per-user cache of built data (decoded image stores, mask banks): where it is, what it holds, emptying it.

Built data goes to `$GENFILL_CACHE` when set, else the platform's user cache folder (`~/.cache/genfill` on
Linux, `$XDG_CACHE_HOME/genfill` when that is set; `~/Library/Caches/genfill` on macOS;
`%LOCALAPPDATA%\\genfill\\Cache` on Windows), so every folder a command runs from shares one cache. A config's
`data.cache_dir` overrides it for that config. The folder is marked with a `CACHEDIR.TAG` (the cache
directory tagging convention, which backup tools honour); `clear` empties only a folder carrying genfill's tag.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from genfill.errors import GenfillError
from genfill.io import atomic_write_text, make_dir

ENV = "GENFILL_CACHE"
TAG = "CACHEDIR.TAG"
# The first line is the convention's fixed signature (https://bford.info/cachedir/); the second says whose it is.
TAG_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
            "# This file marks a genfill cache (built data and mask banks); `genfill cache --clear` empties it.\n")


def platform_cache_home() -> Path:
    """The platform's per-user cache folder (not genfill's own subfolder)."""
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"


def cache_root() -> Path:
    """genfill's cache folder: $GENFILL_CACHE, else the platform's user cache + genfill (absolute)."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser().resolve()
    home = platform_cache_home()
    return home / "genfill" / "Cache" if sys.platform == "win32" else home / "genfill"


def mark(root: Path) -> None:
    """Create `root` and tag it as a genfill cache when genfill makes it (absent or empty): a folder that
    already holds other things is never tagged, so `clear` will not empty it."""
    fresh = not root.exists() or (root.is_dir() and not any(root.iterdir()))
    make_dir(root)  # a file in the way or a read-only parent: one clear line
    tag = root / TAG
    if fresh and not tag.exists():
        atomic_write_text(tag, TAG_TEXT)


def is_genfill_cache(root: Path) -> bool:
    tag = root / TAG
    return tag.is_file() and not tag.is_symlink() and "genfill" in tag.read_text(errors="replace")


@dataclass
class Entry:
    path: Path
    bytes: int
    files: int


def _size(path: Path) -> tuple[int, int]:
    if path.is_symlink() or path.is_file():
        return (path.lstat().st_size, 1)
    total = files = 0
    for folder, _, names in os.walk(path):  # does not follow links
        for n in names:
            try:
                total += (Path(folder) / n).lstat().st_size
                files += 1
            except OSError:
                pass
    return total, files


def entries(root: Path | None = None) -> list[Entry]:
    """What the cache holds: one entry per top-level item (a data store `<source key>/`, `masks/`), largest first."""
    root = root or cache_root()
    if not root.is_dir():
        return []
    out = [Entry(p, *_size(p)) for p in root.iterdir() if p.name != TAG]
    return sorted(out, key=lambda e: (-e.bytes, e.path.name))


def clear(root: Path | None = None) -> tuple[int, int]:
    """Empty genfill's cache folder (its tag stays); returns (items removed, bytes freed). Refuses a folder
    that does not carry genfill's tag, the home folder or a filesystem root, so a mistyped $GENFILL_CACHE
    never deletes anything else."""
    root = root or cache_root()
    if not root.exists():
        return 0, 0
    resolved = root.resolve()
    if resolved == Path.home().resolve() or resolved == Path(resolved.anchor) or not root.is_dir():
        raise GenfillError(f"refusing to clear {root}: not a cache folder")
    if not is_genfill_cache(root):
        raise GenfillError(f"refusing to clear {root}: it has no genfill {TAG} (genfill did not make it); "
                           "delete what you want by hand")
    removed = freed = 0
    for e in entries(root):
        if e.path.is_dir() and not e.path.is_symlink():
            shutil.rmtree(e.path)
        else:
            e.path.unlink()
        removed, freed = removed + 1, freed + e.bytes
    return removed, freed


def human(n: int) -> str:
    """Bytes as a short human size (1000-based, as `du --si` and file managers show)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"  # pragma: no cover
