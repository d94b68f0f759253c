"""genfill pretrain (SimCLR, BYOL, Barlow Twins on an inpainter's encoder) and fine-tuning from it:
train.init_encoder_from moves exactly the encoder, train.freeze_encoder_steps holds it, resume keeps both."""

import json

import pytest
import torch

from tests.conftest import tiny_raw
from genfill.cli import main
from genfill.config import SSLConfig
from genfill.loadconfig import build_config, build_pretrain_config
from genfill.errors import GenfillError
from genfill.io import load_checkpoint
from genfill.models import build_model, load_encoder
from genfill.pretrain import pretrain
from genfill.train import train

TINY_UNET = {"kind": "unet", "widths": [8, 16], "prior": "harmonic", "prior_iters": 2}
TINY_VAE = {"kind": "vae", "channels": [8, 16], "latent_dim": 8}
HEADS = {"simclr": {}, "byol": {"predictor": [16, 8]}, "barlow": {"projector": [16, 16, 8]}}


@pytest.fixture
def make_pre(tmp_path, cache_root):
    """make_pre(method, model=..., name=..., **train) -> a tiny PretrainConfig (60 faces at 32x32, 2 steps)."""

    def make(method="simclr", model=None, name=None, **train_keys):
        raw = tiny_raw(tmp_path / "runs", cache_root, model or TINY_UNET)
        raw.pop("masks")
        raw["name"] = name or f"ssl-{method}"
        raw["ssl"] = {"method": method, "projector": [16, 8], **HEADS[method]}
        raw["train"] = {"epochs": 1, "max_steps": 2, "batch_size": 8, "log_every": 1, **train_keys}
        return build_pretrain_config(raw)

    return make


def encoder_and_rest(model_or_state, model):
    state = model_or_state if isinstance(model_or_state, dict) else model_or_state.state_dict()
    enc = {k: v for k, v in state.items() if model.is_encoder_key(k)}
    return enc, {k: v for k, v in state.items() if not model.is_encoder_key(k)}


@pytest.mark.parametrize("method", ["simclr", "byol", "barlow"])
def test_pretrain_writes_a_run_and_resumes_like_a_straight_run(make_pre, method, monkeypatch):
    # BYOL's target decay follows a cosine over the whole run, so a 2-step run's differs from a 3-step run's;
    # a constant decay here compares the resume mechanics alone (the schedule has its own test).
    monkeypatch.setattr("genfill.pretrain.byol_tau", lambda base, step, total: base)
    cfg = make_pre(method)
    res = pretrain(cfg, verbose=False)
    run = cfg.run_dir
    assert res.step == 2 and res.last["loss"] > 0
    for name in ("config.yaml", "checkpoints/last.pt", "metrics.jsonl", "curves.png", "samples/views.png"):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all("z_std" in r for r in rows)
    ckpt = load_checkpoint(run)
    assert ckpt["kind"] == "unet" and ckpt["pretrain"]["method"] == method
    with pytest.raises(GenfillError, match="already holds a run"):
        pretrain(cfg, verbose=False)

    res = pretrain(make_pre(method, max_steps=3), resume=True, verbose=False)
    assert res.step == 3
    straight = make_pre(method, name="straight", max_steps=3)
    pretrain(straight, verbose=False)
    a, b = load_checkpoint(run), load_checkpoint(straight.run_dir)
    for k in a["model"]:
        assert torch.allclose(a["model"][k].float(), b["model"][k].float(), atol=1e-6), k
    for k in a["ssl_heads"]:  # projector, predictor, BYOL's target: all continued exactly
        assert torch.allclose(a["ssl_heads"][k].float(), b["ssl_heads"][k].float(), atol=1e-6), k
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_byol_target_decay_rises_from_tau_to_one():
    from genfill.pretrain import byol_tau

    taus = [byol_tau(0.99, k, 10) for k in range(11)]
    assert taus[0] == pytest.approx(0.99) and taus[-1] == pytest.approx(1.0)
    assert taus == sorted(taus) and taus[5] == pytest.approx(0.995)


def test_resume_refuses_another_method(make_pre):
    pretrain(make_pre("simclr", name="m"), verbose=False)
    with pytest.raises(GenfillError, match="ssl.method"):
        pretrain(make_pre("barlow", name="m", max_steps=3), resume=True, verbose=False)


@pytest.mark.parametrize("model", [TINY_UNET, TINY_VAE], ids=["unet", "vae"])
def test_init_encoder_moves_exactly_the_encoder(make_pre, make_cfg, model):
    pre = make_pre("barlow", model=model)
    pretrain(pre, verbose=False)
    pretrained = load_checkpoint(pre.run_dir)["model"]
    cfg = make_cfg(model=model)
    torch.manual_seed(0)
    fresh = build_model(cfg.model, 32, 3)
    torch.manual_seed(0)
    loaded = build_model(cfg.model, 32, 3)
    load_encoder(loaded, pre.run_dir)
    enc, rest = encoder_and_rest(loaded, loaded)
    fresh_enc, fresh_rest = encoder_and_rest(fresh, fresh)
    assert enc and rest and set(enc) == set(fresh_enc)
    assert any(not torch.equal(enc[k], fresh_enc[k]) for k in enc)  # pretraining moved the encoder
    for k, v in enc.items():
        assert torch.equal(v, pretrained[k]), k
    for k, v in rest.items():
        assert torch.equal(v, fresh_rest[k]), k


