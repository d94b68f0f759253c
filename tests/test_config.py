from pathlib import Path

import pytest
import yaml

from genfill.config import RunConfig, apply_overrides, from_dict, to_dict
from genfill.loadconfig import build_config, load_config
from genfill.errors import GenfillError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_are_valid():
    cfg = build_config({})
    assert cfg.data.name == "faces64" and cfg.model["kind"] == "vae"
    assert cfg.model["latent_dim"] == 128  # filled from the VAE's own defaults


@pytest.mark.parametrize("raw, key", [
    ({"trian": {}}, "trian"),
    ({"train": {"lr_rate": 1}}, "train.lr_rate"),
    ({"model": {"kind": "vae", "latent": 3}}, "model.latent"),
    ({"data": {"sise": 3}}, "data.sise"),
])
def test_unknown_keys_are_named(raw, key):
    with pytest.raises(GenfillError, match=f"unknown config key {key}"):
        build_config(raw)


@pytest.mark.parametrize("raw, key", [
    ({"train": {"lr": "fast"}}, "train.lr"),
    ({"train": {"epochs": 2.5}}, "train.epochs"),
    ({"train": {"amp": "yes"}}, "train.amp"),
    ({"train": {"betas": [0.9]}}, "train.betas"),
    ({"model": {"kind": "vae", "channels": ["a"]}}, r"model.channels\[0\]"),
    ({"data": "faces"}, "data"),
])
def test_wrong_types_are_named(raw, key):
    with pytest.raises(GenfillError, match=key):
        build_config(raw)


# One bad value per registered family: load_config rejects it, naming the key, before any data is touched
# (the data folder below does not exist, and no checkpoint is opened).
BAD_MODEL_VALUES = {
    "vae": ({"output": "relu"}, "model.output"),
    "beta_vae": ({"likelihood": "bce"}, "model.likelihood"),
    "avae": ({"gan_loss": "wasserstein"}, "model.gan_loss"),
    "vqvae": ({"decay": 1.5}, "model.decay"),
    "vqvae_prior": ({"vqvae": "runs/nowhere", "kernel": 4}, "model.kernel"),
    "gan": ({"variant": "patch"}, "model.variant"),
    "unet": ({"prior": "median"}, "model.prior"),
    "sampler": ({"train_samples": 1}, "model.train_samples"),
}


def test_every_family_has_a_bad_value_case():
    from genfill.models import REGISTRY

    assert set(BAD_MODEL_VALUES) == set(REGISTRY)


@pytest.mark.parametrize("kind", sorted(BAD_MODEL_VALUES))
def test_bad_model_values_fail_at_load_time(kind, tmp_path):
    bad, key = BAD_MODEL_VALUES[kind]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"data": {"name": "folder", "root": str(tmp_path / "no-such-folder")},
                                    "model": {"kind": kind, **bad}}))
    with pytest.raises(GenfillError, match=key):
        load_config(path)
    assert not (tmp_path / "no-such-folder").exists()


def test_unknown_model_kind():
    with pytest.raises(GenfillError, match="unknown model kind 'vea'"):
        build_config({"model": {"kind": "vea"}})


def test_int_accepted_for_float_and_none_for_optional():
    cfg = from_dict(RunConfig, {"train": {"lr": 1, "max_steps": None}})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float) and cfg.train.max_steps is None


def test_overrides_parse_yaml_scalars():
    raw = apply_overrides({}, ["train.lr=1e-3", "model.kind=vae", "model.channels=[4, 8]", "name=x",
                               "train.grad_clip=null"])
    cfg = build_config(raw)
    assert cfg.train.lr == 1e-3 and cfg.model["channels"] == [4, 8] and cfg.name == "x"
    assert cfg.train.grad_clip is None
    with pytest.raises(GenfillError, match="key=value"):
        apply_overrides({}, ["train.lr"])


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(CONFIGS / "vae-faces64.yaml", ["train.epochs=3"])
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    again = load_config(path)
    assert to_dict(again) == to_dict(cfg) and again.train.epochs == 3


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path):
    from genfill.config import read_yaml
    from genfill.loadconfig import load_pretrain_config

    (load_pretrain_config if "ssl" in read_yaml(path) else load_config)(path)


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(GenfillError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(GenfillError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_mask_params_checked_at_load():
    with pytest.raises(GenfillError):
        build_config({"masks": {"kind": "square", "params": {"sizes": 3}}})
    with pytest.raises(GenfillError):
        build_config({"masks": {"kind": "blob"}})


@pytest.mark.parametrize("text", ["?\n", "1: 2\n", "data: {null: 3}\n"])
def test_keys_that_are_not_names_are_refused(tmp_path, text):
    """YAML lets a key be null or a number; the loader says so in one line (it used to raise TypeError)."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(GenfillError, match="keys must be names"):
        load_config(path)


@pytest.mark.parametrize("item", ["=", "=3", "train.=3", ".lr=3", "train..lr=3"])
def test_set_needs_a_dotted_key(item):
    with pytest.raises(GenfillError, match="--set expects a dotted key"):
        apply_overrides({}, [item])
