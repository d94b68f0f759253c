"""Shared fixtures: a tiny built-in-faces cache and tiny run configs, so every test runs in seconds on CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from genfill.loadconfig import build_config

# Two threads by default; OMP_NUM_THREADS=1 (what `make mutate` runs each mutation with) is honoured.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 2))

# Tests that build data without a data.cache_dir use the repository's data/cache (the pre-per-user-cache
# default), never the user's own ~/.cache/genfill; a test that is about the cache sets GENFILL_CACHE itself.
os.environ.setdefault("GENFILL_CACHE", str(Path(__file__).resolve().parents[1] / "data" / "cache"))

TINY_SIZE = 32
TINY_COUNT = 60


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory) -> Path:
    """One data cache for the whole session (the faces are drawn once, then read from disk)."""
    return tmp_path_factory.mktemp("cache")


def tiny_raw(run_root: Path, cache_root: Path, model: dict | None = None, **sections) -> dict:
    """A raw config dict: 60 faces at 32x32, tiny VAE, 2 steps; override any section by keyword."""
    raw = {
        "name": "tiny",
        "out_dir": str(run_root),
        "data": {"name": "faces64", "size": TINY_SIZE, "count": TINY_COUNT, "cache_dir": str(cache_root)},
        "masks": {"kind": "square", "params": {"size": 12, "margin": 4}},
        "model": model or {"kind": "vae", "channels": [8, 16], "latent_dim": 8},
        "train": {"epochs": 1, "max_steps": 2, "batch_size": 8, "val_images": 16, "log_every": 1},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


@pytest.fixture
def make_cfg(tmp_path, cache_root):
    """make_cfg(model={...}, train={...}) -> a validated RunConfig writing under tmp_path/runs."""

    def make(model: dict | None = None, **sections):
        return build_config(tiny_raw(tmp_path / "runs", cache_root, model, **sections))

    return make


@pytest.fixture
def tiny_data(make_cfg):
    """The tiny faces cache as an ImageCache (train/val/test split 48/6/6)."""
    from genfill.data.cache import load_cache

    return load_cache(make_cfg().data, verbose=False)


def check_report_structure(page: Path, kinds: list[str], methods: list[str]) -> str:
    """What every genfill report must show (issue 16), checked on the written page: a picture before the first
    table; per mask kind a verdict table with every method and exactly one best-marked cell per metric column;
    a side-by-side picture per kind (on disk); no raw JSON pasted (it is linked); every referenced file exists.
    Returns the page's text."""
    import re

    from PIL import Image

    from genfill.report import referenced_files

    text = page.read_text()
    assert text.index("<img") < text.index("<table"), "the page must open with a picture"
    cards = dict(re.findall(r'<div class="card" data-mask="([^"]+)">(.*?)</div>', text, re.S))
    assert list(cards) == kinds, (list(cards), kinds)
    for kind, card in cards.items():
        head = re.findall(r"<th>(.*?)</th>", card)
        assert head[:2] == ["method", "PSNR dB"] and "SSIM" in head, head
        rows = re.findall(r"<tr>(<td.*?)</tr>", card, re.S)
        assert [re.sub(r"<.*?>", "", re.findall(r"<td[^>]*>(.*?)</td>", r)[0]) for r in rows] == methods
        for col in range(1, len(head)):
            marked = sum('class="best"' in re.findall(r"<td[^>]*>", r)[col] for r in rows)
            assert marked == 1, f"{kind}: column {head[col]} has {marked} best cells"
        assert "<svg" in card  # the bar chart
    refs = referenced_files(text)
    for kind in kinds:
        side = [r for r in refs if r.endswith(f"side_{kind}.png")]
        assert side, f"no side-by-side picture for {kind}"
        w, h = Image.open(page.parent / side[0]).size
        assert w > (2 + len(methods)) * 64 and h > 64  # original + masked + one column per method
    for r in refs:
        assert (page.parent / r).is_file(), f"{page} references a missing file {r}"
    assert "<pre" not in text and '{"' not in text and "&quot;protocol&quot;" not in text, "raw JSON pasted"
    assert re.search(r'href="[^"]*\.json"', text), "the raw JSON is linked"
    return text


@pytest.fixture
def nan_vae(monkeypatch):
    """Every VAE loss becomes NaN (the forward pass is otherwise the real one)."""
    from genfill.models.vae import VAE

    real = VAE.forward

    def poisoned(self, x, m, kl_scale=1.0):
        out = real(self, x, m, kl_scale)
        out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(VAE, "forward", poisoned)


@pytest.fixture
def tiny_run_dir(make_cfg) -> Path:
    """The run folder of a trained tiny VAE run (2 steps)."""
    from genfill.train import train

    cfg = make_cfg()
    train(cfg, verbose=False)
    return cfg.run_dir


def one_line_error(capsys, argv: list[str], pattern: str) -> str:
    """Run the CLI in-process on argv: exit code 2 and one stderr line, no traceback, matching regex `pattern`.
    Returns that line."""
    import re

    from genfill.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert err.startswith("genfill: error: ") and re.search(pattern, err), err
    return err


def bomb_png_header(w: int, h: int) -> bytes:
    """A PNG that declares w x h pixels and holds none: a decompression bomb's header (69 bytes)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def save_face(path: Path, size: int = 40) -> Path:
    """One drawn face (the built-in faces' seed 9) saved as a size x size image at `path`."""
    from PIL import Image

    from genfill.data.faces64 import draw_faces

    Image.fromarray(draw_faces(1, seed=9)[0].numpy()).resize((size, size)).save(path)
    return path


def image_folder(tmp_path: Path) -> Path:
    """tmp_path/imgs: four readable images in four formats and modes (one in a sub-folder, one fully
    transparent), a broken PNG and a text file."""
    from PIL import Image

    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 30), (255, 0, 0)).save(root / "a.jpg")
    rgba = Image.new("RGBA", (32, 32), (0, 0, 255, 0))  # fully transparent -> white
    rgba.save(root / "sub" / "b.png")
    Image.new("L", (20, 20), 100).save(root / "c.bmp")
    Image.new("RGB", (16, 16), (0, 255, 0)).save(root / "sub" / "d.webp")
    (root / "broken.png").write_bytes(b"not a png at all")
    (root / "notes.txt").write_text("ignored")
    return root
