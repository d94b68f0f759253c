"""Image sources. Each turns into uint8 (N,H,W,C) images plus named splits, which `cache.py` stores once.

- ``faces64``: the built-in DCGAN faces (see faces64.py), seeded 80/10/10 split.
- ``folder``: any tree of jpg/png/webp/bmp images; RGBA on white; centre-crop + resize; unreadable files
  are counted and reported, not fatal; seeded 80/10/10 split.
- ``celeba``: the official layout, ``root/img_align_celeba/*.jpg`` + ``root/list_eval_partition.txt``
  (0 = train, 1 = val, 2 = test), the usual 178x178 centre crop, then resize.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genfill.config import DataConfig
from genfill.errors import GenfillError
from genfill.imageread import center_crop_resize, read_image, to_mode
from genfill.io import IMAGE_EXTENSIONS

CELEBA_CROP = 178


@dataclass
class Source:
    images: np.ndarray  # uint8 (N,H,W,C)
    splits: dict[str, np.ndarray]  # split name -> int64 indices into images
    info: dict  # what was read: counts, skipped files


def split_sizes(n: int, fractions=(0.8, 0.1, 0.1)) -> tuple[int, int, int]:
    """(train, val, test) sizes of `seeded_split` of n images, worked out without drawing anything."""
    n_val = max(1, round(n * fractions[1])) if n >= 3 else 0
    n_test = max(1, round(n * fractions[2])) if n >= 3 else 0
    return n - n_val - n_test, n_val, n_test


def seeded_split(n: int, seed: int, fractions=(0.8, 0.1, 0.1)) -> dict[str, np.ndarray]:
    """A seeded permutation cut 80/10/10; every split gets at least one image when n >= 3."""
    perm = np.random.default_rng(seed).permutation(n)
    n_train, n_val, n_test = split_sizes(n, fractions)
    return {
        "train": np.sort(perm[:n_train]),
        "val": np.sort(perm[n_train : n_train + n_val]),
        "test": np.sort(perm[n_train + n_val :]),
    }


def list_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def source_key(cfg: DataConfig) -> str:
    """Identifies the cache for this source and size: a change of files, size or channels gives a new key."""
    parts = [cfg.name, str(cfg.size), str(cfg.channels)]
    if cfg.name == "faces64":
        parts += [str(cfg.count), str(cfg.seed)]
    else:
        root = _root(cfg)
        h = hashlib.sha256(str(root.resolve()).encode())
        files = list_images(root / "img_align_celeba") if cfg.name == "celeba" else list_images(root)
        for p in files:
            st = p.stat()
            h.update(f"{p.relative_to(root)}:{st.st_size}:{int(st.st_mtime)}".encode())
        if cfg.name == "celeba":
            h.update((root / "list_eval_partition.txt").read_bytes())
        else:
            h.update(str(cfg.seed).encode())
        parts.append(h.hexdigest()[:12])
    return "-".join(parts)


def _root(cfg: DataConfig) -> Path:
    if not cfg.root:
        raise GenfillError(f"data.root is required for the {cfg.name} dataset")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise GenfillError(f"data.root is not a directory: {root}")
    if cfg.name == "celeba":
        if not (root / "img_align_celeba").is_dir() or not (root / "list_eval_partition.txt").is_file():
            raise GenfillError(
                f"{root} is not a CelebA root: expected img_align_celeba/ and list_eval_partition.txt"
            )
    return root


def _load_files(paths: list[Path], cfg: DataConfig, crop: int | None, progress) -> tuple[np.ndarray, list[int], list[str]]:
    arrays, kept, skipped = [], [], []
    for i, p in enumerate(paths):
        try:
            im = center_crop_resize(read_image(p, cfg.channels), cfg.size, crop)
        except GenfillError:
            skipped.append(str(p))
            continue
        a = np.asarray(to_mode(im, cfg.channels), dtype=np.uint8)
        arrays.append(a if a.ndim == 3 else a[:, :, None])
        kept.append(i)
        if progress is not None:
            progress(1)
    if not arrays:
        raise GenfillError(f"no readable images under {cfg.root} ({len(skipped)} unreadable)")
    return np.stack(arrays), kept, skipped


def load_source(cfg: DataConfig, progress=None) -> Source:
    if cfg.channels not in (1, 3):
        raise GenfillError(f"data.channels must be 1 or 3, got {cfg.channels}")
    if cfg.size < 8:
        raise GenfillError(f"data.size must be at least 8, got {cfg.size}")
    if cfg.name == "faces64":
        return _faces64(cfg, progress)
    if cfg.name == "folder":
        root = _root(cfg)
        paths = list_images(root)
        if not paths:
            raise GenfillError(f"no images (jpg, png, webp, bmp) under {root}")
        images, kept, skipped = _load_files(paths, cfg, None, progress)
        return Source(images, seeded_split(len(images), cfg.seed), _info(len(paths), skipped))
    if cfg.name == "celeba":
        return _celeba(cfg, progress)
    raise GenfillError(f"unknown dataset {cfg.name!r} (valid: faces64, folder, celeba)")


def _info(found: int, skipped: list[str]) -> dict:
    if skipped:
        print(f"genfill: skipped {len(skipped)} unreadable image(s) of {found}, e.g. {skipped[0]}", file=sys.stderr)
    return {"found": found, "loaded": found - len(skipped), "skipped": len(skipped), "skipped_examples": skipped[:5]}


def _faces64(cfg: DataConfig, progress) -> Source:
    from genfill.data.faces64 import draw_faces

    if cfg.count < 3:
        raise GenfillError(f"data.count must be at least 3, got {cfg.count}")
    faces = draw_faces(cfg.count, cfg.seed, progress=progress)  # (N,64,64,3)
    return Source(_faces_as(faces, cfg).numpy(), seeded_split(cfg.count, cfg.seed),
                  {"found": cfg.count, "loaded": cfg.count, "skipped": 0})


def faces64_split(cfg: DataConfig, split: str, n: int, progress=None) -> tuple[np.ndarray, int]:
    """The first n images of `split` of the built-in faces, exactly as the full cache holds them (the same
    seeded split, the same faces), drawn alone: (uint8 (n',H,W,C), the split's full size)."""
    from genfill.data.faces64 import draw_faces_at

    if cfg.count < 3:
        raise GenfillError(f"data.count must be at least 3, got {cfg.count}")
    ids = seeded_split(cfg.count, cfg.seed)[split]
    faces = draw_faces_at(ids[:n].tolist(), cfg.seed, progress=progress)
    return _faces_as(faces, cfg).numpy(), len(ids)


def _faces_as(faces: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """(N,64,64,3) uint8 faces at the config's size and channels."""
    if cfg.size != 64 or cfg.channels != 3:
        x = faces.permute(0, 3, 1, 2).float()
        if cfg.channels == 1:  # ITU-R 601 luma, as PIL's "L"
            x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        if cfg.size != 64:
            x = torch.nn.functional.interpolate(x, size=(cfg.size, cfg.size), mode="bilinear",
                                                antialias=cfg.size < 64, align_corners=False)
        faces = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return faces


def _celeba(cfg: DataConfig, progress) -> Source:
    root = _root(cfg)
    split_of: dict[str, int] = {}
    for line_no, line in enumerate((root / "list_eval_partition.txt").read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise GenfillError(f"list_eval_partition.txt line {line_no}: expected 'NAME 0|1|2', got {line!r}")
        split_of[fields[0]] = int(fields[1])
    folder = root / "img_align_celeba"
    paths = [folder / name for name in sorted(split_of) if (folder / name).is_file()]
    if not paths:
        raise GenfillError(f"none of the images in list_eval_partition.txt exist under {folder}")
    images, kept, skipped = _load_files(paths, cfg, CELEBA_CROP, progress)
    labels = np.array([split_of[paths[i].name] for i in kept])
    splits = {name: np.nonzero(labels == code)[0] for code, name in enumerate(("train", "val", "test"))}
    return Source(images, splits, _info(len(paths), skipped))
