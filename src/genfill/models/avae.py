"""AVAE: Adversarial Variational Auto Encoder (Plumerault, Le Borgne & Hudelot, ICPR 2020, arXiv 2012.11551).

Seed 001 names it "Auxiliary VAE" but cites this paper; this file follows the paper. Its argument: a VAE's
Gaussian decoder covers the dimensions of the image manifold its latent code does not capture with
pixel noise, which is then dropped, hence blur; a GAN generator fed the VAE's code *plus* extra noise can
produce those details. What we followed, from the paper and its authors' code
(github.com/AntoinePlumerault/AVAE, src/frameworks/avae.py and utils/losses.py):

Four networks: encoder E -> q(z|x) = N(mu, sigma^2); an auxiliary VAE decoder Dec(z); a generator
G(z, xi) with extra noise xi ~ N(0, I) (`noise_dim`, the authors use latent_dim); a discriminator D. One
forward pass, and each network minimises only its own terms:
- E:   beta * KL(q(z|x) || N(0, I)) + recon(x, Dec(z)),  z ~ q(z|x)    (the VAE on real images)
- Dec: recon(x, Dec(z))
- G:   adv(D(G(z', xi))) + lat,  z' ~ N(0, I): fool D, and let E recover the code it was given:
       lat = sum_j 1/2 (z'_j - mu_E(G(z', xi))_j)^2 * w_j,  w = softmax_j(-log sigma_E(G(z', xi))_j^2)
       with w held constant (stop-gradient), so confident latent dimensions count more. lat trains G only:
       E is a fixed judge of G's codes there.
- D:   BCE(D(x), real) + BCE(D(G(z', xi)), fake).
The generator's adversarial loss is -D(G) on the logit as in the authors' code (`gan_loss: logit`), or
the usual non-saturating softplus(-D(G)) (`gan_loss: nonsaturating`). Reconstructions and fills come
from the generator, G(E(x), xi); the VAE decoder only trains the encoder.

How it fits genfill's one loop (one optimiser over E, Dec, G; one over D) without changing who trains
what: `forward` returns recon + beta*KL (reaches E and Dec only) plus latent_weight * lat, where lat is
computed through E with its parameters detached (torch.func.functional_call), so lat's gradient flows
through E's function into G but never into E's weights; it also returns the generated batch as
`ModelOutput.fake`. The trainer's discriminator step judges that batch (detached); its generator step
adds `g_adv_loss` = adv(D(fake)), which reaches G only (D's gradients from it are discarded: the trainer
zeroes D's gradients before D's own step). The summed loss therefore gives every network exactly the
gradient of its own loss in the authors' per-network update. The one general change to train.py: the
adversarial steps use `out.fake` when a model sets it, instead of composite(x, m, out.pred).

Where we chose (the paper does not cover inpainting, nor our loop):
- Inpainting: E sees the masked image plus the mask channel, as the masked VAE does (vae.py, `inpaint`);
  Dec reconstructs the whole image (with `hole_weight`); in lat, E sees G's image under the same batch
  masks, so E judges generated images in the very input form it is trained on. Fill = the composite of
  G(mu_E(masked x), xi) in the hole.
- D judges prior samples G(z', xi) against real images, as in the paper, not composited fills.
- lat is averaged over the batch; the authors' code sums it over the batch (64 images), so
  `latent_weight: 64` (default) reproduces their weighting at their batch size.
- Eval mode (validation, fill, decode) uses the posterior mean and xi = 0, so scores are deterministic;
  `fill(..., diverse=True)` and `sample` draw xi; `fill(..., method="decoder")` fills from the
  auxiliary decoder. The authors draw z and xi at test time too, and so does `fill_samples` (the
  pluralistic fills, `--samples K`): z ~ q(z | masked x) and xi ~ N(0, I), because xi alone only varies
  the details the code leaves out, while z varies what the hole holds.
- D's step comes before G's in our loop (G then fools the just-updated D); the authors update all four
  networks from one forward pass. Their Adam uses betas (0.5, 0.999) and lr 2e-4: configs/avae-faces64.yaml.
- During training `pred` is the auxiliary decoder's reconstruction (free, logged only); in eval mode it is
  the generator's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from genfill.errors import GenfillError
from genfill.models.base import ModelOutput
from genfill.pixels import composite
from genfill.models.blocks import ConvCritic, ConvDecoder
from genfill.models.vae import VAE, VAEConfig


@dataclass
class AVAEConfig(VAEConfig):
    noise_dim: int | None = None  # generator's extra noise xi; None = latent_dim (the authors' choice)
    latent_weight: float = 64.0  # weight of lat per image (the authors' batch sum over 64 images)
    gan_loss: str = "logit"  # logit (-D(G), the authors') | nonsaturating (softplus(-D(G)))
    d_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    d_norm: str = "batch"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gan_loss not in ("logit", "nonsaturating"):
            raise GenfillError(f"model.gan_loss: {self.gan_loss!r} is not one of logit, nonsaturating")
        if (self.noise_dim is not None and self.noise_dim < 0) or self.latent_weight < 0:
            raise GenfillError("model: noise_dim and latent_weight must be >= 0")
        if not self.d_channels:
            raise GenfillError("model.d_channels: needs at least one conv layer")


class AVAE(VAE):
    Config = AVAEConfig
    kind = "avae"

    def __init__(self, cfg: AVAEConfig, image_size: int, channels: int) -> None:
        super().__init__(cfg, image_size, channels)
        self.noise_dim = cfg.latent_dim if cfg.noise_dim is None else cfg.noise_dim
        c, s = self.encoder.out_channels, self.encoder.out_size
        self.gen_in = nn.Linear(cfg.latent_dim + self.noise_dim, c * s * s)
        self.generator = ConvDecoder(cfg.channels, self.encoder.sizes, channels, cfg.kernel, cfg.stride,
                                     cfg.padding, cfg.activation, cfg.norm)
        self.discriminator = ConvCritic(channels, cfg.d_channels, image_size, cfg.kernel, cfg.stride,
                                        cfg.padding, "leaky_relu", cfg.d_norm)

    # ---- pieces
    def generate(self, z: Tensor, xi: Tensor | None = None) -> Tensor:
        """G(z, xi) in [-1, 1]; xi = None means xi = 0 (the noise's mode)."""
        if xi is None:
            xi = torch.zeros_like(z[:, :1]).expand(-1, self.noise_dim)  # batch size traced (ONNX export)
        h = self.gen_in(torch.cat([z, xi], dim=1)).view(-1, *self.feat_shape)
        return torch.tanh(self.generator(h))

    def _noise(self, n: int, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if generator is None:  # torch.compile traces n as a symbol; randn's generator overload needs a number
            return torch.randn(n, self.noise_dim, device=like.device, dtype=like.dtype)
        return torch.randn(n, self.noise_dim, generator=generator, device=like.device, dtype=like.dtype)

    def latent_loss(self, z: Tensor, fake: Tensor, m: Tensor) -> Tensor:
        """Mean over images of sum_j 1/2 (z_j - mu_j)^2 w_j, (mu, logvar) = E(fake) with E's weights
        detached (the gradient reaches G through E's function, never E's weights); w = softmax(-logvar),
        held constant."""
        enc_mask = m if self.cfg.inpaint == "masked" else None
        inp = self._encoder_input(fake, enc_mask)
        frozen = lambda mod: {k: v.detach() for k, v in mod.named_parameters()}  # noqa: E731
        h = functional_call(self.encoder, frozen(self.encoder), (inp,)).flatten(1)
        mu, logvar = functional_call(self.to_stats, frozen(self.to_stats), (h,)).chunk(2, dim=1)
        w = torch.softmax(-logvar.clamp(-30.0, 20.0), dim=1).detach()
        return (0.5 * (z - mu).pow(2) * w).sum(1).mean()

    # ---- interface
    def forward(self, x: Tensor, m: Tensor, kl_scale: float = 1.0) -> ModelOutput:
        loss, parts, logits, z = self.elbo(x, m, kl_scale)
        if self.training:
            z_prior = torch.randn_like(z)
            fake = self.generate(z_prior, self._noise(len(x), z))
            lat = self.latent_loss(z_prior, fake, m)
            pred = self.to_image(logits)  # the auxiliary decoder's reconstruction: logged only
        else:
            fake = None
            pred = self.generate(z)  # z = posterior mean, xi = 0
            lat = self.latent_loss(z, pred, m)
            pred = self._eval_pred(x, m, pred)
        parts["lat"] = lat
        return ModelOutput(loss=loss + self.cfg.latent_weight * lat, pred=pred, parts=parts, fake=fake)

    def d_loss(self, x: Tensor, m: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """BCE: real images -> 1, generated images -> 0 (`fake` is the forward pass's detached G(z', xi))."""
        real_logit, fake_logit = self.discriminator(x), self.discriminator(fake)
        d = (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
             + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
        return d, {"d": d.detach(), "d_real": torch.sigmoid(real_logit).mean().detach(),
                   "d_fake": torch.sigmoid(fake_logit).mean().detach()}

    def g_adv_loss(self, x: Tensor, m: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        logit = self.discriminator(fake)
        adv = (-logit).mean() if self.cfg.gan_loss == "logit" else F.softplus(-logit).mean()
        return adv, {"adv": adv.detach()}

    @torch.no_grad()
    def fill(self, x: Tensor, m: Tensor, method: str = "auto", diverse: bool = False,
             generator: torch.Generator | None = None) -> Tensor:
        """Composite fill from the posterior mean of the masked image. method: auto | generator (the AVAE's
        reconstruction; `diverse` draws xi instead of 0) | decoder (the auxiliary VAE decoder)."""
        if method not in ("auto", "generator", "decoder"):
            raise GenfillError(f"fill method {method!r} is not one of auto, generator, decoder")
        if method != "decoder" and not diverse:
            return composite(x, m, self.predict(x, m))
        mu, _ = self.stats(x, m)
        if method == "decoder":
            return composite(x, m, self.to_image(self.decode_logits(mu)))
        return composite(x, m, self.generate(mu, self._noise(len(x), mu, generator)))

    def _sample_image(self, z: Tensor, generator: torch.Generator | None) -> Tensor:
        """G(z, xi) with a fresh xi per draw (fill_samples: the posterior draw z and the generator's noise)."""
        return self.generate(z, self._noise(len(z), z, generator))

    @torch.no_grad()
    def predict(self, x: Tensor, m: Tensor) -> Tensor:
        """The generator's image of the posterior mean of the masked image, with xi = 0."""
        return self.generate(self.stats(x, m)[0])

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        dev = next(self.parameters()).device
        z = torch.randn(n, self.cfg.latent_dim, generator=generator, device=dev)
        return self.generate(z, torch.randn(n, self.noise_dim, generator=generator, device=dev))

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        return self.generate(z)
