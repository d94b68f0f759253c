"""A config read and checked all the way down: `load_config` / `build_config` (training) and
`load_pretrain_config` / `build_pretrain_config` (`genfill pretrain`) read the YAML (or the defaults), apply
`--set` overrides, build the typed dataclasses of genfill.config, then check what genfill.config cannot know
alone: the model section against the registry's config for its kind (genfill.models), the mask kind's values
at the training size (genfill.masks), and the training keys' ranges. So a bad value fails at load, not at
step 0, with one line naming the key."""

from __future__ import annotations

from pathlib import Path

from genfill.config import PRETRAIN_UNUSED, TRAIN_RENAMED, PretrainConfig, RunConfig, TrainConfig, apply_overrides
from genfill.masks import check_mask
from genfill.errors import GenfillError
from genfill.io import note_input
from genfill.models import REGISTRY, model_class, model_config
from genfill.typed import from_dict, read_yaml, renamed, to_dict


def _read_input(path: str | Path) -> dict:
    """read_yaml, the file noted as the command's input (genfill.io: no output may replace it)."""
    raw = read_yaml(path)
    note_input(path)
    return raw


def _override(raw: dict, overrides: list[str]) -> None:
    """`--set` overrides, one at a time so that a renamed key's old name (train's, or the model kind's as set
    so far) sets the new key."""
    for item in overrides:
        spec = raw.get("model")
        kind = spec.get("kind") if isinstance(spec, dict) else None
        names = {f"train.{old}": f"train.{new}" for old, new in TRAIN_RENAMED.items()}
        if isinstance(kind, str) and kind in REGISTRY:
            names.update({f"model.{old}": f"model.{new}" for old, new in REGISTRY[kind].legacy_names.items()})
        apply_overrides(raw, [item], names)


def _upgrade(raw: dict) -> dict:
    """The train section with its renamed keys under today's names (the model's: models.model_config)."""
    return {**raw, "train": renamed(raw["train"], TRAIN_RENAMED, "train")} if "train" in raw else raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (or the defaults), apply overrides, validate everything including the model."""
    raw = _read_input(path) if path else {}
    _override(raw, overrides or [])
    return build_config(raw)


def load_pretrain_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PretrainConfig:
    """A `genfill pretrain` config (YAML + overrides), validated: the model kind must have an encoder, the train
    keys the loop does not read must be left alone."""
    raw = _read_input(path) if path else {}
    _override(raw, overrides or [])
    return build_pretrain_config(raw)


def build_pretrain_config(raw: dict) -> PretrainConfig:
    if "masks" in raw:
        raise GenfillError("this is a `genfill train` config (it has a masks: section); genfill pretrain takes a "
                           "config with an ssl: section (e.g. ssl-simclr-faces64)")
    cfg = from_dict(PretrainConfig, _upgrade(raw))
    cfg.model = {"kind": cfg.model.get("kind"), **to_dict(model_config(cfg.model))}
    if not model_class(cfg.model["kind"]).encoder_prefixes:
        raise GenfillError(f"model.kind: a {cfg.model['kind']} model has no encoder to pretrain (kinds with one: "
                           f"unet, vae, beta_vae)")
    default = TrainConfig()
    for key in PRETRAIN_UNUSED:
        if getattr(cfg.train, key) != getattr(default, key):
            raise GenfillError(f"train.{key}: genfill pretrain does not use it (leave it out)")
    check_schedule(cfg.train)
    return cfg


def build_config(raw: dict) -> RunConfig:
    if "ssl" in raw:
        raise GenfillError("this is a `genfill pretrain` config (it has an ssl: section), not a training config")
    cfg = from_dict(RunConfig, _upgrade(raw))
    # Validate the model section against the chosen kind's own config dataclass now, not at step 0.
    cfg.model = {"kind": cfg.model.get("kind"), **to_dict(model_config(cfg.model))}
    # The values too, at the training size (a square of size 0 is refused here, not after the data is built).
    check_mask(cfg.masks.kind, cfg.masks.params, cfg.data.size, cfg.data.size)
    check_training(cfg)
    return cfg


SCHEDULES = ("constant", "cosine")


def check_training(cfg: RunConfig) -> None:
    """The training keys' ranges (types are checked by from_dict)."""
    tc = cfg.train
    if cfg.masks.bank_size < 0:
        raise GenfillError(f"masks.bank_size: must be >= 0 (0 = draw masks every step), got {cfg.masks.bank_size}")
    if tc.init_encoder_from:
        if not model_class(cfg.model["kind"]).encoder_prefixes:
            raise GenfillError(f"train.init_encoder_from: a {cfg.model['kind']} model has no encoder to load "
                               "(kinds with one: unet, vae, beta_vae)")
    check_schedule(tc)
    if not 0.0 <= tc.ema < 1.0:
        raise GenfillError(f"train.ema: must be in [0, 1) (0 = off; e.g. 0.999), got {tc.ema}")
    if tc.accumulate < 1 or tc.batch_size % tc.accumulate:
        raise GenfillError(f"train.accumulate: must be >= 1 and divide train.batch_size ({tc.batch_size}), "
                           f"got {tc.accumulate}")


def check_schedule(tc: TrainConfig) -> None:
    """The learning-rate schedule's keys (shared by train and pretrain configs)."""
    if tc.schedule not in SCHEDULES:
        raise GenfillError(f"train.schedule: {tc.schedule!r} is not one of {', '.join(SCHEDULES)}")
    if tc.lr_warmup_steps < 0:
        raise GenfillError(f"train.lr_warmup_steps: must be >= 0, got {tc.lr_warmup_steps}")
