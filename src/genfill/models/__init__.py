"""Model registry: `REGISTRY[kind]` is a GenModel class whose `Config` dataclass holds its keywords."""

from __future__ import annotations

from typing import Any

import torch

from genfill.errors import GenfillError
from genfill.io import load_checkpoint, save_checkpoint
from genfill.models.avae import AVAE
from genfill.models.base import GenModel, ModelOutput
from genfill.models.gan import GAN
from genfill.models.pixelcnn import VQVAEPrior
from genfill.models.sampler import Sampler
from genfill.models.unet import UNet
from genfill.models.vae import VAE, BetaVAE
from genfill.models.vqvae import VQVAE
from genfill.pixels import composite  # noqa: F401 (re-exported: genfill.models.composite)
from genfill.typed import from_dict, renamed, to_dict

REGISTRY: dict[str, type[GenModel]] = {
    "vae": VAE,
    "beta_vae": BetaVAE,
    "avae": AVAE,
    "vqvae": VQVAE,
    "vqvae_prior": VQVAEPrior,
    "gan": GAN,
    "unet": UNet,
    "sampler": Sampler,
}

__all__ = ["REGISTRY", "GenModel", "ModelOutput", "composite", "build_model", "model_config", "save_model",
           "load_model", "saved_config", "load_encoder"]


def model_class(kind: Any) -> type[GenModel]:
    if not isinstance(kind, str) or kind not in REGISTRY:
        raise GenfillError(f"unknown model kind {kind!r} (valid: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[kind]


def model_config(spec: dict) -> Any:
    """Validate a `model:` section ({kind: ..., **keywords}) into the kind's Config dataclass."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise GenfillError("model: needs a 'kind' key")
    spec = dict(spec)
    cls = model_class(spec.pop("kind"))
    return from_dict(cls.Config, renamed(spec, cls.legacy_names, "model"), prefix="model")


def saved_config(kind: str, config: dict) -> dict:
    """A model config read back from a checkpoint or an export, in today's names (the kind's `legacy_names`)
    and completed with the kind's `legacy` values for keys added since it was written."""
    cls = model_class(kind)
    return {**cls.legacy, **renamed(config, cls.legacy_names, "model")}


def build_model(spec: dict, image_size: int, channels: int) -> GenModel:
    """A new model from a `model:` section; the kind's `build` resolves any file it depends on first."""
    return model_class(spec["kind"]).build(model_config(spec), image_size, channels)


def save_model(path, model: GenModel, **extra: Any) -> None:
    """Write a checkpoint that `load_model` rebuilds the model from alone: its kind, its own config (which a
    model may complete at build time: a VQ-VAE prior stores its VQ-VAE's spec there), image size, channels
    and weights. `extra` adds what training resumes from (optimiser, step, run config, ...)."""
    save_checkpoint(path, {"kind": model.kind, "model_config": to_dict(model.cfg), "image_size": model.image_size,
                           "channels": model.channels, "model": model.state_dict(),
                           "num_parameters": model.num_parameters(), **extra})


def load_model(path, device="cpu", expect_kind: str | None = None) -> tuple[GenModel, dict]:
    """Rebuild a model from its checkpoint alone (config inside), in eval mode on `device`."""
    ckpt = load_checkpoint(path, device)
    if expect_kind is not None and ckpt["kind"] != expect_kind:
        raise GenfillError(f"{ckpt['path']} holds a {ckpt['kind']} model, expected {expect_kind}")
    spec = {"kind": ckpt["kind"], **saved_config(ckpt["kind"], ckpt["model_config"])}
    model = build_model(spec, ckpt["image_size"], ckpt["channels"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise GenfillError(f"{ckpt['path']}: weights do not match its config ({str(exc).splitlines()[0]})") from exc
    return model.to(device).eval(), ckpt


def load_encoder(model: GenModel, path) -> str:
    """Copy the encoder weights (`model.encoder_prefixes`) of a checkpoint or run directory (a `genfill pretrain`
    run, or any run of the same kind) into `model`, and nothing else (train.init_encoder_from). Strict: the
    kind must match and every encoder tensor must be there with the same shape, else a GenfillError names
    the first that differs. Returns what was loaded, for the log."""
    ckpt = load_checkpoint(path)
    where = ckpt["path"]
    if ckpt["kind"] != model.kind:
        raise GenfillError(f"train.init_encoder_from: {where} holds a {ckpt['kind']} encoder, this model is a "
                           f"{model.kind}")
    own = model.encoder_state()
    theirs = {k: v for k, v in ckpt["model"].items() if model.is_encoder_key(k)}
    for k in own:
        if k not in theirs:
            raise GenfillError(f"train.init_encoder_from: {where} lacks the encoder tensor {k} (model configs differ)")
        if theirs[k].shape != own[k].shape:
            raise GenfillError(f"train.init_encoder_from: encoder tensor {k} is {tuple(theirs[k].shape)} in {where} "
                               f"but {tuple(own[k].shape)} here (model.widths/channels must match)")
    extra = sorted(set(theirs) - set(own))
    if extra:
        raise GenfillError(f"train.init_encoder_from: {where} has the encoder tensor {extra[0]}, which this model "
                           "lacks (model configs differ)")
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(theirs[k])
    method = ckpt.get("pretrain", {}).get("method") if isinstance(ckpt.get("pretrain"), dict) else None
    return (f"the {model.kind} encoder ({len(own)} tensors, {sum(v.numel() for v in own.values()):,} values"
            f"{', ' + method if method else ''}) from {where}")
