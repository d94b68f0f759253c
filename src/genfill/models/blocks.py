"""Building blocks shared by model families: activations, norms, conv stacks that size themselves."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genfill.distributed import randn_like
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


def gaussian_draw(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """z ~ N(mu, exp(logvar)) from `generator` (inference: seeded draws, no training-time rank slicing)."""
    noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + noise * (0.5 * logvar).exp()


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    # distributed.randn_like: under torchrun, this rank's slice of the global batch's noise (exactness)
    return mu + randn_like(mu) * (0.5 * logvar).exp()


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


class VQResBlock(nn.Module):
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
    """`blocks` VQResBlocks at constant resolution followed by one activation; identity when blocks = 0."""

    def __init__(self, channels: int, hidden: int, blocks: int, act: str) -> None:
        super().__init__()
        layers: list[nn.Module] = [VQResBlock(channels, hidden, act) for _ in range(blocks)]
        if blocks:
            layers.append(activation(act))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def conv_stack(in_ch: int, channels: list[int], act: str, norm_name: str = "none", kernel: int = 3,
               last_act: bool = True) -> nn.Sequential:
    """Same-size convs (stride 1, 'same' padding) in_ch -> channels[0] -> ... with bias, norm and activation.

    The conv keeps its bias even under a norm, so `norm: none` and the other norms differ only by the norm's
    own parameters. `last_act=False` leaves the final conv bare (an output layer).
    """
    layers: list[nn.Module] = []
    c = in_ch
    for i, out in enumerate(channels):
        layers.append(nn.Conv2d(c, out, kernel, 1, kernel // 2))
        if i < len(channels) - 1 or last_act:
            layers.append(norm(norm_name, out))
            layers.append(activation(act))
        c = out
    return nn.Sequential(*layers)


class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al. 2019) over all positions of a (N,C,H,W) map.

    Query and key are 1x1 convs to C / `reduction` channels, the value a 1x1 conv to C; the attended values
    are added back through a learned gate gamma that starts at 0, so the block starts as the identity.
    Parameters: 2 (C*C/r + C/r) + C*C + C + 1 (82,241 at C = 256, r = 8).
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        inner = max(1, channels // reduction)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (N, HW, C/r)
        k = self.key(x).flatten(2)  # (N, C/r, HW)
        attn = torch.softmax(torch.bmm(q, k), dim=-1)  # (N, HW, HW): row i attends over all positions
        v = self.value(x).flatten(2)  # (N, C, HW)
        out = torch.bmm(v, attn.transpose(1, 2)).view(n, c, h, w)
        return x + self.gamma * out


class PatchDiscriminator(nn.Module):
    """Fully convolutional PatchGAN: one real/fake logit per overlapping patch, (N,1,h,w).

    `layers` stride-2 k4 convs (base, 2*base, ...) with LeakyReLU 0.2 and a norm after every conv but the
    first, then a k4 stride-1 conv to one logit map. Base 32, two layers, batch norm on 3 channels is seed
    002's discriminator: 1,568 + 32,832 + 128 + 1,025 = 35,553 parameters.
    """

    def __init__(self, in_ch: int = 3, base: int = 32, layers: int = 2, norm_name: str = "batch") -> None:
        super().__init__()
        mods: list[nn.Module] = []
        c = in_ch
        for i in range(layers):
            out = base * 2**i
            mods.append(nn.Conv2d(c, out, 4, 2, 1))
            if i > 0:
                mods.append(norm(norm_name, out))
            mods.append(nn.LeakyReLU(0.2, inplace=True))
            c = out
        mods.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


# ---- the unet's blocks (and the sampler's, which shares its network): gated, residual, Fourier


class GatedConv2d(nn.Module):
    """Gated convolution (DeepFill v2): conv to 2*out channels, features * sigmoid(gate)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, 2 * cout, kernel, padding=dilation * (kernel // 2), dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:
        f, g = self.conv(x).chunk(2, dim=1)
        return f * torch.sigmoid(g)


def conv3(cin: int, cout: int, gated: bool, dilation: int = 1) -> nn.Module:
    if gated:
        return GatedConv2d(cin, cout, 3, dilation)
    return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)


class ResBlock(nn.Module):
    """The pre-activation residual block of the unet and the sampler: x + conv(act(norm(conv(act(norm(x)))))),
    3x3 convs (gated and/or dilated on request), a 1x1 skip when the width changes. (The VQ-VAE's bottleneck
    block is `VQResBlock`.)"""

    def __init__(self, cin: int, cout: int, norm_name: str, act: str, gated: bool = False, dilation: int = 1):
        super().__init__()
        self.n1, self.a1 = norm(norm_name, cin), activation(act, inplace=False)
        self.c1 = conv3(cin, cout, gated, dilation)
        self.n2, self.a2 = norm(norm_name, cout), activation(act)
        self.c2 = conv3(cout, cout, gated, dilation)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.c1(self.a1(self.n1(x)))
        return self.skip(x) + self.c2(self.a2(self.n2(h)))


class SpectralTransform(nn.Module):
    """LaMa's Fourier unit: rfft2 -> 1x1 conv (norm, act) over the real and imaginary parts as channels ->
    irfft2. Every output pixel depends on every input pixel. The FFT runs in fp32 (autocast-safe)."""

    def __init__(self, channels: int, norm_name: str, act: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.norm, self.act = norm(norm_name, 2 * channels), activation(act)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        with torch.autocast(x.device.type, enabled=False):
            f = torch.fft.rfft2(x.float(), norm="ortho")
            z = torch.cat([f.real, f.imag], 1)
            z = self.act(self.norm(self.conv(z)))
            re, im = z.chunk(2, 1)
            return torch.fft.irfft2(torch.complex(re, im), s=(h, w), norm="ortho").to(x.dtype)


class FFCBlock(nn.Module):
    """Fast Fourier convolution residual block: half the channels go through a local 3x3 conv, half through
    the spectral transform; both halves see all channels (LaMa's l->g and g->l paths), then a 1x1 mixes."""

    def __init__(self, channels: int, norm_name: str, act: str, gated: bool = False) -> None:
        super().__init__()
        half = channels // 2
        self.n, self.a = norm(norm_name, channels), activation(act, inplace=False)
        self.local = conv3(channels, channels - half, gated)
        self.to_global = nn.Conv2d(channels, half, 1)
        self.spectral = SpectralTransform(half, norm_name, act)
        self.mix = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.a(self.n(x))
        return x + self.mix(torch.cat([self.local(h), self.spectral(self.to_global(h))], 1))
