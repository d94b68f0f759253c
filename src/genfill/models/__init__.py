"""Model registry: `REGISTRY[kind]` is a GenModel class whose `Config` dataclass holds its keywords."""

from __future__ import annotations

from typing import Any

from genfill.errors import GenfillError
from genfill.models.base import GenModel, ModelOutput, composite
from genfill.models.avae import AVAE
from genfill.models.pixelcnn import VQVAEPrior
from genfill.models.gan import GAN
from genfill.models.vae import VAE, BetaVAE
from genfill.models.vqvae import VQVAE

REGISTRY: dict[str, type[GenModel]] = {
    "vae": VAE,
    "beta_vae": BetaVAE,
    "avae": AVAE,
    "vqvae": VQVAE,
    "vqvae_prior": VQVAEPrior,
    "gan": GAN,
}

__all__ = ["REGISTRY", "GenModel", "ModelOutput", "composite", "build_model", "model_config", "load_model"]


def model_class(kind: Any) -> type[GenModel]:
    if not isinstance(kind, str) or kind not in REGISTRY:
        raise GenfillError(f"unknown model kind {kind!r} (valid: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[kind]


def model_config(spec: dict) -> Any:
    """Validate a `model:` section ({kind: ..., **keywords}) into the kind's Config dataclass."""
    from genfill.config import from_dict

    if not isinstance(spec, dict) or "kind" not in spec:
        raise GenfillError("model: needs a 'kind' key")
    spec = dict(spec)
    cls = model_class(spec.pop("kind"))
    return from_dict(cls.Config, spec, prefix="model")


def build_model(spec: dict, image_size: int, channels: int) -> GenModel:
    cfg = model_config(spec)
    return model_class(spec["kind"])(cfg, image_size, channels)


def load_model(path, device="cpu", expect_kind: str | None = None) -> tuple[GenModel, dict]:
    """Rebuild a model from its checkpoint alone (config inside), in eval mode on `device`."""
    from genfill.io import load_checkpoint

    ckpt = load_checkpoint(path, device)
    if expect_kind is not None and ckpt["kind"] != expect_kind:
        raise GenfillError(f"{ckpt['path']} holds a {ckpt['kind']} model, expected {expect_kind}")
    spec = {"kind": ckpt["kind"], **ckpt["model_config"]}
    model = build_model(spec, ckpt["image_size"], ckpt["channels"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise GenfillError(f"{ckpt['path']}: weights do not match its config ({str(exc).splitlines()[0]})") from exc
    return model.to(device).eval(), ckpt
