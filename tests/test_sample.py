"""genfill.sample (`genfill sample` and `genfill interpolate`): counts, grid rows and morph rows are checked up
front, each bad one a single line."""

from __future__ import annotations

from pathlib import Path

from genfill.cli import main
from tests.conftest import one_line_error, save_face


def test_sample_count_and_nrow_are_bounded_up_front(tiny_run_dir, tmp_path, capsys):
    import time

    c, out = str(tiny_run_dir), str(tmp_path / "s.png")
    t0 = time.time()
    one_line_error(capsys, ["sample", "-c", c, "-n", "100000", "-o", out], "too many")
    assert time.time() - t0 < 30 and not Path(out).exists()
    one_line_error(capsys, ["sample", "-c", c, "-n", "4", "--nrow", "-2", "-o", out], "--nrow")
    one_line_error(capsys, ["sample", "-c", c, "-n", "4", "--nrow", "0", "-o", out], "--nrow")


def test_interpolate_rows_are_honest(tiny_run_dir, tmp_path, capsys):
    a, b = save_face(tmp_path / "a.png"), save_face(tmp_path / "b.png", 48)
    one_line_error(capsys, ["interpolate", "-c", str(tiny_run_dir), str(a), str(b), "--rows", "9", "-o",
                            str(tmp_path / "m.png")], "--rows 9 does not match")
    assert main(["interpolate", "-c", str(tiny_run_dir), str(a), str(b), "-o", str(tmp_path / "m.png")]) == 0
    assert capsys.readouterr().out.startswith("1 morph rows")
