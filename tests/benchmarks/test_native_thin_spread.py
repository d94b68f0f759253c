"""benchmarks/native_thin_spread.py: its per-part calibration scores on fills with a known answer."""

from __future__ import annotations

import numpy as np

from tests.benchmarks import benchmark_module


def test_part_scores_count_the_truth_inside_the_5_95_interval_of_the_part_only():
    nts = benchmark_module("native_thin_spread")
    h, w, k = 4, 6, 8
    truth = np.full((h, w, 3), 0.5, np.float32)
    truth[:, 3:] = 0.9  # right half: outside every fill's range
    arrays = 0.5 + np.linspace(-0.1, 0.1, k, dtype=np.float32)[:, None, None, None] * np.ones((k, h, w, 3), np.float32)
    fill = np.full((h, w, 3), 0.5, np.float32)
    part = np.zeros((h, w), bool)
    part[1:3] = True  # 12 pixels, 6 covered
    sc = nts.part_scores(arrays, fill, truth, part)
    assert sc["total"] == 36 and sc["covered"] == 18 and sc["pixels"] == 12
    assert abs(sc["spread_sum"] / 12 - arrays[:, 0, 0, 0].std(ddof=1)) < 1e-6
    assert np.isnan(float(sc["moments"].r()[0]))  # the same spread everywhere: r undefined
