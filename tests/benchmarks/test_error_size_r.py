"""benchmarks/error_size_r.py: r of a guess against the error, over the thin parts of the hole only."""

from __future__ import annotations

import torch

from tests.benchmarks import benchmark_module


def test_thin_part_r_counts_only_thin_hole_values_and_is_one_for_the_error_itself():
    thin_part_r = benchmark_module("error_size_r").thin_part_r
    g = torch.Generator().manual_seed(0)
    err = torch.randn(2, 3, 32, 32, generator=g)
    m = torch.zeros(2, 1, 32, 32)
    m[:, :, 10, 2:30] = 1  # a 1 px stroke: all thin
    m[:, :, 16:28, 4:16] = 1  # a 12 px square: its inside is wide
    r, count = thin_part_r(err.abs(), err, m)
    assert abs(r - 1) < 1e-9
    assert 3 * 2 * 28 <= count < 3 * 2 * (28 + 12 * 12)  # the stroke and the square's rim, not its inside
    wide_only = torch.zeros_like(err)
    wide_only[:, :, 20:24, 8:12] = 9.0  # a guess that differs only deep in the square is never read
    assert abs(thin_part_r(err.abs() + wide_only, err, m)[0] - 1) < 1e-9
    assert abs(thin_part_r(-err.abs(), err, m)[0] + 1) < 1e-9
