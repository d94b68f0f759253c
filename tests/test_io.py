"""The writer's guards (issue 26): temp files a killed writer left are swept at the target's next write, a
full disk mid-checkpoint is one line, long names work, an export replaces only its own earlier export, and
a run folder that is not ours is never trained into."""

from __future__ import annotations

import errno
import os
import re
import resource
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from genfill.cli import main
from genfill.errors import GenfillError
from genfill.io import save_image
from genfill.train import train
from tests.conftest import one_line_error, save_face

SRC = Path(__file__).resolve().parents[1] / "src"


def _env(**extra: str) -> dict:
    return {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", **extra}


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_sigkilled_write_leaves_a_temp_that_the_next_write_sweeps(tmp_path):
    target = tmp_path / "out.png"
    marker = tmp_path / "paused"
    code = f"from genfill.io import atomic_write_bytes; atomic_write_bytes({str(target)!r}, b'new' * 1000)"
    killpoint = Path(__file__).resolve().parent / "killpoint.py"  # pauses the write where the kill lands
    proc = subprocess.Popen([sys.executable, str(killpoint), "-c", code], env=_env(
        KILLPOINT="write:out.png:60", KILLPOINT_MARKER=str(marker)))
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), "the writer never reached its pause"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].startswith(".out.png."), left  # what the probe saw
    (tmp_path / ".model.safetensors.tmp").write_bytes(b"older version's fixed temp")
    from genfill.io import atomic_write_bytes

    atomic_write_bytes(target, b"ok")
    atomic_write_bytes(tmp_path / "model.safetensors", b"ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "out.png", "paused"]


def test_the_sweep_keeps_live_writers_and_what_is_not_a_temp(tmp_path):
    from genfill.io import atomic_write_bytes

    live = tmp_path / f".out.png.{os.getppid()}.abcdefgh.tmp"  # a live process's temp (our parent's pid)
    dead = tmp_path / f".out.png.{_dead_pid()}.abcdefgh.tmp"
    other = tmp_path / f".b.png.{_dead_pid()}.abcdefgh.tmp"  # another target's, its writer gone too
    users = [tmp_path / ".notes.tmp", tmp_path / "out.png.12.abcdefgh.tmp", tmp_path / ".x.y.abcdefgh.tmp"]
    for p in (live, dead, other, *users):
        p.write_bytes(b"t")
    atomic_write_bytes(tmp_path / "out.png", b"ok")
    assert live.exists() and not dead.exists() and not other.exists()
    assert all(p.exists() for p in users)  # not genfill's temp-file pattern: the user's own files


def test_a_full_disk_during_the_checkpoint_write_is_one_line(tmp_path, make_cfg):
    """RLIMIT_FSIZE makes every write past the limit fail as a full disk does (EFBIG instead of ENOSPC): the
    checkpoint's torch.save fails inside; the user sees one line, exit 2, and no temp file."""
    from genfill.config import to_dict
    from genfill.data.cache import load_cache

    cfg = make_cfg()
    load_cache(cfg.data, verbose=False)  # the cache exists before the limit applies
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump(to_dict(cfg)))
    limit = 60_000  # over config.yaml, metrics and samples; under the checkpoint (weights + Adam state)

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "genfill.cli", "train", "-c", str(cfg_file), "--quiet"],
                          env=_env(), capture_output=True, text=True, preexec_fn=small_disk, timeout=300)
    err = proc.stderr.strip()
    assert proc.returncode == 2, err
    assert err.count("\n") == 0 and "Traceback" not in err and err.startswith("genfill: error: cannot write"), err
    assert ".pt" in err, err  # it was the checkpoint
    run = Path(cfg.run_dir)
    assert [str(p) for p in run.rglob("*.tmp")] == []
    assert not (run / "checkpoints" / "last.pt").exists()


