from pathlib import Path

import pytest
import yaml

from genfill.config import RunConfig, apply_overrides, build_config, from_dict, load_config, to_dict
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
    load_config(path)


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
