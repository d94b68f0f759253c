"""Issue 12: every probe a new user tried, each answered by one clear line (GenfillError / exit code 2), never a
traceback, a wrong result or a clobbered file. Grouped as the issue numbers them (0 is in test_train.py)."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from genfill.cli import main
from genfill.config import to_dict
from genfill.loadconfig import build_config
from genfill.errors import GenfillError
from genfill.imageread import read_image
from genfill.io import load_checkpoint, save_image
from genfill.train import train

SRC = Path(__file__).resolve().parents[1] / "src" / "genfill"


def one_line_error(capsys, argv, pattern):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert err.startswith("genfill: error: ") and re.search(pattern, err), err
    return err


@pytest.fixture
def tiny_run(make_cfg, tmp_path):
    cfg = make_cfg()
    train(cfg, verbose=False)
    return cfg.run_dir


def _png_header(w: int, h: int) -> bytes:
    """A PNG that declares w x h pixels and holds none: a decompression bomb's header (69 bytes)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def _face(path, size=40):
    from genfill.data.faces64 import draw_faces

    Image.fromarray(draw_faces(1, seed=9)[0].numpy()).resize((size, size)).save(path)
    return path


# ------------------------------------------------------------------ 1. the one output writer


def test_writer_refuses_fifos_symlinks_and_directories(tmp_path):
    x = torch.zeros(3, 8, 8)
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    with pytest.raises(GenfillError, match="not a regular file"):
        save_image(x, fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still a FIFO
    real = tmp_path / "real.png"
    real.write_bytes(b"keep")
    link = tmp_path / "link.png"
    link.symlink_to(real)
    with pytest.raises(GenfillError, match="symlink"):
        save_image(x, link)
    assert link.is_symlink() and real.read_bytes() == b"keep"
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(GenfillError, match="directory"):
        save_image(x, tmp_path / "dir.png")
    assert not list(tmp_path.glob(".*.tmp"))


def test_writer_checks_the_suffix_and_writes_that_format(tmp_path):
    x = torch.zeros(3, 8, 8)
    for bad in ("a.gif", "a.txt", "noext"):
        with pytest.raises(GenfillError, match="unsupported suffix"):
            save_image(x, tmp_path / bad)
        assert not (tmp_path / bad).exists()
    save_image(x, tmp_path / "a.tiff")
    save_image(x, tmp_path / "a.jpg")
    assert Image.open(tmp_path / "a.tiff").format == "TIFF" and Image.open(tmp_path / "a.jpg").format == "JPEG"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_writer_honours_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        save_image(torch.zeros(3, 8, 8), tmp_path / "a.png")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.png").st_mode) == 0o666 & ~umask


def test_full_disk_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    import genfill.io as gio

    target = tmp_path / "ckpt.pt"
    gio.atomic_torch_save({"a": 1}, target)
    before = target.read_bytes()

    def full(obj, fh):
        fh.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gio.torch, "save", full)
    with pytest.raises(GenfillError, match="disk is full"):
        gio.atomic_torch_save({"a": 2}, target)
    assert target.read_bytes() == before and not list(tmp_path.glob(".*.tmp"))


def test_full_disk_during_a_checkpoint_is_one_clear_error(make_cfg, monkeypatch):
    import genfill.io as gio

    cfg = make_cfg(train={"epochs": 1, "max_steps": 2})
    train(cfg, verbose=False)
    last = cfg.run_dir / "checkpoints" / "last.pt"
    before = last.read_bytes()

    def full(obj, fh):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gio.torch, "save", full)
    with pytest.raises(GenfillError, match="disk is full"):
        train(make_cfg(train={"epochs": 1, "max_steps": 4}), resume=True, verbose=False)
    assert last.read_bytes() == before and not list(cfg.run_dir.rglob("*.tmp"))


