"""Exports: safetensors + config.json rebuild the model without its checkpoint; ONNX fills match torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import genfill
from genfill.errors import GenfillError
from genfill.models import build_model, save_model

pytest.importorskip("onnxruntime")

FAMILIES = {
    "vae": {"kind": "vae", "channels": [8, 16], "latent_dim": 8},
    "beta_vae": {"kind": "beta_vae", "channels": [8, 16], "latent_dim": 8},
    "treevi": {"kind": "vae", "channels": [8, 16], "latent_dim": 8, "posterior": "treevi"},
    "avae": {"kind": "avae", "channels": [8, 16], "latent_dim": 8, "d_channels": [8, 16]},
    "vqvae": {"kind": "vqvae", "channels": [8, 16], "res_blocks": 1, "res_channels": 8, "codebook_size": 16,
              "code_dim": 8},
    "gan-whole": {"kind": "gan", "variant": "whole", "base": 4, "d_base": 4},
    "gan-context": {"kind": "gan", "variant": "context", "base": 4, "crop_size": 16, "d_base": 4},
}


def _checkpoint(tmp_path, spec: dict, size: int = 32, name: str = "m.pt", **extra):
    torch.manual_seed(0)
    model = build_model(spec, size, 3)
    # Non-trivial BatchNorm statistics, so a wrong eval/train mode would show.
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    path = tmp_path / name
    save_model(path, model, optim={"big": torch.zeros(1000)}, **extra)
    return path


def _spec(tmp_path, family: str) -> dict:
    if family == "vqvae_prior":
        vq = _checkpoint(tmp_path, FAMILIES["vqvae"], name="vq.pt")
        return {"kind": "vqvae_prior", "vqvae": str(vq), "dim": 8, "layers": 2, "head": 16}
    return FAMILIES[family]


@pytest.mark.parametrize("family", [*FAMILIES, "vqvae_prior"])
def test_export_onnx_parity_and_reload(tmp_path, family, monkeypatch):
    from genfill.export import export_model, load_export

    src = _checkpoint(tmp_path, _spec(tmp_path, family))
    res = export_model(src, tmp_path / "exp", onnx=True)
    assert {"model.safetensors", "config.json", "model.onnx"} <= set(res.sizes)
    assert res.onnx_max_abs is not None and res.onnx_max_abs <= 1e-3, res.onnx_max_abs
    assert res.sizes["model.safetensors"] < res.sizes["source .pt"]

    from genfill.models import load_model

    ref, _ = load_model(src)
    # the export loads without reading any pickle (no checkpoint, no optimiser state)
    monkeypatch.setattr(torch, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("torch.load")))
    model, config = load_export(tmp_path / "exp")
    assert config["kind"] == _spec(tmp_path, family)["kind"] if family != "vqvae_prior" else True
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    m = torch.zeros(2, 1, 32, 32)
    m[:, :, 8:20, 10:22] = 1
    assert torch.equal(model.fill(x, m), ref.eval().fill(x, m))
    painter = genfill.load(tmp_path / "exp", device="cpu")
    img = (np.random.default_rng(0).random((50, 70, 3))).astype(np.float32)
    hole = np.zeros((50, 70), bool)
    hole[10:30, 20:40] = True
    assert painter.fill(img, hole).shape == img.shape


def test_half_export_is_smaller_and_close(tmp_path):
    from genfill.export import export_model, load_export

    src = _checkpoint(tmp_path, FAMILIES["vae"])
    full = export_model(src, tmp_path / "fp32")
    half = export_model(src, tmp_path / "fp16", half=True, onnx=True)
    assert half.sizes["model.safetensors"] < 0.6 * full.sizes["model.safetensors"]
    assert half.onnx_max_abs <= 1e-3
    a, _ = load_export(tmp_path / "fp32")
    b, cfg = load_export(tmp_path / "fp16")
    assert cfg["dtype"] == "float16" and next(b.parameters()).dtype == torch.float32
    x, m = torch.rand(1, 3, 32, 32) * 2 - 1, torch.zeros(1, 1, 32, 32)
    m[..., 5:15, 5:15] = 1
    assert (a.fill(x, m) - b.fill(x, m)).abs().max() < 0.05


def test_export_takes_ema_weights_and_cli(tmp_path, capsys):
    from genfill.cli import main
    from genfill.export import load_export

    torch.manual_seed(1)
    other = build_model(FAMILIES["vae"], 32, 3).state_dict()
    src = _checkpoint(tmp_path, FAMILIES["vae"], ema=other)
    assert main(["export", str(src), "-o", str(tmp_path / "e"), "--onnx"]) == 0
    out = capsys.readouterr().out
    assert "model.safetensors" in out and "onnx max abs" in out
    model, cfg = load_export(tmp_path / "e")
    assert cfg["weights"] == "ema"
    assert torch.equal(model.state_dict()["to_stats.weight"], other["to_stats.weight"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{}")
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(GenfillError, match="not a genfill export"):
        load_export(tmp_path / "bad")


def test_train_init_from_a_checkpoint_or_an_export(make_cfg, tmp_path):
    from genfill.export import export_model
    from genfill.io import load_checkpoint
    from genfill.train import train

    first = train(make_cfg(name="first"), verbose=False).run_dir
    export_model(first, tmp_path / "exp")
    src = load_checkpoint(first)["model"]
    for i, start in enumerate([first, tmp_path / "exp"]):
        cfg = make_cfg(name=f"tuned{i}", train={"init_from": str(start), "lr": 0.0, "max_steps": 1})
        run = train(cfg, verbose=False).run_dir
        tuned = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
        assert torch.equal(tuned["to_stats.weight"], src["to_stats.weight"])
    wrong = make_cfg(name="wrong", model={"kind": "vae", "channels": [8, 16], "latent_dim": 4},
                     train={"init_from": str(first)})
    with pytest.raises(GenfillError, match="train.init_from: to_stats.weight is"):
        train(wrong, verbose=False)


def _preset_model() -> dict:
    from genfill.config import resolve_config
    from genfill.typed import read_yaml

    return read_yaml(resolve_config("unet-faces64"))["model"]


@pytest.mark.parametrize("spec", [
    {"kind": "unet", "widths": [8, 16, 32], "prior": "biharmonic", "smooth_iters": 40},
    {"kind": "unet", "widths": [8, 16, 32], "prior": "biharmonic", "smooth_iters": 40, "unshuffle": 2},
    "preset",  # the net unet-faces64 trains (and the demo exports)
])
def test_unet_onnx_is_a_compact_graph_at_any_size_with_its_contract_inside(tmp_path, spec):
    """The thin-plate prior's loops stay ONNX Loops (the unrolled trace had ~137k nodes), H and W are dynamic
    (parity at S x S and 1.5 S x 2 S, checked by export_model), and the model says what goes in and out."""
    import onnx
    import onnxruntime as ort

    from genfill.export import export_model

    spec, size = (_preset_model(), 64) if spec == "preset" else (spec, 32)
    src = _checkpoint(tmp_path, spec, size=size)
    multiple = build_model(spec, size, 3).size_multiple
    res = export_model(src, tmp_path / "exp", onnx=True)
    assert res.onnx_max_abs is not None and res.onnx_max_abs <= 1e-3, res.onnx_max_abs
    proto = onnx.load(str(tmp_path / "exp" / "model.onnx"))

    def count(graph) -> int:
        return sum(1 + sum(count(a.g) for a in n.attribute if a.type == onnx.AttributeProto.GRAPH)
                   for n in graph.node)

    assert count(proto.graph) < 5000
    assert sum(n.op_type == "Loop" for n in proto.graph.node) >= 2  # Jacobi sweeps and CG iterations
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["genfill.kind"] == "unet" and meta["size_multiple"] == str(multiple) and "[-1, 1]" in meta["image"]
    assert "exactly 0" in meta["mask"] and "mask" in proto.doc_string
    assert {i.name: i.doc_string for i in proto.graph.input}["mask"] == meta["mask"]
    session = ort.InferenceSession(str(tmp_path / "exp" / "model.onnx"), providers=["CPUExecutionProvider"])
    h, w = 6 * multiple, 10 * multiple  # not square: a size the export was not traced at
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, h, w)).astype(np.float32)
    m = np.zeros((1, 1, h, w), np.float32)
    m[..., 8:16, 10:30] = 1
    out = session.run(None, {"image": x, "mask": m})[0]
    assert out.shape == x.shape and np.array_equal(out[m.repeat(3, 1) == 0], x[m.repeat(3, 1) == 0])
