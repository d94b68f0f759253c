"""genfill.load(...).fill on users' own images: any size, mode and type in, the same out, and not one pixel
outside the hole changed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import genfill
from genfill.loadconfig import build_config
from genfill.errors import GenfillError
from genfill.inpaint import fill_native, hole_regions, pad_to

from tests.conftest import one_line_error, save_face, tiny_raw


@pytest.fixture(scope="module")
def run64(tmp_path_factory, cache_root):
    """A tiny VAE trained for 2 steps on 64x64 faces."""
    from genfill.train import train

    raw = tiny_raw(tmp_path_factory.mktemp("runs"), cache_root, data={"size": 64})
    cfg = build_config(raw)
    train(cfg, verbose=False)
    return cfg.run_dir


def _photo(h: int, w: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 127 // (h + w))], 2)[:, :, :channels]
    return np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)


def _strokes(h: int, w: int) -> np.ndarray:
    """A small blob, a long thin stroke and a big square: one window, refine, and coarse+refine paths."""
    m = np.zeros((h, w), bool)
    m[20:30, 40:52] = True
    m[h // 2, 10 : w - 10] = True
    m[h // 2 - 2 : h // 2 + 2, 10 : w - 10] = True
    m[h - 150 : h - 40, w - 150 : w - 40] = True
    return m


def test_fills_rgb_grey_and_rgba_at_their_own_size_and_mode(run64, tmp_path):
    painter = genfill.load(run64, device="cpu")
    assert painter.size == 64

    # a 517x389 RGB photo (PIL)
    rgb = Image.fromarray(_photo(389, 517, 3))
    hole = _strokes(389, 517)
    out = painter.fill(rgb, Image.fromarray(hole))
    assert isinstance(out, Image.Image) and out.size == (517, 389) and out.mode == "RGB"
    a, o = np.asarray(rgb), np.asarray(out)
    assert (o[~hole] == a[~hole]).all()
    assert (o[hole] != a[hole]).any()

    # a 300x300 grey image (numpy, float in [0, 1]) comes back grey, float, same values outside
    grey = _photo(300, 300, 1)[:, :, 0].astype(np.float32) / 255
    g_hole = _strokes(300, 300)
    g_out = painter.fill(grey, g_hole)
    assert g_out.shape == (300, 300) and g_out.dtype == np.float32
    assert (g_out[~g_hole] == grey[~g_hole]).all()

    # an RGBA PNG from disk, its mask from disk: RGBA back, alpha kept outside the hole
    rgba = np.concatenate([_photo(200, 150, 3), np.full((200, 150, 1), 200, np.uint8)], 2)
    rgba[:50, :, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "logo.png")
    r_hole = np.zeros((200, 150), bool)
    r_hole[80:120, 60:100] = True
    Image.fromarray(r_hole).save(tmp_path / "logo_mask.png")
    r_out = painter.fill(tmp_path / "logo.png", tmp_path / "logo_mask.png")
    assert r_out.mode == "RGBA" and r_out.size == (150, 200)
    assert (np.asarray(r_out)[~r_hole] == rgba[~r_hole]).all()


def test_types_round_trip_and_small_images_are_padded(run64):
    painter = genfill.load(run64, device="cpu")
    x = _photo(40, 50, 3)
    hole = np.zeros((40, 50), bool)
    hole[10:20, 10:25] = True
    t = torch.from_numpy(x).permute(2, 0, 1).float() / 255  # (C,H,W) float tensor
    t_out = painter.fill(t, torch.from_numpy(hole))
    assert t_out.shape == t.shape and t_out.dtype == t.dtype
    assert torch.equal(t_out[:, ~torch.from_numpy(hole)], t[:, ~torch.from_numpy(hole)])
    u_out = painter.fill(x, hole.astype(np.uint8) * 255)
    assert u_out.dtype == np.uint8 and (u_out[~hole] == x[~hole]).all()
    many = painter.fill_many([x, x], hole)
    assert len(many) == 2 and all(m.shape == x.shape for m in many)
    assert np.array_equal(painter.fill(x, hole, seed=3), painter.fill(x, hole, seed=3))


def test_mistakes_are_genfill_errors(run64):
    painter = genfill.load(run64, device="cpu")
    x = _photo(100, 120, 3)
    hole = np.zeros((100, 120), bool)
    hole[40:60, 40:60] = True
    cases = [
        (lambda: painter.fill(x, hole[:50]), "pass mask_resize=True"),
        (lambda: painter.fill(x, np.zeros_like(hole)), "no hole"),
        (lambda: painter.fill(x, np.ones_like(hole)), "whole image"),
        (lambda: painter.fill(x.astype(np.int64), hole), "dtype int64"),
        (lambda: painter.fill(x.astype(np.float32), hole), "[0, 1]"),
        (lambda: painter.fill(x[:, :, :2].transpose(2, 0, 1), hole), "expected"),
        (lambda: painter.fill(42, hole), "cannot fill a int"),
        (lambda: painter.fill("/nonexistent.png", hole), "image not found"),
        (lambda: genfill.load("/nonexistent-run"), "not found"),
    ]
    for call, text in cases:
        with pytest.raises(GenfillError, match=None) as err:
            call()
        assert text in str(err.value), (text, str(err.value))
    # --mask-resize scales a smaller mask (nearest), --dilate grows the hole
    small = np.zeros((50, 60), bool)
    small[20:30, 20:30] = True
    out = painter.fill(x, small, mask_resize=True, dilate=2)
    changed = (out != x).any(2)
    assert changed[40:60, 40:60].any() and not changed[:35].any()


def test_peers_load_by_name_and_fill_at_native_size():
    x = _photo(90, 130, 3)
    hole = np.zeros((90, 130), bool)
    hole[30:50, 50:80] = True
    for name in ("telea", "ns", "biharmonic", "mean"):
        out = genfill.load(name).fill(x, hole)
        assert out.shape == x.shape and (out[~hole] == x[~hole]).all()


def test_fill_native_paths_paste_only_the_hole():
    """Every branch of fill_native (pad, one window, coarse + refine) changes hole pixels only, and the
    model is always called at its own size."""
    sizes = []

    def fake_fill(x, m):
        sizes.append(tuple(x.shape[-2:]))
        return m * 0.25 + (1 - m) * x

    for h, w in [(30, 20), (200, 300), (389, 517)]:
        x = torch.rand(3, h, w) * 2 - 1
        hole = np.zeros((h, w), bool)
        hole[h // 4 : h // 4 + 8, w // 4 : w // 4 + 8] = True
        if h > 100:
            hole[h - 100 : h - 5, 5:120] = True  # side 115 > 32: coarse + refine
        out = fill_native(x, hole, fake_fill, 32)
        keep = torch.from_numpy(~hole)
        assert torch.equal(out[:, keep], x[:, keep])
        inner = hole.copy()
        inner[1:-1, 1:-1] &= hole[:-2, 1:-1] & hole[2:, 1:-1] & hole[1:-1, :-2] & hole[1:-1, 2:]
        assert torch.allclose(out[:, torch.from_numpy(hole)].mean(), torch.tensor(0.25), atol=0.1)
    assert set(sizes) == {(32, 32)}
    assert len(sizes) > 3  # refine cells ran


def test_hole_regions_merge_close_holes_and_pad_reflects():
    m = np.zeros((100, 100), bool)
    m[10:14, 10:14] = True
    m[10:14, 18:22] = True  # 4 px apart: merged
    m[80:84, 80:84] = True  # far: its own region
    regions = hole_regions(m)
    assert sorted(r.box for r in regions) == [(10, 10, 14, 22), (80, 80, 84, 84)]
    x = torch.arange(6.0).view(1, 1, 2, 3)
    p = pad_to(x, 8)
    assert p.shape == (1, 1, 8, 8) and torch.equal(p[..., :2, :3], x)


def test_cli_fills_a_folder_of_image_mask_pairs(run64, tmp_path, capsys):
    from genfill.cli import main

    src = tmp_path / "photos"
    (src / "trip").mkdir(parents=True)
    cases = {"photo": (_photo(389, 517, 3), "RGB"), "trip/grey": (_photo(300, 300, 1)[:, :, 0], "L")}
    rgba = np.concatenate([_photo(120, 90, 3), np.full((120, 90, 1), 255, np.uint8)], 2)
    cases["logo"] = (rgba, "RGBA")
    holes = {}
    for stem, (a, mode) in cases.items():
        Image.fromarray(a, mode).save(src / f"{stem}.png")
        hole = np.zeros(a.shape[:2], bool)
        hole[30:70, 20:60] = True
        hole[a.shape[0] // 2 :, a.shape[1] // 2 : a.shape[1] // 2 + 3] = True
        holes[stem] = hole
        Image.fromarray(hole).save(src / f"{stem}_mask.png")
    assert main(["fill", str(src), "-c", str(run64), "--device", "cpu", "-o", str(tmp_path / "out"), "--quiet"]) == 0
    assert capsys.readouterr().out.count(" -> ") == 3
    for stem, (a, mode) in cases.items():
        out = Image.open(tmp_path / "out" / f"{stem}.png")
        assert out.mode == mode and out.size == (a.shape[1], a.shape[0])
        o = np.asarray(out)
        assert (o[~holes[stem]] == a[~holes[stem]]).all()
        assert (o[holes[stem]] != a[holes[stem]]).any()
    assert not list((tmp_path / "out").rglob("*_mask*"))


def test_eval_scores_every_image_of_a_folder(run64, tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)  # the folder's data cache goes to ./data/cache
    from genfill.cli import main

    (tmp_path / "mine" / "sub").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(_photo(90 + 10 * i, 120, 3, seed=i)).save(tmp_path / "mine" / ("sub" if i else "") / f"{i}.png")
    out = tmp_path / "ev"
    assert main(["eval", "-c", str(run64), "-c", "telea", "--data", str(tmp_path / "mine"), "--masks", "square",
                 "-n", "10", "--no-lpips", "--device", "cpu", "-o", str(out), "--quiet"]) == 0
    doc = json.loads((out / "eval.json").read_text())
    assert doc["protocol"]["split"] == "all" and doc["protocol"]["n"] == 3
    assert all(e["images"] == 3 for e in doc["methods"].values())


def test_refine_never_trusts_other_regions_unfilled_pixels():
    """A region refined while another is still unfilled: the other's pixels are hole in every window the
    model sees (their original values never reach it)."""
    seen_known = []

    def fake_fill(x, m):
        seen_known.append(((1 - m) * x).max().item())
        return m * 0.0 + (1 - m) * x

    h, w = 300, 300
    x = torch.full((1, h, w), -1.0)
    hole = np.zeros((h, w), bool)
    hole[20:120, 20:120] = True  # side 100 > 32: coarse + refine
    hole[250:254, 230:234] = True  # two small regions 8 px apart: not merged, but each inside the
    hole[250:254, 242:246] = True  # other's window
    x[:, torch.from_numpy(hole)] = 1.0  # "secret" content under the holes
    from genfill.inpaint import hole_regions

    assert len(hole_regions(hole)) == 3
    fill_native(x, hole, fake_fill, 32)
    assert max(seen_known) < 0.5


@pytest.mark.parametrize("kind", ["all-black", "alpha-only"])
def test_mask_without_a_hole_is_an_error(tiny_run_dir, tmp_path, capsys, kind):
    face = save_face(tmp_path / "face.png", 40)
    if kind == "all-black":
        Image.new("L", (40, 40), 0).save(tmp_path / "m.png")
    else:
        a = np.zeros((40, 40, 4), np.uint8)
        a[10:30, 10:30, 3] = 255  # the hole drawn only in alpha
        Image.fromarray(a, "RGBA").save(tmp_path / "m.png")
    err = one_line_error(capsys, ["fill", str(face), "-c", str(tiny_run_dir), "--mask", str(tmp_path / "m.png"),
                                  "-o", str(tmp_path / "o.png")], "no hole")
    assert "no hole" in err
