"""The writer's guards (issue 26): temp files a killed writer left are swept at the target's next write, a
full disk mid-checkpoint is one line, long names work, an export replaces only its own earlier export, and
a run folder that is not ours is never trained into."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from genfill.cli import main
from genfill.errors import GenfillError

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
