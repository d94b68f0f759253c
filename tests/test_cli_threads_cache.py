"""--threads / GENFILL_THREADS on every command and the default thread count; the per-user cache and
`genfill cache [--clear]`; did-you-mean for configs, peers and mask kinds; `genfill configs`."""

from __future__ import annotations

import os

import pytest
import torch

from genfill import device, usercache
from genfill.cli import build_parser, main
from genfill.config import DataConfig


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_every_command_takes_threads():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, sp in commands.items():
        assert any("--threads" in a.option_strings for a in sp._actions), name


@pytest.mark.parametrize("where", ["before", "after"])
def test_threads_flag_sets_torch_threads(where, keep_threads, monkeypatch, capsys):
    monkeypatch.delenv("GENFILL_THREADS", raising=False)
    torch.set_num_threads(2)
    argv = ["--threads", "1", "eval", "-c", "telia"] if where == "before" else ["eval", "-c", "telia", "--threads", "1"]
    assert main(argv) == 2  # an unknown peer, after the threads were set
    assert torch.get_num_threads() == 1
    assert "did you mean telea?" in capsys.readouterr().err


def test_env_threads_and_bad_values(keep_threads, monkeypatch, capsys):
    monkeypatch.setenv("GENFILL_THREADS", "1")
    torch.set_num_threads(2)
    assert device.set_threads(None) == 1
    assert device.set_threads(2) == 2  # the flag wins over the variable
    monkeypatch.setenv("GENFILL_THREADS", "many")
    assert main(["eval", "-c", "telea", "-n", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "GENFILL_THREADS: must be a whole number" in err
    assert main(["eval", "-c", "telea", "--threads", "0"]) == 2


def test_default_threads_leave_busy_cores_alone(monkeypatch):
    monkeypatch.setattr(device, "usable_cores", lambda: 8)
    monkeypatch.setattr(device, "runnable_now", lambda: 64)  # busy right now: the load average decides
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert device.default_threads() == 4  # idle: the cap
    monkeypatch.setattr(os, "getloadavg", lambda: (5.6, 0.0, 0.0))
    assert device.default_threads() == 2
    monkeypatch.setattr(os, "getloadavg", lambda: (30.0, 0.0, 0.0))
    assert device.default_threads() == 1
    # A finished job still weighs on the 1-minute average; what runs now decides then (make test, then make demo).
    monkeypatch.setattr(device, "runnable_now", lambda: 1)
    assert device.default_threads() == 4  # 8 cores, 1 thread busy: the cap
    monkeypatch.setattr(device, "runnable_now", lambda: 6)
    assert device.default_threads() == 2
    monkeypatch.setattr(device, "runnable_now", lambda: None)  # no /proc: the load average alone
    assert device.default_threads() == 1
    monkeypatch.delenv("GENFILL_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert device.thread_count(None) is None  # torch's own business


def test_cache_root_follows_the_variable_then_the_platform(monkeypatch, tmp_path):
    monkeypatch.setenv("GENFILL_CACHE", str(tmp_path / "c"))
    assert usercache.cache_root() == tmp_path / "c" and DataConfig().cache_root == tmp_path / "c"
    assert DataConfig(cache_dir="mine").cache_root.as_posix() == "mine"  # a config's own wins
    monkeypatch.delenv("GENFILL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if os.name == "posix" and os.uname().sysname == "Linux":
        assert usercache.cache_root() == tmp_path / "xdg" / "genfill"
        monkeypatch.delenv("XDG_CACHE_HOME")
        assert usercache.cache_root() == usercache.Path.home() / ".cache" / "genfill"


def test_cache_command_lists_and_clears_only_its_own_folder(monkeypatch, tmp_path, capsys):
    root = tmp_path / "c"
    monkeypatch.setenv("GENFILL_CACHE", str(root))
    assert main(["cache"]) == 0 and "empty" in capsys.readouterr().out
    usercache.mark(root)
    (root / "faces64-32-3-60-0").mkdir()
    (root / "faces64-32-3-60-0" / "images.npy").write_bytes(b"x" * 5000)
    (root / "masks").mkdir()
    (root / "masks" / "thin.pt").write_bytes(b"y" * 300)
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert str(root) in out and "5.3 kB" in out and "faces64-32-3-60-0/" in out and "masks/" in out
    assert out.index("faces64") < out.index("masks")  # largest first
    assert main(["cache", "--clear"]) == 0
    assert "2 item(s), 5.3 kB" in capsys.readouterr().out
    assert sorted(p.name for p in root.iterdir()) == [usercache.TAG]

    # a folder genfill did not make (no tag: it held things before) is never emptied
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("keep me")
    usercache.mark(theirs)  # not tagged: it was not empty
    monkeypatch.setenv("GENFILL_CACHE", str(theirs))
    assert main(["cache", "--clear"]) == 2
    assert "refusing to clear" in capsys.readouterr().err and (theirs / "thesis.tex").read_text() == "keep me"


def test_did_you_mean_for_configs_and_mask_kinds(capsys):
    assert main(["train", "-c", "unet-face64"]) == 2
    assert "did you mean unet-faces64?" in capsys.readouterr().err
    assert main(["train", "-c", "unet-faces64", "--set", "masks.kind=thik", "--dry-run"]) == 2
    assert "did you mean thick?" in capsys.readouterr().err
    import genfill
    from genfill.errors import GenfillError

    with pytest.raises(GenfillError, match="did you mean telea"):
        genfill.load("telia")


def test_configs_lists_every_shipped_config_with_a_line(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "mine.yaml").write_text("# My own faces run: a test.\nname: mine\n")
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "unet-faces64" in lines and "quick" in lines and "ssl-byol-faces64" in lines
    assert lines["mine"].split(None, 1)[1] == "My own faces run: a test"  # ./configs/ joins, first sentence only
    assert all(len(line) <= 130 for line in lines.values())


def test_runnable_now_reads_this_machine():
    """On Linux the running count of /proc/loadavg is parsed (a format change would silently give None)."""
    import pathlib

    got = device.runnable_now()
    if pathlib.Path("/proc/loadavg").exists():
        assert isinstance(got, int) and got >= 0
    else:
        assert got is None
