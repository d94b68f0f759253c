"""Would a bfloat16 Inception make FID per kind cheap on a CPU? Speed (ms per image, 2 threads, batch 64) of the
FID network three ways, and how far its features and an FID move: onnxruntime float32 (genfill's CPU default),
TorchScript float32 (channels-last), TorchScript under CPU autocast to bfloat16.

    PYTHONPATH=src python benchmarks/inception_bf16.py

256 built-in faces (seed 3) against the same faces with a flat 32 px square in the middle; each backend runs
on a warm-up batch first. Prints one line per backend; results in benchmarks/results/perception_eval.md."""
from __future__ import annotations

import time

import torch

from genfill.data.faces64 import draw_faces
from genfill.metrics import fid as F


def main() -> None:
    torch.set_num_threads(2)
    imgs = draw_faces(256, seed=3).permute(0, 3, 1, 2).float() / 127.5 - 1
    fills = imgs.clone()
    fills[:, :, 16:48, 16:48] = fills[:, :, 16:48, 16:48].mean((2, 3), keepdim=True)
    net = F._load_inception("cpu")

    def torch32(x):
        with torch.inference_mode():
            return net(x.contiguous(memory_format=torch.channels_last))

    def bf16(x):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return net(x.contiguous(memory_format=torch.channels_last)).float()

    def feats(fn, x):
        return torch.cat([fn(F.preprocess(c)).reshape(len(c), -1).double() for c in x.split(64)])

    out = {}
    for name, fn in (("onnxruntime fp32", F._ort_features(2)), ("torch fp32", torch32), ("torch bf16", bf16)):
        feats(fn, imgs[:64])
        t0 = time.time()
        out[name] = (feats(fn, imgs), feats(fn, fills))
        ms = (time.time() - t0) / (2 * len(imgs)) * 1000
        a, b = out[name]
        ref = out["onnxruntime fp32"][0]
        print(f"{name:18s} {ms:6.1f} ms/image  FID {F.fid_from_features(a, b):.3f}  "
              f"max |feature - onnxruntime's| {float((a - ref).abs().max()):.2g} (largest {float(ref.abs().max()):.2g})",
              flush=True)


if __name__ == "__main__":
    main()
