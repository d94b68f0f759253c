"""Score fill methods, ours and classical, on the same test images under the same fixed holes.

Every method is a function ``fill(x, m) -> composited (N,C,H,W)``; every metric is computed on the composited
output against the original, over the whole image and over the hole only. Results are kept per image
(`records`), so any grouping (mask kind, hole-ratio bucket) is an aggregation of the same numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from genfill.data.cache import ImageCache
from genfill.data.masks import fixed_masks, hole_ratio
from genfill.metrics.basic import edge_error, l1, mse, psnr, ssim

FillFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
METRICS = {"l1": l1, "mse": mse, "psnr": psnr, "ssim": ssim, "edge": edge_error}
HIGHER_IS_BETTER = {"psnr", "ssim", "psnr_hole", "ssim_hole"}


def score(filled: torch.Tensor, x: torch.Tensor, m: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image metrics, whole image and hole only: {"psnr": (N,), "psnr_hole": (N,), ...}."""
    filled, x, m = filled.float(), x.float(), m.float()
    out = {}
    for name, fn in METRICS.items():
        out[name] = fn(filled, x)
        out[f"{name}_hole"] = fn(filled, x, mask=m)
    return out


@dataclass
class EvalResult:
    method: str
    records: list[dict] = field(default_factory=list)  # one per (image, mask kind)
    seconds: float = 0.0  # fill time only
    images: int = 0

    def mean(self, metric: str, kind: str | None = None) -> float:
        vals = [r[metric] for r in self.records if kind is None or r["mask"] == kind]
        return sum(vals) / len(vals) if vals else float("nan")

    @property
    def ms_per_image(self) -> float:
        return 1000.0 * self.seconds / max(self.images, 1)


def test_batches(data: ImageCache, mask_kinds: dict[str, dict], n: int, seed: int, split: str = "test",
                 batch_size: int = 64, device="cpu"):
    """Yield (kind, positions, x, m): the first n images of `split`, masks fixed per (seed, position)."""
    for kind, params in mask_kinds.items():
        for x, pos in data.iterate(split, batch_size, shuffle=False, device=device, limit=n):
            start = int(pos[0])
            m = fixed_masks(kind, len(x), data.size, data.size, seed=seed, start=start, device=device, **params)
            yield kind, pos, x, m


def evaluate_methods(methods: dict[str, FillFn], data: ImageCache, mask_kinds: dict[str, dict], n: int = 500,
                     seed: int = 1234, split: str = "test", batch_size: int = 64, device="cpu") -> dict[str, EvalResult]:
    results = {name: EvalResult(name) for name in methods}
    for kind, pos, x, m in test_batches(data, mask_kinds, n, seed, split, batch_size, device):
        ratios = hole_ratio(m).tolist()
        for name, fill in methods.items():
            t = time.perf_counter()
            with torch.no_grad():
                filled = fill(x, m)
            if filled.device.type == "cuda":
                torch.cuda.synchronize()
            res = results[name]
            res.seconds += time.perf_counter() - t
            res.images += len(x)
            scores = {k: v.tolist() for k, v in score(filled, x, m).items()}
            for i, p in enumerate(pos.tolist()):
                res.records.append({"index": p, "mask": kind, "hole_ratio": ratios[i],
                                    **{k: v[i] for k, v in scores.items()}})
    return results