def test_init_encoder_checks_shapes_and_kind(make_pre, make_cfg):
    pre = make_pre("simclr")
    pretrain(pre, verbose=False)
    wider = build_model({**TINY_UNET, "widths": [8, 32]}, 32, 3)
    with pytest.raises(GenfillError, match=r"net\.down\.0\.weight is \(16, 8, 3, 3\)"):
        load_encoder(wider, pre.run_dir)
    with pytest.raises(GenfillError, match="holds a unet encoder, this model is a vae"):
        load_encoder(build_model(TINY_VAE, 32, 3), pre.run_dir)
    with pytest.raises(GenfillError, match="checkpoint not found"):
        load_encoder(build_model(TINY_UNET, 32, 3), pre.run_dir / "nope.pt")


def test_fine_tune_freezes_then_trains_the_encoder_and_resume_keeps_it(make_pre, make_cfg):
    pre = make_pre("simclr")
    pretrain(pre, verbose=False)
    model = build_model(TINY_UNET, 32, 3)
    pretrained, _ = encoder_and_rest(load_checkpoint(pre.run_dir)["model"], model)
    tune = {"init_encoder_from": str(pre.run_dir), "freeze_encoder_steps": 2, "max_steps": 2, "lr": 1e-2}
    cfg = make_cfg(model=TINY_UNET, name="ft", train=tune)
    torch.manual_seed(cfg.train.seed)
    _, fresh_rest = encoder_and_rest(build_model(cfg.model, 32, 3), model)
    train(cfg, verbose=False)
    enc, rest = encoder_and_rest(load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")["model"], model)
    for k in enc:  # frozen for both steps
        assert torch.equal(enc[k], pretrained[k]), k
    assert any(not torch.equal(rest[k], fresh_rest[k]) for k in rest if rest[k].is_floating_point())  # decoder moved
    train(make_cfg(model=TINY_UNET, name="ft", train={**tune, "max_steps": 4}), resume=True, verbose=False)
    after, _ = encoder_and_rest(load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")["model"], model)
    assert any(not torch.equal(after[k], pretrained[k]) for k in after)  # steps 3 and 4 trained it


def test_resume_does_not_reload_the_encoder(make_pre, make_cfg):
    pre = make_pre("simclr")
    pretrain(pre, verbose=False)
    model = build_model(TINY_UNET, 32, 3)
    pretrained, _ = encoder_and_rest(load_checkpoint(pre.run_dir)["model"], model)
    tune = {"init_encoder_from": str(pre.run_dir), "max_steps": 2, "lr": 1e-2}
    cfg = make_cfg(model=TINY_UNET, name="ft", train=tune)
    train(cfg, verbose=False)
    trained, _ = encoder_and_rest(load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")["model"], model)
    assert any(not torch.equal(trained[k], pretrained[k]) for k in trained)
    # lr 0: the resumed step moves nothing, so the encoder is exactly what the first part trained
    train(make_cfg(model=TINY_UNET, name="ft", train={**tune, "max_steps": 3, "lr": 0.0}), resume=True,
          verbose=False)
    after, _ = encoder_and_rest(load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")["model"], model)
    for k in after:
        assert torch.equal(after[k], trained[k]), k


def test_config_rules(make_pre, tmp_path, cache_root):
    def run_cfg(model=None, **train_keys):
        return build_config(tiny_raw(tmp_path / "runs", cache_root, model, train=train_keys))

    with pytest.raises(GenfillError, match="freeze_encoder_steps: needs train.init_encoder_from"):
        run_cfg(freeze_encoder_steps=3)
    with pytest.raises(GenfillError, match="set one"):
        run_cfg(init_from="a", init_encoder_from="b")
    with pytest.raises(GenfillError, match="freeze_encoder_steps"):
        run_cfg(init_encoder_from="b", freeze_encoder_steps=-1)
    with pytest.raises(GenfillError, match="has no encoder to load"):
        run_cfg(model={"kind": "vqvae", "channels": [8, 16]}, init_encoder_from="b")
    with pytest.raises(GenfillError, match="does not use it"):
        make_pre("simclr", ema=0.9)
    with pytest.raises(GenfillError, match="byol's predictor must end"):
        SSLConfig(method="byol", projector=[16, 8], predictor=[16, 4])
    with pytest.raises(GenfillError, match="pretrain` config"):
        build_config({"ssl": {"method": "simclr"}})


def test_cli_pretrain_bad_configs_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    cases = [
        ("ssl:\n  method: moco\n", "ssl.method"),
        ("model:\n  kind: vqvae\nssl:\n  method: simclr\n", "no encoder to pretrain"),
        ("masks:\n  kind: square\nmodel:\n  kind: unet\n", "genfill train` config"),
        ("ssl:\n  augment:\n    blur_kernel: 4\n", "blur_kernel"),
    ]
    for text, message in cases:
        bad.write_text(text)
        assert main(["pretrain", "--config", str(bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert main(["pretrain", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_cli_pretrain_trains_resumes_and_says_when_done(make_pre, tmp_path, capsys):
    import yaml

    from genfill.config import to_dict

    path = tmp_path / "pre.yaml"
    path.write_text(yaml.safe_dump(to_dict(make_pre("simclr", log_every=5))))
    assert main(["pretrain", "-c", str(path), "-q"]) == 0
    assert "pretrained 2 steps" in capsys.readouterr().out
    # step 3 is not a logged step (log_every 5): the summary still has its numbers
    assert main(["pretrain", "-c", str(path), "-q", "--resume", "--set", "train.max_steps=3"]) == 0
    out = capsys.readouterr().out
    assert "pretrained 3 steps" in out and "loss" in out
    assert main(["pretrain", "-c", str(path), "-q", "--resume", "--set", "train.max_steps=3"]) == 0
    assert "nothing to do" in capsys.readouterr().out
