"""Building blocks shared by model families: activations, norms, conv stacks that size themselves."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genfill.errors import GenfillError

ACTIVATIONS = {
    "relu": lambda inplace: nn.ReLU(inplace=inplace),
    "leaky_relu": lambda inplace: nn.LeakyReLU(0.2, inplace=inplace),
    "silu": lambda inplace: nn.SiLU(inplace=inplace),
    "gelu": lambda inplace: nn.GELU(),
    "elu": lambda inplace: nn.ELU(inplace=inplace),
}


def activation(name: str, inplace: bool = True) -> nn.Module:
    """A fresh activation module; pass inplace=False where its input is still needed (a residual skip)."""
    if name not in ACTIVATIONS:
        raise GenfillError(f"unknown activation {name!r} (valid: {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name](inplace)


def norm(name: str, channels: int) -> nn.Module:
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "group":
        return nn.GroupNorm(min(32, channels // 4) or 1, channels)
    if name == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if name == "none":
        return nn.Identity()
    raise GenfillError(f"unknown norm {name!r} (valid: batch, group, instance, none)")


def conv_out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


class ConvEncoder(nn.Module):
    """Strided conv stack: in_ch -> channels[-1] at (image_size / prod(strides))^2; records every size."""

    def __init__(self, in_ch: int, channels: list[int], image_size: int, kernel: int, stride: int,
                 padding: int, act: str, norm_name: str) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        self.sizes = [image_size]
        c = in_ch
        for i, out in enumerate(channels):
            layers.append(nn.Conv2d(c, out, kernel, stride, padding, bias=norm_name == "none" or i == 0))
            if i > 0:  # no norm on the first layer, as DCGAN-style encoders do
                layers.append(norm(norm_name, out))
            layers.append(activation(act))
            nxt = conv_out(self.sizes[-1], kernel, stride, padding)
            if nxt < 1:
                raise GenfillError(
                    f"image size {image_size} is too small for {len(channels)} conv layers "
                    f"(kernel {kernel}, stride {stride}, padding {padding})"
                )
            self.sizes.append(nxt)
            c = out
        self.net = nn.Sequential(*layers)
        self.out_channels = c
        self.out_size = self.sizes[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder with transposed convs; output_padding chosen so every size matches exactly."""

    def __init__(self, channels: list[int], sizes: list[int], out_ch: int, kernel: int, stride: int,
                 padding: int, act: str, norm_name: str) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        rev = list(reversed(channels))  # e.g. [256, 128, 64, 32]
        targets = list(reversed(sizes[:-1]))  # sizes to reach after each transposed conv
        size = sizes[-1]
        for i, target in enumerate(targets):
            cin = rev[i]
            cout = rev[i + 1] if i + 1 < len(rev) else out_ch
            natural = (size - 1) * stride - 2 * padding + kernel
            extra = target - natural
            if not 0 <= extra < max(stride, 1) and not (extra == 0):
                raise GenfillError(f"cannot mirror the encoder: size {size} -> {target} with this kernel/stride")
            last = i == len(targets) - 1
            layers.append(nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding=extra,
                                             bias=last or norm_name == "none"))
            if not last:
                layers.append(norm(norm_name, cout))
                layers.append(activation(act))
            size = target
        self.net = nn.Sequential(*layers)

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over all but the batch dimension: (N,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    return mu + torch.randn_like(mu) * (0.5 * logvar).exp()


class ConvCritic(nn.Module):
    """Image discriminator: a ConvEncoder stack and a linear head, (N,C,H,W) -> (N,) real/fake logits."""

    def __init__(self, in_ch: int, channels: list[int], image_size: int, kernel: int, stride: int,
                 padding: int, act: str, norm_name: str) -> None:
        super().__init__()
        self.features = ConvEncoder(in_ch, channels, image_size, kernel, stride, padding, act, norm_name)
        self.head = nn.Linear(self.features.out_channels * self.features.out_size ** 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1)).squeeze(1)


def masked_input(x: Tensor, m: Tensor | None) -> Tensor:
    """Inpainting encoder input: the image with its hole blanked plus the mask as an extra channel,
    (N,C+1,H,W). `m` None means nothing is missing (a zero mask)."""
    if m is None:
        m = torch.zeros_like(x[:, :1])
    return torch.cat([x * (1 - m), m], dim=1)


class ResBlock(nn.Module):
    """x + conv1x1(act(conv3x3(act(x)))): the residual block of van den Oord et al. 2017's VQ-VAE."""

    def __init__(self, channels: int, hidden: int, act: str) -> None:
        super().__init__()
        self.net = nn.Sequential(
            activation(act, inplace=False),  # x itself is still needed for the skip
            nn.Conv2d(channels, hidden, 3, 1, 1),
            activation(act),
            nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class ResidualStack(nn.Module):
    """`blocks` ResBlocks at constant resolution followed by one activation; identity when blocks = 0."""

    def __init__(self, channels: int, hidden: int, blocks: int, act: str) -> None:
        super().__init__()
        layers: list[nn.Module] = [ResBlock(channels, hidden, act) for _ in range(blocks)]
        if blocks:
            layers.append(activation(act))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
