"""The one interface every model family speaks, so one trainer, logger and evaluator serve them all.

A model is built from its config dataclass (`Model.Config`, the constructor's keywords) plus the image
size and channel count of the data. Training calls `model(x, m)` and minimises `out.loss`; models with a
discriminator also expose `discriminator`, `d_loss` and `g_adv_loss`, and the trainer writes those steps out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from genfill.errors import GenfillError
from genfill.metrics.lpips import LPIPS
from genfill.metrics.uncertainty import spread
from genfill.pixels import composite


@dataclass
class ModelOutput:
    loss: Tensor  # scalar the optimiser minimises
    pred: Tensor  # (N,C,H,W) in [-1, 1]: the model's whole-image prediction
    parts: dict[str, Tensor] = field(default_factory=dict)  # named scalar parts, logged
    # What the discriminator judges as fake, for adversarial models whose fakes are not their fills
    # (e.g. the AVAE's prior samples); None = the composited fill composite(x, m, pred).
    fake: Tensor | None = None


class GenModel(nn.Module):
    """Base class. Subclasses set `Config` (a dataclass that validates itself in `__post_init__`), `kind` and
    the capability flags, and implement `forward` and `predict`; `fill` composites `predict` by default."""

    Config: ClassVar[type]
    kind: ClassVar[str] = "base"
    can_sample: ClassVar[bool] = False  # sample(n) draws new images
    can_interpolate: ClassVar[bool] = False  # encode/decode to a latent that can be mixed
    can_diversify: ClassVar[bool] = False  # fill_samples draws several different fills of one hole
    # Config keywords added after checkpoints of the kind existed, with the value those checkpoints were
    # trained with (a saved config without the key gets it back, so an old checkpoint fills as it did).
    legacy: ClassVar[dict[str, Any]] = {}
    # Config keywords renamed since checkpoints of the kind existed (old name -> new name): a saved config or a
    # `model:` section with the old name loads with the same meaning (typed.renamed).
    legacy_names: ClassVar[dict[str, str]] = {}
    # State-dict key prefixes of the model's encoder: what SSL pretraining (`genfill pretrain`) trains and
    # train.init_encoder_from moves into a new model. Empty: the family has no encoder to pretrain.
    encoder_prefixes: ClassVar[tuple[str, ...]] = ()
    # `discriminator` (nn.Module | None) is set in __init__, not as a class attribute: a class-level None
    # would shadow the submodule an adversarial model assigns (nn.Module keeps it in _modules).

    @classmethod
    def build(cls, cfg: Any, image_size: int, channels: int) -> GenModel:
        """A new model from its validated config. A family that needs another file (a VQ-VAE prior's VQ-VAE)
        resolves it here, so constructors never read files."""
        return cls(cfg, image_size, channels)

    def __init__(self, cfg: Any, image_size: int, channels: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.image_size = image_size
        self.channels = channels
        self.discriminator: nn.Module | None = None  # adversarial models assign theirs
        # Frozen nets a loss needs (the perceptual term's LPIPS): held outside the module tree (not in
        # state_dict, parameters() or the optimiser), moved along with the model by _apply below.
        self._frozen: list[nn.Module] = []

    def frozen_lpips(self) -> nn.Module:
        """The frozen LPIPS AlexNet of a perceptual term, loaded on first use and kept beside the model."""
        if not self._frozen:
            self._frozen.append(LPIPS.from_pretrained("alexnet"))
        return self._frozen[0]

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for net in self._frozen:
            net._apply(fn, *args, **kwargs)
        return self

    # ---- training
    def forward(self, x: Tensor, m: Tensor, kl_scale: float = 1.0) -> ModelOutput:  # pragma: no cover
        raise NotImplementedError

    def generator_parameters(self):
        """Parameters of everything but the discriminator (the main optimiser's)."""
        skip = {id(p) for p in self.discriminator.parameters()} if self.discriminator is not None else set()
        return [p for p in self.parameters() if id(p) not in skip]

    def param_groups(self) -> list[dict]:
        """The main optimiser's parameter groups: `generator_parameters` as one, unless a family trains a part at
        its own learning rate (a group's `lr_scale` multiplies the schedule's lr: `runs.set_lr`)."""
        return [{"params": self.generator_parameters()}]

    def d_loss(self, x: Tensor, m: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def g_adv_loss(self, x: Tensor, m: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def index(self, positions: Tensor, read, generator: torch.Generator) -> None:
        """Before the first training step: a family that keeps training images in its state (the sampler's
        exemplars) stores them, from the training split's `positions` through read(positions) -> images in
        [-1, 1], choosing with `generator`. Most families keep none."""

    def shape_state(self, state: dict[str, Tensor]) -> None:
        """Before a saved state is checked against this model: state whose shape depends on the data it was
        made from (not the config) takes the saved shape. Most families have none."""

    def epoch_stats(self) -> dict[str, float]:
        """Extra numbers logged once an epoch (codebook usage, ...); reset after reading."""
        return {}

    # ---- inference
    @torch.no_grad()
    def predict(self, x: Tensor, m: Tensor) -> Tensor:  # pragma: no cover - every family implements it
        """The whole-image prediction (N,C,H,W) in [-1, 1] for `x` under holes `m` (N,1,H,W, 1 = hole), without
        the loss. In eval mode it equals `forward(x, m).pred`, so one forward pass gives a fill and its loss."""
        raise NotImplementedError

    @torch.no_grad()
    def fill(self, x: Tensor, m: Tensor, **options: Any) -> Tensor:
        """Composited completion of `x` (N,C,H,W in [-1,1]) under masks `m` (N,1,H,W, 1 = hole)."""
        if options:
            raise GenfillError(f"{self.kind} takes no fill options (got {', '.join(options)})")
        return composite(x, m, self.predict(x, m))

    @torch.no_grad()
    def fill_samples(self, x: Tensor, m: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
        """K different composited fills of each image: (K,N,C,H,W), every one keeping the known pixels of `x`
        exactly. Families with `can_diversify` draw them from their own randomness (`generator` seeds it);
        the others draw one fill only and say so."""
        raise GenfillError(single_fill_message(f"a {self.kind} model"))

    @torch.no_grad()
    def fill_scale(self, x: Tensor, m: Tensor) -> Tensor | None:
        """A learned per-pixel uncertainty of `predict`: the scale (N,C,H,W), in [-1, 1] pixel units, of the
        distribution named by `scale_distribution` ("laplace" | "gaussian"); None where the family learns none."""
        return None

    scale_distribution: ClassVar[str] = "laplace"

    @torch.no_grad()
    def uncertainty_map(self, x: Tensor, m: Tensor, k: int = 8, generator: torch.Generator | None = None) -> Tensor | None:
        """Per-pixel uncertainty of the fill, (N,1,H,W) in [0, 1] pixel units (a standard deviation), 0 outside
        the hole: the learned scale's standard deviation when the family has one (Laplace b -> sqrt(2) b,
        Gaussian sigma), else the spread of `k` fills when it draws several; None when it has neither."""
        scale = self.fill_scale(x, m)
        if scale is not None:
            std = scale.float() * (math.sqrt(2.0) if self.scale_distribution == "laplace" else 1.0)
            return (std / 2).mean(1, keepdim=True) * m
        if self.can_diversify:
            return spread(self.fill_samples(x, m, k, generator)) / 2 * m  # [-1, 1] -> [0, 1] units
        return None

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        raise GenfillError(f"a {self.kind} model cannot sample new images")

    def encode(self, x: Tensor) -> Tensor:
        raise GenfillError(f"a {self.kind} model has no latent space to interpolate in")

    def decode(self, z: Tensor) -> Tensor:
        raise GenfillError(f"a {self.kind} model has no latent space to interpolate in")

    def latent_shape(self) -> tuple[int, ...]:
        raise GenfillError(f"a {self.kind} model has no latent space to interpolate in")

    # ---- the encoder (self-supervised pretraining)
    def _need_encoder(self) -> None:
        if not self.encoder_prefixes:
            raise GenfillError(f"a {self.kind} model has no encoder to pretrain (kinds with one: unet, vae, beta_vae)")

    def is_encoder_key(self, key: str) -> bool:
        return key.startswith(self.encoder_prefixes) if self.encoder_prefixes else False

    def encoder_state(self) -> dict[str, Tensor]:
        """The encoder's entries of `state_dict()` (weights and buffers, e.g. BatchNorm statistics)."""
        self._need_encoder()
        return {k: v for k, v in self.state_dict().items() if self.is_encoder_key(k)}

    def encoder_parameters(self) -> list[nn.Parameter]:
        self._need_encoder()
        return [p for k, p in self.named_parameters() if self.is_encoder_key(k)]

    @property
    def feature_dim(self) -> int:
        """The width of `encoder_features`."""
        self._need_encoder()
        raise NotImplementedError  # pragma: no cover - a family with an encoder defines it

    def encoder_features(self, x: Tensor) -> Tensor:
        """(N, feature_dim) pooled encoder features of whole images `x` (N,C,H,W) in [-1, 1], no hole: the
        representation SSL pretraining learns."""
        self._need_encoder()
        raise NotImplementedError  # pragma: no cover

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.generator_parameters())


def single_fill_message(what: str) -> str:
    """The one line a method that draws one fill ("a unet model", "the telea peer") answers a request for
    several with."""
    several, todo = set(), list(GenModel.__subclasses__())
    while todo:  # every family subclasses GenModel (the registry imports this module, so walk the classes)
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.can_diversify:
            several.add(cls.kind)
    return f"{what} draws one fill per hole; several fills (--samples) come from: {', '.join(sorted(several))}"