def test_an_input_with_a_244_byte_name_is_written_under_its_name(tmp_path, capsys):
    name = "n" * 240 + ".png"  # 244 bytes: legal; its temp file's name must stay legal too
    (tmp_path / "in").mkdir()
    a = np.full((16, 16, 3), 90, np.uint8)
    Image.fromarray(a).save(tmp_path / "in" / name)
    m = np.zeros((16, 16), np.uint8)
    m[4:8, 4:8] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    assert main(["fill", str(tmp_path / "in"), "--mask", str(tmp_path / "m.png"), "--method", "telea",
                 "-o", str(tmp_path / "out"), "--quiet"]) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == [name]


def test_reexport_of_the_same_run_replaces_its_own_onnx_and_lists_only_its_files(tmp_path, make_cfg):
    from genfill.export import export_model
    from genfill.train import train

    cfg = make_cfg()
    train(cfg, verbose=False)
    out = tmp_path / "exp"
    export_model(cfg.run_dir, out)
    (out / "model.onnx").write_bytes(b"an earlier --onnx export of this run")
    res = export_model(cfg.run_dir, out)
    assert not (out / "model.onnx").exists()  # never left next to weights it was not traced from
    assert set(res.sizes) == {"model.safetensors", "config.json", "source .pt"}
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]


def test_resume_rewrites_its_own_config_it_read(tmp_path, make_cfg, capsys):
    """The input guard does not stop a resumed run from rewriting the config.yaml it was started from: the
    run's folder is its own."""
    from genfill.config import to_dict
    from genfill.train import train

    cfg = make_cfg()
    train(cfg, verbose=False)
    own = Path(cfg.run_dir) / "config.yaml"
    assert main(["train", "-c", str(own), "--resume", "--quiet", "--set", "train.max_steps=3"]) == 0
    assert yaml.safe_load(own.read_text())["train"]["max_steps"] == 3


def test_a_new_run_refuses_a_folder_with_anything_of_a_run(tmp_path, make_cfg):
    from genfill.runs import check_new_run

    run = tmp_path / "r"
    check_new_run(run, resume=False)  # absent: fine
    (run / "samples").mkdir(parents=True)
    (run / "samples" / ".x.png.1.abcdefgh.tmp").write_bytes(b"")
    check_new_run(run, resume=False)  # only a killed writer's temp: fine
    (run / "config.yaml").write_text("name: r\n")
    with pytest.raises(GenfillError, match="config.yaml of another run"):
        check_new_run(run, resume=False)


# ---- issue 12's probes of the one writer, the disk and the checkpoint reader -------------------------


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
    for path in (SRC / "genfill").rglob("*.py"):
        if path.name == "io.py":
            continue
        for line in path.read_text().splitlines():
            if pattern.search(line) and not any(path.name == f and s in line for f, s in allowed):
                bad.append(f"{path.name}: {line.strip()}")
    assert not bad, bad


def test_output_paths_that_cannot_be_written(tiny_run_dir, tmp_path, capsys):
    c = str(tiny_run_dir)
    (tmp_path / "adir").mkdir()
    one_line_error(capsys, ["sample", "-c", c, "-n", "4", "-o", str(tmp_path / "adir")], "unsupported suffix|directory")
    (tmp_path / "adir.png").mkdir()
    one_line_error(capsys, ["sample", "-c", c, "-n", "4", "-o", str(tmp_path / "adir.png")], "directory")
    (tmp_path / "file").write_text("x")
    one_line_error(capsys, ["sample", "-c", c, "-n", "4", "-o", str(tmp_path / "file" / "s.png")], "in the way")
    face = save_face(tmp_path / "face.png")
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


@pytest.mark.parametrize("key", ["image_size", "model_config", "kind", "model", "channels"])
def test_checkpoint_missing_a_key_is_a_genfill_error(tiny_run_dir, tmp_path, key):
    from genfill.models import load_model

    ckpt = torch.load(tiny_run_dir / "checkpoints" / "last.pt", weights_only=True)
    del ckpt[key]
    torch.save(ckpt, tmp_path / "hand.pt")
    with pytest.raises(GenfillError, match="not a .*genfill checkpoint"):
        load_model(tmp_path / "hand.pt")
