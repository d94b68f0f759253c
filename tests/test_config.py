import json
from pathlib import Path

import pytest
import yaml

from genfill.config import RunConfig, apply_overrides, from_dict, to_dict
from genfill.loadconfig import build_config, load_config
from genfill.errors import GenfillError
from tests.conftest import one_line_error

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


def _old_names(tmp_path, train_key="warmup_steps", model_key="warmup_steps"):
    raw = {"name": "old", "out_dir": str(tmp_path), "model": {"kind": "unet", "widths": [8, 16], model_key: 5},
           "train": {"schedule": "constant", train_key: 4}}
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_old_warmup_names_load_with_the_same_meaning(tmp_path):
    """One warm-up vocabulary (train.lr_warmup_steps, train.kl_warmup_steps, model.loss_warmup_steps): a config
    written with the old names (train.warmup_steps, model.warmup_steps) still loads, meaning the same."""
    from genfill.runs import lr_factor

    old = load_config(_old_names(tmp_path))
    new = load_config(_old_names(tmp_path, "lr_warmup_steps", "loss_warmup_steps"))
    assert to_dict(old) == to_dict(new)
    assert old.train.lr_warmup_steps == 4 and old.model["loss_warmup_steps"] == 5 and "warmup_steps" not in old.model
    assert [lr_factor(old.train, s, 100) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    # --set with an old name sets the new key, over a config that uses the new names
    again = load_config(_old_names(tmp_path, "lr_warmup_steps", "loss_warmup_steps"),
                        ["train.warmup_steps=7", "model.warmup_steps=9"])
    assert again.train.lr_warmup_steps == 7 and again.model["loss_warmup_steps"] == 9
    # a model kind without the renamed key still refuses it
    with pytest.raises(GenfillError, match="unknown config key model.warmup_steps"):
        build_config({"model": {"kind": "vae", "warmup_steps": 3}})


def test_old_and_new_warmup_name_together_are_refused(tmp_path):
    for raw in ({"train": {"warmup_steps": 2, "lr_warmup_steps": 3}},
                {"model": {"kind": "sampler", "warmup_steps": 2, "loss_warmup_steps": 3}}):
        with pytest.raises(GenfillError, match="old name of"):
            build_config(raw)


def test_old_warmup_name_in_a_pretrain_config(tmp_path):
    from genfill.loadconfig import load_pretrain_config

    cfg = load_pretrain_config(CONFIGS / "ssl-simclr-faces64.yaml", ["train.warmup_steps=11"])
    assert cfg.train.lr_warmup_steps == 11
    path = tmp_path / "ssl.yaml"
    path.write_text(yaml.safe_dump({"ssl": {"method": "simclr"}, "train": {"warmup_steps": 6}}))
    assert load_pretrain_config(path).train.lr_warmup_steps == 6


# ---- issue 12's probes: settings range-checked at load, a mistyped preset ----------------------------


@pytest.mark.parametrize("key,value", [
    ("batch_size", 0), ("batch_size", -4), ("lr", -1), ("lr", float("nan")), ("betas", [2, 3]), ("log_every", 0),
    ("val_images", 0), ("epochs", 0), ("max_steps", 0), ("weight_decay", -1), ("grad_clip", 0), ("seed", -1),
    ("time_budget_s", 0), ("kl_warmup_steps", -1), ("lr_d", -1),
])
def test_training_settings_are_range_checked_at_load(make_cfg, key, value, tmp_path, capsys):
    with pytest.raises(GenfillError, match=f"train.{key}"):
        make_cfg(train={key: value})
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(to_dict(make_cfg())))
    one_line_error(capsys, ["train", "-c", str(cfg), "--set", f"train.{key}={json.dumps(value).replace('NaN', '.nan')}",
                            "--quiet"], f"train.{key}")
    assert not (tmp_path / "runs").exists()  # no half-made run folder


@pytest.mark.parametrize("section,key,value", [("data", "size", 4), ("data", "channels", 2), ("data", "count", 0),
                                               ("data", "name", "cifar"), ("masks", "eval_seed", -1)])
def test_data_settings_are_range_checked(make_cfg, section, key, value):
    with pytest.raises(GenfillError, match=f"{section}.{key}"):
        make_cfg(**{section: {key: value}})


def test_mistyped_preset_lists_the_presets(capsys):
    err = one_line_error(capsys, ["train", "-c", "vae-fces64"], "presets:")
    assert "vae-faces64" in err
