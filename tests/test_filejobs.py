"""genfill.filejobs (the `genfill fill` command's job): each image and its hole are read and checked once, K is
checked once per call, and what lands on disk is what `Inpainter.fill` / `fill_samples` give for that image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import genfill
import genfill.api as api
import genfill.filejobs as filejobs
import genfill.metrics.uncertainty as uncertainty
from genfill.pixels import to_uint8
from tests.conftest import one_line_error, save_face


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory, cache_root):
    """A VAE (it draws several fills) trained for 2 steps on 32x32 faces."""
    from tests.conftest import tiny_raw
    from genfill.loadconfig import build_config
    from genfill.train import train

    cfg = build_config(tiny_raw(tmp_path_factory.mktemp("filejobs") / "runs", cache_root))
    train(cfg, verbose=False)
    return cfg.run_dir


def _photos(folder, n=2, h=36, w=44):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
        hole = np.zeros((h, w), np.uint8)
        hole[8 + i : 20 + i, 10:30] = 255
        Image.fromarray(hole).save(folder / f"p{i}_mask.png")


def _count(monkeypatch, calls, module, name, key):
    real = getattr(module, name)

    def counted(*a, **k):
        calls[key] = calls.get(key, 0) + 1
        return real(*a, **k)

    monkeypatch.setattr(module, name, counted)


def test_each_image_and_hole_is_decoded_once_and_k_checked_once(vae_run, tmp_path, monkeypatch):
    _photos(tmp_path / "in")
    painter = genfill.load(vae_run, device="cpu")
    calls: dict[str, int] = {}
    _count(monkeypatch, calls, api, "_open", "open")
    for module in (api, filejobs):
        _count(monkeypatch, calls, module, "decode_mask", "decode_mask")
    for module in (uncertainty, filejobs):
        _count(monkeypatch, calls, module, "check_samples", "check_samples")
    jobs = filejobs.fill_files(painter, [tmp_path / "in"], tmp_path / "out", samples=2, progress=False)
    assert calls == {"open": 4, "decode_mask": 2, "check_samples": 1}  # 2 images + their 2 masks
    monkeypatch.undo()
    for i, job in enumerate(jobs):  # image i is filled with seed + i, as one `fill` of it would be
        src, mask = tmp_path / "in" / f"p{i}.png", tmp_path / "in" / f"p{i}_mask.png"
        assert np.array_equal(np.asarray(Image.open(job.output)), np.asarray(painter.fill(src, mask, seed=i)))
        panel = painter.fill_samples(src, mask, 2, seed=i).panel()
        assert np.array_equal(np.asarray(Image.open(job.samples)), to_uint8(panel).numpy())


# ---- issue 12's probe: two inputs never overwrite each other -----------------------------------------


def test_two_inputs_with_the_same_stem_never_overwrite_each_other(tiny_run_dir, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    save_face(tmp_path / "a" / "x.png", 40)
    save_face(tmp_path / "b" / "x.png", 48)
    one_line_error(capsys, ["fill", str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png"), "-c",
                            str(tiny_run_dir), "--mask-kind", "square", "-o", str(tmp_path / "out")], "both be written")
    assert not (tmp_path / "out").exists()  # refused before anything was written