def test_every_output_write_goes_through_the_writer():
    """Only io.py opens files for writing (metrics.jsonl's append-only log is the one named exception)."""
    pattern = re.compile(r"\.write_text\(|\.write_bytes\(|open\([^)]*[\"'][wax]b?\+?[\"']|np\.save\(|"
                         r"torch\.save\(|\.savefig\((?!buf)|\.save\((?!fh|buf)|shutil\.copy|\.mkdir\(")
    allowed = {("runs.py", 'open(log_path, "a")')}
    bad = []
    for path in SRC.rglob("*.py"):
        if path.name == "io.py":
            continue
        for line in path.read_text().splitlines():
            if pattern.search(line) and not any(path.name == f and s in line for f, s in allowed):
                bad.append(f"{path.name}: {line.strip()}")
    assert not bad, bad


# ------------------------------------------------------------------ 2. the one guarded reader


def test_decompression_bomb_is_a_clear_error(tmp_path, tiny_run, capsys):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(30000, 30000))
    assert len(bomb.read_bytes()) < 80
    with pytest.raises(GenfillError, match="over the limit"):
        read_image(bomb)
    one_line_error(capsys, ["fill", str(bomb), "-c", str(tiny_run), "--mask-kind", "square", "-o",
                            str(tmp_path / "o.png")], "limit")
    face = _face(tmp_path / "face.png", 40)
    one_line_error(capsys, ["fill", str(face), "-c", str(tiny_run), "--mask", str(bomb), "-o",
                            str(tmp_path / "o.png")], "limit")
    assert read_image(face, max_pixels=1600).size == (40, 40)  # the limit is a setting
    with pytest.raises(GenfillError, match="over the limit"):
        read_image(face, max_pixels=1599)


def test_sixteen_bit_png_reads_as_its_grey_not_white(tmp_path):
    a = np.full((10, 10), 128 * 257, dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    grey = np.asarray(read_image(tmp_path / "g16.png", 1))
    rgb = np.asarray(read_image(tmp_path / "g16.png", 3))
    assert (grey == 128).all() and (rgb == 128).all()


def test_folder_dataset_counts_and_skips_bombs_and_reads_16_bit(tmp_path):
    from genfill.config import DataConfig
    from genfill.data.datasets import load_source

    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(5):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(root / f"{i}.png")
    (root / "bomb.png").write_bytes(_png_header(30000, 30000))
    Image.fromarray(np.full((16, 16), 200 * 257, dtype=np.uint16)).save(root / "z16.png")
    src = load_source(DataConfig(name="folder", root=str(root), size=8, cache_dir=str(tmp_path / "c")))
    assert src.info["found"] == 7 and src.info["skipped"] == 1 and "bomb.png" in src.info["skipped_examples"][0]
    assert src.images[-1].min() == src.images[-1].max() == 200  # the 16-bit file, scaled, not clipped to 255


# ------------------------------------------------------------------ 3. training settings


@pytest.mark.parametrize("key,value", [
    ("batch_size", 0), ("batch_size", -4), ("lr", -1), ("lr", float("nan")), ("betas", [2, 3]), ("log_every", 0),
    ("val_images", 0), ("epochs", 0), ("max_steps", 0), ("weight_decay", -1), ("grad_clip", 0), ("seed", -1),
    ("time_budget_s", 0), ("kl_warmup_steps", -1), ("lr_d", -1),
])
def test_training_settings_are_range_checked_at_load(make_cfg, key, value, tmp_path, capsys):
    with pytest.raises(GenfillError, match=f"train.{key}"):
        make_cfg(train={key: value})
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(to_dict(make_cfg())))
    one_line_error(capsys, ["train", "-c", str(cfg), "--set", f"train.{key}={json.dumps(value).replace('NaN', '.nan')}",
                            "--quiet"], f"train.{key}")
    assert not (tmp_path / "runs").exists()  # no half-made run folder


@pytest.mark.parametrize("section,key,value", [("data", "size", 4), ("data", "channels", 2), ("data", "count", 0),
                                               ("data", "name", "cifar"), ("masks", "eval_seed", -1)])
def test_data_settings_are_range_checked(make_cfg, section, key, value):
    with pytest.raises(GenfillError, match=f"{section}.{key}"):
        make_cfg(**{section: {key: value}})


def test_resume_with_a_changed_model_or_data_shape_says_so(make_cfg):
    train(make_cfg(), verbose=False)
    with pytest.raises(GenfillError, match="model.latent_dim"):
        train(make_cfg(model={"kind": "vae", "channels": [8, 16], "latent_dim": 12}), resume=True, verbose=False)
    with pytest.raises(GenfillError, match="data.size"):
        train(make_cfg(data={"size": 16}), resume=True, verbose=False)


