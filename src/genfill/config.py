"""Typed experiment configs: dataclass trees loaded strictly from YAML.

A config file has four sections, each a dataclass below; `model` is the constructor keywords of the model
kind named by `model.kind` (see `genfill.models.REGISTRY`). Unknown keys and wrong types are errors that name
the key (``train.lr: expected float, got 'fast'``). `--set a.b=value` overrides are parsed as YAML scalars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from genfill.augment import AugmentConfig
from genfill.errors import GenfillError, did_you_mean
from genfill.io import atomic_write_text
from genfill.typed import YAMLSyntaxError, from_dict, load_yaml, read_yaml, to_dict
from genfill.usercache import cache_root

__all__ = ["DataConfig", "MaskConfig", "TrainConfig", "RunConfig", "SSLConfig", "PretrainConfig",
           "load_pretrain_config", "build_pretrain_config", "from_dict", "to_dict", "read_yaml",
           "apply_overrides", "resolve_config", "config_dirs", "list_configs", "load_config", "build_config", "save_config"]


# The evaluation protocol's defaults, defined once (CLI, eval job, reproduce presets): the mask seed that fixes
# every test and validation hole per (seed, image index), the mask kinds scored, the classical peers compared.
EVAL_SEED = 1234
EVAL_MASKS = ("thin", "medium", "thick", "square")
PEER_NAMES = ("telea", "ns", "biharmonic", "patchmatch", "mean")  # the keys of genfill.peers.PEERS

DATASETS = ("faces64", "folder", "celeba")


SEED_MAX = 2**63 - 1  # torch.manual_seed and numpy's default_rng both take 0 .. 2**63 - 1


def _require(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise GenfillError(f"{key}: must be {rule}, got {value!r}")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_at_least(cls_key: str, value: Any, low: int, high: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    _require(ok, cls_key, f"an integer >= {low}" + (f" and <= {high}" if high is not None else ""), value)


def _positive(key: str, value: Any, allow_none: bool = False, allow_zero: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = _finite(value) and (value >= 0 if allow_zero else value > 0)
    _require(ok, key, "a finite number " + (">= 0" if allow_zero else "> 0") + (" or null" if allow_none else ""),
             value)



@dataclass
class DataConfig:
    name: str = "faces64"  # faces64 (built in) | folder | celeba
    root: str | None = None  # image folder, or the CelebA root holding img_align_celeba/
    size: int = 64  # square side after centre-crop + resize
    channels: int = 3  # 3 = RGB, 1 = grey
    count: int = 20000  # faces64 only: how many faces to draw
    seed: int = 0  # faces64 drawing and the 80/10/10 split
    flip: bool = True  # random horizontal flips while training
    # Where built data and mask banks go: None = the per-user cache ($GENFILL_CACHE, else ~/.cache/genfill on
    # Linux; genfill.usercache), shared by every folder a command runs from; a path pins this config's cache.
    cache_dir: str | None = None
    # Host memory the image cache may take, in MB: a cache file bigger than this is memory-mapped and
    # training reads it in large contiguous chunks on a background thread (chunk-shuffled order);
    # None = no cap (the cache is read into memory whole).
    memory_cap_mb: float | None = None

    def __post_init__(self) -> None:
        # Ranges are checked when a config is built, before any folder is made (cf. issue 12).
        if self.name not in DATASETS:
            raise GenfillError(f"data.name: unknown dataset {self.name!r} (valid: {', '.join(DATASETS)})")
        _int_at_least("data.size", self.size, 8, 4096)
        _require(self.channels in (1, 3), "data.channels", "1 or 3", self.channels)
        _int_at_least("data.count", self.count, 3, 2**31 - 1)
        _int_at_least("data.seed", self.seed, 0, SEED_MAX)
        _require(self.cache_dir is None or (isinstance(self.cache_dir, str) and self.cache_dir != ""
                                             and "\0" not in self.cache_dir),
                 "data.cache_dir", "a folder path or null (the per-user cache)", self.cache_dir)

    @property
    def cache_root(self) -> Path:
        """The folder built data goes to: `cache_dir` when set, else the per-user cache."""
        return Path(self.cache_dir) if self.cache_dir else cache_root()


@dataclass
class MaskConfig:
    kind: str = "mixed"  # see genfill.masks.mask_kinds()
    params: dict[str, Any] = field(default_factory=dict)  # the kind's keywords, e.g. {size: 32, margin: 16}
    eval_seed: int = EVAL_SEED  # validation/test masks are fixed per (eval_seed, image index)
    # Training masks come from a bank of this many masks drawn once at the training size (cached in
    # data.cache_dir/masks/, resident on the device), sampled per step with random flips/transposes/rolls;
    # 0 = draw fresh masks every step. 32768 mixed masks at 64x64 take ~3 s to draw on 2 CPU cores.
    bank_size: int = 32768
    bank_seed: int = 0  # the bank's draw (per-step sampling follows train.seed)

    def __post_init__(self) -> None:
        _int_at_least("masks.eval_seed", self.eval_seed, 0, SEED_MAX)


# Train keys renamed since configs and checkpoints were written (old -> new): the loader reads the old name
# with the same meaning (a model kind's renamed keys are its GenModel.legacy_names).
TRAIN_RENAMED = {"warmup_steps": "lr_warmup_steps"}  # one vocabulary: lr_, kl_ and model.loss_warmup_steps


@dataclass
class TrainConfig:
    epochs: int = 10
    max_steps: int | None = None  # stop after this many optimiser steps (overrides epochs when reached)
    time_budget_s: float | None = None  # stop after this much wall time (the demo trains for minutes)
    batch_size: int = 64
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    lr_d: float | None = None  # discriminator learning rate (GAN-style models); None = lr
    grad_clip: float | None = None  # max global grad norm
    kl_warmup_steps: int = 0  # beta ramps linearly from 0 to its value over these steps
    schedule: str = "constant"  # learning rate: constant | cosine (to 0 at the end of training)
    lr_warmup_steps: int = 0  # the learning rate ramps linearly from lr/lr_warmup_steps to lr over these steps
    ema: float = 0.0  # decay of an exponential moving average of the weights, used for validation, fills
    # and checkpoints (e.g. 0.999); 0 = off
    sync_bn: bool = False  # under torchrun on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm)
    accumulate: int = 1  # split each batch into this many micro-batches (same step, less activation memory)
    amp: bool = True  # bf16 autocast on the fast path
    fast: bool | None = None  # the fast path: bf16 autocast, channels_last, fused Adam, masks on the device,
    # no per-step host sync. None = on for CUDA, off elsewhere; true forces it (CPU: bf16 autocast too)
    compile: bool = False  # torch.compile the model's training forward (pays off on long GPU runs)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    seed: int = 0
    init_from: str | None = None  # fine-tune: start from this checkpoint, run directory or export (same model config)
    # Fine-tune from a self-supervised encoder: the encoder weights (model.encoder_prefixes) of this `genfill
    # pretrain` run or checkpoint (or any run of the same kind and widths), nothing else; not re-read on --resume.
    init_encoder_from: str | None = None
    freeze_encoder_steps: int = 0  # the loaded encoder stays frozen (no gradient, not stepped) for this many steps
    log_every: int = 20
    val_images: int = 512  # validation images scored at the end of each epoch (fixed masks)
    sample_every_epoch: bool = True

    def __post_init__(self) -> None:
        _int_at_least("train.epochs", self.epochs, 1)
        if self.max_steps is not None:
            _int_at_least("train.max_steps", self.max_steps, 1)
        _positive("train.time_budget_s", self.time_budget_s, allow_none=True)
        _int_at_least("train.batch_size", self.batch_size, 1)
        _positive("train.lr", self.lr, allow_zero=True)  # 0 freezes the weights (init_from checks use it)
        _require(len(self.betas) == 2 and all(_finite(b) and 0 <= b < 1 for b in self.betas), "train.betas",
                 "two numbers in [0, 1)", list(self.betas))
        _positive("train.weight_decay", self.weight_decay, allow_zero=True)
        _positive("train.lr_d", self.lr_d, allow_none=True, allow_zero=True)
        _positive("train.grad_clip", self.grad_clip, allow_none=True)
        _int_at_least("train.kl_warmup_steps", self.kl_warmup_steps, 0)
        _int_at_least("train.seed", self.seed, 0, SEED_MAX - 1)  # seed + 1 seeds the mask generator
        _int_at_least("train.log_every", self.log_every, 1)
        _int_at_least("train.val_images", self.val_images, 1)
        _int_at_least("train.freeze_encoder_steps", self.freeze_encoder_steps, 0)
        if self.freeze_encoder_steps and not self.init_encoder_from:
            raise GenfillError("train.freeze_encoder_steps: needs train.init_encoder_from (a pretrained encoder to "
                               "keep frozen)")
        if self.init_from and self.init_encoder_from:
            raise GenfillError("train.init_from and train.init_encoder_from: set one (the whole model, or only "
                               "its encoder)")
        _require(isinstance(self.device, str) and self.device != "", "train.device",
                 "auto, cpu, cuda, cuda:N or mps", self.device)


class RunFolder:
    """What a run config with `name` and `out_dir` fields shares (train and pretrain): the name is checked when
    the config is made, and the run lives in `out_dir/name`."""

    name: str
    out_dir: str

    def __post_init__(self) -> None:
        _check_run_name(self.name, self.out_dir)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


@dataclass
class RunConfig(RunFolder):
    name: str = "run"
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    masks: MaskConfig = field(default_factory=MaskConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"kind": "vae"})
    train: TrainConfig = field(default_factory=TrainConfig)


def _check_run_name(name: Any, out_dir: Any) -> None:
    # The run folder is out_dir/name: a name must be one plain folder name, not a path.
    ok = isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name \
        and "\0" not in name
    _require(ok, "name", "a plain folder name (no '/')", name)
    _require(isinstance(out_dir, str) and out_dir != "" and "\0" not in out_dir, "out_dir", "a folder path", out_dir)


SSL_METHODS = ("simclr", "byol", "barlow")


@dataclass
class SSLConfig:
    """`genfill pretrain`'s method (its paper's loss; heads scaled down for 64x64 and a small encoder)."""

    method: str = "simclr"  # simclr (Chen et al. 2020) | byol (Grill et al. 2020) | barlow (Zbontar et al. 2021)
    temperature: float = 0.5  # simclr: NT-Xent temperature (the paper's CIFAR-10 value; 0.1 at batch 4096)
    tau: float = 0.99  # byol: base EMA decay of the target, raised to 1 by a cosine over training (paper 0.996
    # over 1000 epochs; fewer steps want a faster target)
    lambd: float = 0.0051  # barlow: weight of the off-diagonal (redundancy) term
    # Projection head: hidden widths then the output width, Linear-BatchNorm-ReLU between (SimCLR 2048-128,
    # BYOL 4096-256, Barlow 8192-8192-8192 in the papers)
    projector: list[int] = field(default_factory=lambda: [512, 128])
    predictor: list[int] = field(default_factory=lambda: [512, 128])  # byol: the online predictor, same form
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.method not in SSL_METHODS:
            raise GenfillError(f"ssl.method: {self.method!r} is not one of {', '.join(SSL_METHODS)}")
        _positive("ssl.temperature", self.temperature)
        _require(_finite(self.tau) and 0 <= self.tau < 1, "ssl.tau", "in [0, 1)", self.tau)
        _positive("ssl.lambd", self.lambd, allow_zero=True)
        for key in ("projector", "predictor"):
            widths = getattr(self, key)
            _require(len(widths) >= 1 and all(w >= 1 for w in widths), f"ssl.{key}", "a list of widths >= 1",
                     widths)
        if self.method == "byol" and self.predictor[-1] != self.projector[-1]:
            raise GenfillError(f"ssl.predictor: byol's predictor must end at the projector's width "
                               f"{self.projector[-1]}, got {self.predictor[-1]}")


# train keys `genfill pretrain` does not read: set to anything but their default, they are an error
PRETRAIN_UNUSED = ("lr_d", "kl_warmup_steps", "ema", "sync_bn", "accumulate", "compile", "init_from",
                   "init_encoder_from", "freeze_encoder_steps", "val_images", "sample_every_epoch")


@dataclass
class PretrainConfig(RunFolder):
    """A `genfill pretrain` config: the inpainter whose encoder is pretrained (`model`, the same section a
    `genfill train` config has, so the encoder fits the model that is fine-tuned), the SSL method, the
    loop's settings (the `train` keys; masks are not used)."""

    name: str = "ssl"
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"kind": "unet"})
    ssl: SSLConfig = field(default_factory=SSLConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def apply_overrides(raw: dict, overrides: list[str], aliases: dict[str, str] | None = None) -> dict:
    """Apply `a.b=value` overrides (value parsed as YAML) to a raw config mapping, in place. `aliases` maps a
    renamed key's old dotted name to its new one, so `--set` with the old name sets the new key."""
    for item in overrides:
        if "=" not in item:
            raise GenfillError(f"--set expects key=value, got {item!r}")
        dotted, text = item.split("=", 1)
        keys = (aliases or {}).get(dotted.strip(), dotted.strip()).split(".")
        if not all(k.strip() for k in keys):
            raise GenfillError(f"--set expects a dotted key before '=' (e.g. train.lr=1e-3), got {item!r}")
        try:
            value = load_yaml(text, f"--set {dotted}")
        except YAMLSyntaxError:
            value = text  # not YAML (e.g. a path with a colon): the text itself
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise GenfillError(f"--set {dotted}: {k} is not a section")
        node[keys[-1]] = value
    return raw


def shipped_config_dir() -> Path | None:
    """The presets that ship with genfill: `genfill/configs/` inside the installed package (importlib.resources;
    the wheel carries the repository's configs/ there), or, in a source checkout, the repository's configs/."""
    from importlib.resources import files

    packaged = files("genfill") / "configs"
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    here = Path(__file__).resolve().parent
    repo = here.parents[1]
    if here.parent.name == "src" and (repo / "pyproject.toml").is_file() and (repo / "configs").is_dir():
        return repo / "configs"
    return None


def config_dirs() -> list[Path]:
    """Where a config name is looked up, first match wins: ./configs/ (the user's own), then the shipped ones."""
    local, shipped = Path("configs"), shipped_config_dir()
    dirs = [local] if local.is_dir() else []
    if shipped is not None and not (dirs and local.resolve() == shipped.resolve()):
        dirs.append(shipped)
    return dirs


def resolve_config(name: str | Path, subfolder: str = "", kind: str = "config file") -> Path:
    """A config path, or the name of a config in ./configs/ or shipped with genfill (``unet-faces64`` or
    ``unet-faces64.yaml``); `subfolder` looks in that folder of each (``reproduce`` for presets)."""
    p = Path(name)
    if p.is_file():
        return p
    if p.suffix in (".yaml", ".yml") and len(p.parts) > 1:
        raise GenfillError(f"{kind} not found: {name}")
    stem = p.name if p.suffix else f"{p.name}.yaml"
    for folder in config_dirs():
        if (folder / subfolder / stem).is_file():
            return folder / subfolder / stem
    known = sorted({q.stem for d in config_dirs() for q in (d / subfolder).glob("*.yaml")})
    hint = did_you_mean(Path(stem).stem, known)
    raise GenfillError(f"{kind} not found: {name}{hint} (presets: {', '.join(known) or 'none'}; `genfill configs` "
                       "describes them)")


@dataclass
class ConfigInfo:
    name: str  # what --config / --preset take
    path: Path
    section: str  # "train", "pretrain" or "reproduce"
    summary: str  # one line


def _summary(path: Path, width: int = 100) -> str:
    """A config file's leading comment on one line: its first sentence, cut at a clause boundary to fit `width`."""
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = " ".join(lines).replace("`", "")
    depth, ends, cut = 0, [], len(text)
    for i, ch in enumerate(text):  # clause ends outside parentheses: '. ' ends the sentence, ', ' ': ' '; ' a clause
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and ch in ".:;," and text[i + 1:i + 2] in (" ", ""):
            if ch == ".":
                cut = i
                break
            ends.append(i)
    text = text[:cut]
    if len(text) <= width:
        return text
    fits = [i for i in ends if i <= width - 4 and i >= width // 3]
    return text[:fits[-1]] + " ..." if fits else text[:width - 4].rsplit(" ", 1)[0] + " ..."


def list_configs() -> list[ConfigInfo]:
    """Every config a name reaches (./configs/ first, then the shipped ones): train and pretrain configs,
    then the reproduce presets."""
    seen: dict[tuple[str, str], ConfigInfo] = {}
    for folder in config_dirs():
        for sub in ("", "reproduce"):
            for path in sorted((folder / sub).glob("*.yaml")):
                if (sub, path.stem) in seen:
                    continue  # ./configs/ shadows a shipped config of the same name
                try:
                    raw = read_yaml(path)
                except GenfillError:
                    raw = {}
                section = "reproduce" if sub else ("pretrain" if isinstance(raw, dict) and "ssl" in raw else "train")
                seen[(sub, path.stem)] = ConfigInfo(path.stem, path, section, _summary(path))
    order = {"train": 0, "pretrain": 1, "reproduce": 2}
    return sorted(seen.values(), key=lambda c: (order[c.section], c.name))


def save_config(cfg: RunConfig, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
