"""Invariants that any correct evaluator's records satisfy, checked on the records `evaluate_methods` writes
(not against `score()`, the function that makes them): a fill that keeps every known pixel exactly has
whole-image error = hole error x hole ratio; a partial hole makes the hole PSNR differ from the whole one."""

from __future__ import annotations

import math

import pytest
import torch

from genfill.evaljob import parse_masks
from genfill.evaluate import evaluate_methods, score
from genfill.peers import PEERS


def _records(tiny_data, method):
    kinds = parse_masks("square,thin", tiny_data.size)
    return evaluate_methods({"m": method}, tiny_data, kinds, n=4, seed=3)["m"].records


def _shift(x, m):
    """A composited fill that is off by a known amount in the hole: pred = x + 0.2 (clamped)."""
    return m * (x + 0.2).clamp(-1, 1) + (1 - m) * x


@pytest.mark.parametrize("method", ["mean", "shift"])
def test_whole_error_is_hole_error_times_hole_ratio(tiny_data, method):
    fn = PEERS["mean"] if method == "mean" else _shift
    recs = _records(tiny_data, fn)
    assert len(recs) == 8
    for r in recs:
        assert 0 < r["hole_ratio"] < 1
        assert r["mse"] == pytest.approx(r["mse_hole"] * r["hole_ratio"], rel=1e-4), r
        assert r["l1"] == pytest.approx(r["l1_hole"] * r["hole_ratio"], rel=1e-4), r
        assert r["mse_hole"] > r["mse"] > 0
        # PSNR from the MSEs: the hole PSNR is lower by exactly 10 log10(1 / ratio)
        assert r["psnr"] - r["psnr_hole"] == pytest.approx(-10 * math.log10(r["hole_ratio"]), abs=1e-3)
        assert r["psnr_hole"] < r["psnr"]
        assert r["ssim"] > r["ssim_hole"]
        assert r["edge"] != pytest.approx(r["edge_hole"], rel=1e-3)


def test_shift_fill_has_the_hole_error_it_was_given(tiny_data):
    """pred = x + 0.2 in [-1, 1] is 0.1 on the [0, 1] scale: hole L1 = 0.1 and hole MSE = 0.01 where
    nothing clamps."""
    recs = _records(tiny_data, lambda x, m: m * (x + 0.2) + (1 - m) * x)
    for r in recs:
        assert r["l1_hole"] == pytest.approx(0.1, rel=1e-4)
        assert r["mse_hole"] == pytest.approx(0.01, rel=1e-3)
        assert r["psnr_hole"] == pytest.approx(20.0, abs=1e-2)


def test_perfect_fill_scores_perfect_everywhere(tiny_data):
    for r in _records(tiny_data, lambda x, m: x):
        assert r["mse"] == 0 and r["mse_hole"] == 0 and r["l1_hole"] == 0
        assert r["ssim_hole"] == pytest.approx(1.0) and r["edge_hole"] == pytest.approx(0.0, abs=1e-5)


def test_hole_metrics_ignore_the_known_pixels():
    """Changing known pixels of the fill (not a composite any more) changes whole metrics only."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    m = torch.zeros(2, 1, 32, 32)
    m[..., 8:20, 8:20] = 1
    a = m * (x * 0.5) + (1 - m) * x
    b = a + (1 - m) * 0.3
    sa, sb = score(a, x, m), score(b, x, m)
    for name in ("l1", "mse", "psnr"):
        assert torch.allclose(sa[f"{name}_hole"], sb[f"{name}_hole"]), name
        assert not torch.allclose(sa[name], sb[name]), name