def test_resume_of_a_finished_run_trains_nothing(make_cfg):
    cfg = make_cfg(train={"epochs": 3, "max_steps": 3})
    train(cfg, verbose=False)
    last = cfg.run_dir / "checkpoints" / "last.pt"
    log = (cfg.run_dir / "metrics.jsonl").read_text()
    for _ in range(2):
        res = train(cfg, resume=True, verbose=False)
        assert res.step == 3 and not res.last_val
    assert load_checkpoint(last)["step"] == 3 and (cfg.run_dir / "metrics.jsonl").read_text() == log


def test_nan_on_the_first_step_says_no_checkpoint_exists(make_cfg, nan_vae):
    with pytest.raises(GenfillError, match="no checkpoint was written"):
        train(make_cfg(), verbose=False)


# ------------------------------------------------------------------ 4. paths and the disk


def test_output_paths_that_cannot_be_written(tiny_run, tmp_path, capsys):
    c = str(tiny_run)
    (tmp_path / "adir").mkdir()
    one_line_error(capsys, ["sample", "-c", c, "-n", "4", "-o", str(tmp_path / "adir")], "unsupported suffix|directory")
    (tmp_path / "adir.png").mkdir()
    one_line_error(capsys, ["sample", "-c", c, "-n", "4", "-o", str(tmp_path / "adir.png")], "directory")
    (tmp_path / "file").write_text("x")
    one_line_error(capsys, ["sample", "-c", c, "-n", "4", "-o", str(tmp_path / "file" / "s.png")], "in the way")
    face = _face(tmp_path / "face.png")
    sq = ["--mask-kind", "square"]
    one_line_error(capsys, ["fill", str(face), "-c", c, *sq, "-o", str(tmp_path / "file" / "o.png")], "in the way")
    one_line_error(capsys, ["fill", str(face), "-c", c, *sq, "-o", str(tmp_path / "o.gif")], "unsupported suffix")
    assert not (tmp_path / "o.gif").exists()
    assert main(["fill", str(face), "-c", c, *sq, "-o", str(tmp_path / "o.tiff")]) == 0
    assert (tmp_path / "o.tiff").is_file() and Image.open(tmp_path / "o.tiff").format == "TIFF"


def test_read_only_out_dir_and_cache_dir(make_cfg, tmp_path, monkeypatch):
    real_mkdir = Path.mkdir

    def read_only(self, *a, **k):
        if "ro" in self.parts:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(GenfillError, match="cannot create folder .*read-only"):
        train(make_cfg(out_dir=str(tmp_path / "ro" / "runs")), verbose=False)
    with pytest.raises(GenfillError, match="cannot create folder .*read-only"):
        train(make_cfg(data={"cache_dir": str(tmp_path / "ro" / "cache")}), verbose=False)


