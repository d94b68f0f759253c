"""The scores of a model's several fills in an evaluation (`genfill eval --samples K`).

With `samples=K`, a model that draws several fills (`can_diversify`) also
draws K fills of every image (seeded by the eval seed), and each record gains their quality (best-of-K and
mean-over-K whole-image PSNR and LPIPS: `psnr_best`, `psnr_meank`, `lpips_best`, `lpips_meank`), their
diversity (mean pairwise LPIPS, `diversity`) and the calibration of their spread
(`genfill.metrics.uncertainty`): `coverage90`, the share of true hole values inside the per-value
empirical 5-95 % interval of the K fills, and `unc_corr`, Pearson's r over hole pixels between the spread
and the absolute error of the model's ordinary fill. A model that learns a scale (`fill_scale`: the unet
with `uncertainty: true`) gets the same two from its predicted interval, with or without --samples. The
same two numbers pooled over every hole value of a mask kind go to `extras["plural"]["by_mask"]`.
"""

from __future__ import annotations

from typing import Callable

import torch

from genfill.metrics.basic import psnr
from genfill.metrics.uncertainty import (LEVEL, CalibrationTally, Moments, coverage, diversity, nominal_coverage,
                                         sample_interval, scale_interval, spread)
from genfill.models import GenModel
from genfill.models.base import single_fill_message


@torch.no_grad()
def plural_scores(model: GenModel, x: torch.Tensor, m: torch.Tensor, filled: torch.Tensor, k: int,
                  generator: torch.Generator | None, lp: Callable | None) -> tuple[dict, torch.Tensor, torch.Tensor, Moments] | None:
    """Per-image scores of a model's K fills (k > 1 and the model can draw them) or of its predicted scale
    (module docstring), with the coverage counts and moments to pool: (scores {name: (N,)}, covered (N,),
    total (N,), moments). None when the model has neither."""
    out: dict[str, torch.Tensor] = {}
    if k > 1 and model.can_diversify:
        s = model.fill_samples(x, m, k, generator).float()
        xf = x.float()
        p = torch.stack([psnr(s[i], xf) for i in range(k)])
        out.update(psnr_best=p.max(0).values, psnr_meank=p.mean(0))
        if lp is not None:
            d = torch.stack([lp(s[i], xf) for i in range(k)])
            out.update(lpips_best=d.min(0).values, lpips_meank=d.mean(0), diversity=diversity(s, lp))
        lo, hi = sample_interval(s, LEVEL)
        u = spread(s)
    else:
        scale = model.fill_scale(x, m)
        if scale is None:
            return None
        lo, hi = scale_interval(filled, scale, model.scale_distribution, LEVEL)
        u = scale.float().mean(1, keepdim=True)
    err = (x.float() - filled.float()).abs().mean(1, keepdim=True)
    covered, total = coverage(lo, hi, x, m)
    moments = Moments.of(u, err, m)
    out.update(coverage90=covered / total.clamp_min(1), unc_corr=moments.r())
    return out, covered, total, moments


def plural_summary(model: GenModel, k: int, tally: CalibrationTally) -> dict:
    """What eval.json records about a model's several fills and calibration (`extras["plural"]`)."""
    if k > 1 and model.can_diversify:
        return {"k": k, "source": "samples", "interval": "empirical 5-95 % quantiles of the K fills per value",
                "nominal_coverage": nominal_coverage(k, LEVEL), "by_mask": tally.by_mask()}
    if tally.total:
        dist = model.scale_distribution
        half = "1.645 sigma" if dist == "gaussian" else "ln(10) b"
        return {"k": 1, "source": "scale", "interval": f"fill +- {half} (a predicted {dist} scale)",
                "nominal_coverage": LEVEL, "by_mask": tally.by_mask()}
    return {"k": 1, "note": single_fill_message(f"a {model.kind} model")}
