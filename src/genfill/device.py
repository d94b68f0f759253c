"""Where tensors run and how fast: the device choice, bf16 autocast, and whether to take the fast path."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from genfill.errors import GenfillError


def pick_device(name: str = "auto") -> torch.device:
    """auto (CUDA, else MPS, else CPU) or an explicit cpu | cuda | cuda:N | mps that must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise GenfillError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GenfillError("device cuda was asked for, but no CUDA GPU is available")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise GenfillError("device mps was asked for, but MPS is not available")
    return dev


def fast_path(setting: bool | None, device: torch.device) -> bool:
    """Whether to train on the fast path: `train.fast` when set, by default on CUDA only."""
    if setting is not None and not isinstance(setting, bool):
        raise TypeError(f"fast_path takes the train.fast setting (bool or None), got {type(setting).__name__}")
    return setting if setting is not None else device.type == "cuda"


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA (where the GPU has bf16) and CPU; nothing elsewhere or when disabled."""
    if not enabled or device.type not in ("cuda", "cpu"):
        return nullcontext()
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return nullcontext()  # fp16 would need loss scaling; fp32 is the honest fallback
    return torch.autocast(device.type, dtype=torch.bfloat16)