def test_two_inputs_with_the_same_stem_never_overwrite_each_other(tiny_run, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _face(tmp_path / "a" / "x.png", 40)
    _face(tmp_path / "b" / "x.png", 48)
    one_line_error(capsys, ["fill", str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png"), "-c",
                            str(tiny_run), "--mask-kind", "square", "-o", str(tmp_path / "out")], "both be written")
    assert not (tmp_path / "out").exists()  # refused before anything was written


# ------------------------------------------------------------------ 5. run state


def test_torn_metrics_line_stale_temps_and_no_duplicate_rows(make_cfg):
    cfg = make_cfg(train={"epochs": 3, "max_steps": 3})
    train(cfg, verbose=False)
    run = cfg.run_dir
    with open(run / "metrics.jsonl", "a") as fh:  # rows logged after the checkpoint, then a kill mid-line
        fh.write(json.dumps({"step": 4, "epoch": 0, "split": "train", "loss": 1.0}) + "\n")
        fh.write('{"step": 5, "epoch": 0, "spl')
    stale = run / "checkpoints" / ".last.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    train(make_cfg(train={"epochs": 3, "max_steps": 8}), resume=True, verbose=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if r["split"] == "train"]
    assert steps == list(range(1, 9))
    assert not stale.exists() and (run / "curves.png").is_file()


def test_same_seed_same_weights_whether_or_not_the_cache_was_just_built(tmp_path, cache_root):
    from tests.conftest import tiny_raw

    def run(name):
        raw = tiny_raw(tmp_path / "runs", tmp_path / "fresh-cache", name=name)
        cfg = build_config(raw)
        train(cfg, verbose=False)
        return load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")["model"]

    built, cached = run("builds-the-cache"), run("cache-exists")
    for k in built:
        assert torch.equal(built[k], cached[k]), k


def test_resume_after_max_steps_mid_epoch_equals_a_straight_run(make_cfg):
    straight = make_cfg(name="straight", train={"epochs": 2, "max_steps": 9})
    train(straight, verbose=False)
    train(make_cfg(name="part", train={"epochs": 2, "max_steps": 4}), verbose=False)
    rest = make_cfg(name="part", train={"epochs": 2, "max_steps": 9})
    train(rest, resume=True, verbose=False)
    a = load_checkpoint(straight.run_dir / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(rest.run_dir / "checkpoints" / "last.pt")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ------------------------------------------------------------------ 6. bounds


def test_sample_count_and_nrow_are_bounded_up_front(tiny_run, tmp_path, capsys):
    import time

    c, out = str(tiny_run), str(tmp_path / "s.png")
    t0 = time.time()
    one_line_error(capsys, ["sample", "-c", c, "-n", "100000", "-o", out], "too many")
    assert time.time() - t0 < 30 and not Path(out).exists()
    one_line_error(capsys, ["sample", "-c", c, "-n", "4", "--nrow", "-2", "-o", out], "--nrow")
    one_line_error(capsys, ["sample", "-c", c, "-n", "4", "--nrow", "0", "-o", out], "--nrow")


def test_eval_n_zero_says_n(tmp_path, capsys):
    one_line_error(capsys, ["eval", "-c", "mean", "-n", "0", "-o", str(tmp_path / "e")], "-n must be at least 1")


def test_interpolate_rows_are_honest(tiny_run, tmp_path, capsys):
    a, b = _face(tmp_path / "a.png"), _face(tmp_path / "b.png", 48)
    one_line_error(capsys, ["interpolate", "-c", str(tiny_run), str(a), str(b), "--rows", "9", "-o",
                            str(tmp_path / "m.png")], "--rows 9 does not match")
    assert main(["interpolate", "-c", str(tiny_run), str(a), str(b), "-o", str(tmp_path / "m.png")]) == 0
    assert capsys.readouterr().out.startswith("1 morph rows")


def test_mistyped_preset_lists_the_presets(capsys):
    err = one_line_error(capsys, ["train", "-c", "vae-fces64"], "presets:")
    assert "vae-faces64" in err


@pytest.mark.parametrize("kind", ["all-black", "alpha-only"])
def test_mask_without_a_hole_is_an_error(tiny_run, tmp_path, capsys, kind):
    face = _face(tmp_path / "face.png", 40)
    if kind == "all-black":
        Image.new("L", (40, 40), 0).save(tmp_path / "m.png")
    else:
        a = np.zeros((40, 40, 4), np.uint8)
        a[10:30, 10:30, 3] = 255  # the hole drawn only in alpha
        Image.fromarray(a, "RGBA").save(tmp_path / "m.png")
    err = one_line_error(capsys, ["fill", str(face), "-c", str(tiny_run), "--mask", str(tmp_path / "m.png"),
                                  "-o", str(tmp_path / "o.png")], "no hole")
    assert "no hole" in err


@pytest.mark.parametrize("key", ["image_size", "model_config", "kind", "model", "channels"])
def test_checkpoint_missing_a_key_is_a_genfill_error(tiny_run, tmp_path, key):
    from genfill.models import load_model

    ckpt = torch.load(tiny_run / "checkpoints" / "last.pt", weights_only=True)
    del ckpt[key]
    torch.save(ckpt, tmp_path / "hand.pt")
    with pytest.raises(GenfillError, match="not a .*genfill checkpoint"):
        load_model(tmp_path / "hand.pt")
