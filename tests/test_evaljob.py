"""genfill.evaljob (the `genfill eval` command's job): bad arguments are one line before anything is loaded."""

from __future__ import annotations

from tests.conftest import one_line_error


def test_eval_n_zero_says_n(tmp_path, capsys):
    one_line_error(capsys, ["eval", "-c", "mean", "-n", "0", "-o", str(tmp_path / "e")], "-n must be at least 1")
