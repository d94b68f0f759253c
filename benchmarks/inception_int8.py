"""Would an int8 Inception make cold FID per kind fit 5 minutes on 2 CPU cores? onnxruntime's static
quantisation of genfill's FID network (`genfill.metrics.fid`'s ONNX export), three ways, against float32: speed
(ms per image, 2 threads, batch 64) and how far the features and an FID move.

    PYTHONPATH=src python benchmarks/inception_int8.py

Calibration: built-in faces (seed 11) that are not the probe's: 64 for min-max (QDQ and QOperator formats), 48 for
the 99.99th-percentile histogram (it holds every activation: 256 images ran out of 24 GiB). Per-channel int8
weights, uint8 activations. The probe is inception_bf16.py's: 256 built-in faces (seed 3) against the same faces
with a flat 32 px square. Prints one line per network; results in benchmarks/results/perception_eval.md."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from genfill.data.faces64 import draw_faces
from genfill.metrics import fid as F


def faces(n: int, seed: int) -> torch.Tensor:
    return draw_faces(n, seed=seed).permute(0, 3, 1, 2).float() / 127.5 - 1


def main() -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, imgs: torch.Tensor, batch: int) -> None:
            self.it = iter([{"x": F.preprocess(c).numpy()} for c in imgs.split(batch)])

        def get_next(self):
            return next(self.it, None)

    torch.set_num_threads(2)
    F._ort_features(2)  # exports the float32 network to the cache once
    src = str(F.onnx_path())
    tmp = Path(tempfile.mkdtemp())
    pre = str(tmp / "pre.onnx")
    quant_pre_process(src, pre, skip_symbolic_shape=True)
    nets = {"float32 (genfill's)": src}
    for name, fmt, method, n, extra in (
            ("int8 QDQ, min-max", QuantFormat.QDQ, CalibrationMethod.MinMax, 64, {}),
            ("int8 QOperator, min-max", QuantFormat.QOperator, CalibrationMethod.MinMax, 64, {}),
            ("int8 QOperator, 99.99th pct", QuantFormat.QOperator, CalibrationMethod.Percentile, 48,
             {"CalibPercentile": 99.99})):
        out = str(tmp / f"{len(nets)}.onnx")
        quantize_static(pre, out, Reader(faces(n, 11), 16), quant_format=fmt, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=method,
                        extra_options=extra)
        nets[name] = out
    imgs = faces(256, 3)
    fills = imgs.clone()
    fills[:, :, 16:48, 16:48] = fills[:, :, 16:48, 16:48].mean((2, 3), keepdim=True)
    ref = None
    for name, path in nets.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = 2, 1
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])

        def feats(x):
            return torch.cat([torch.from_numpy(sess.run(None, {"x": F.preprocess(c).numpy()})[0]).reshape(len(c), -1)
                              .double() for c in x.split(64)])
        feats(imgs[:64])  # warm-up
        t0 = time.time()
        a, b = feats(imgs), feats(fills)
        ms = (time.time() - t0) / (2 * len(imgs)) * 1000
        ref = a if ref is None else ref
        rel = float(((a - ref) ** 2).mean().sqrt() / (ref ** 2).mean().sqrt())
        print(f"{name:28s} {ms:6.1f} ms/image  FID {F.fid_from_features(a, b):.3f}  RMS feature change {rel:.1%} "
              "of the features' RMS", flush=True)


if __name__ == "__main__":
    main()
