"""genfill.resolve: one resolver from a peer's name, a run, a checkpoint or an export to a filler, so the API,
`genfill eval` and the reports' pictures read a name the same way and fail on a bad one with the same line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import genfill
from genfill.cli import main
from genfill.config import to_dict
from genfill.errors import GenfillError
from genfill.evaljob import evaluate_specs, load_eval
from genfill.peers import PEERS
from genfill.resolve import fillers_of, resolve


@pytest.fixture
def tiny_run(make_cfg):
    from genfill.train import train

    cfg = make_cfg()
    train(cfg, verbose=False)
    return cfg


def test_a_bad_name_is_the_same_line_for_the_api_and_eval(tmp_path, capsys):
    with pytest.raises(GenfillError) as err:
        genfill.load("telia")
    line = str(err.value)
    assert line.startswith("run not found: telia (did you mean telea?)") and "neither a peer" in line
    assert main(["eval", "-c", "telia", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == f"genfill: error: {line}"
    with pytest.raises(GenfillError, match="run not found: .*nope is neither a peer"):
        resolve(tmp_path / "nope")
    with pytest.raises(GenfillError, match="checkpoint not found: .*nope.pt$"):
        genfill.load(tmp_path / "nope.pt")


def test_a_peer_is_named_by_a_string_and_a_path_is_a_path(tmp_path, monkeypatch):
    peer = resolve("biharmonic")
    assert peer.fill is PEERS["biharmonic"] and peer.kind == "peer" and peer.model is None
    assert peer.parameters is None
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GenfillError, match="run not found"):
        resolve(Path("biharmonic"))  # no such file here: a Path never means the peer


def test_runs_checkpoints_and_exports_resolve_to_the_same_model(tiny_run, tmp_path):
    from genfill.export import export_model

    run = resolve(str(tiny_run.run_dir), "cpu")
    ckpt = resolve(Path(run.source), "cpu")
    export_model(tiny_run.run_dir, tmp_path / "exp")
    exp = resolve(tmp_path / "exp", "cpu")
    assert run.name == tiny_run.name and run.kind == tiny_run.model["kind"] == exp.kind
    assert run.data is not None and exp.data is None and exp.name == "exp"
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    m = torch.zeros(2, 1, 32, 32)
    m[:, :, 8:20, 10:22] = 1
    with torch.no_grad():
        assert torch.equal(run.fill(x, m), ckpt.fill(x, m))
        assert torch.equal(run.fill(x, m), exp.fill(x, m))  # the same float32 weights
    assert run.parameters == run.model.num_parameters() > 0


def test_eval_scores_an_export_and_pictures_re_resolve_what_still_exists(tiny_run, tmp_path):
    from genfill.export import export_model

    export_model(tiny_run.run_dir, tmp_path / "exp")
    path = evaluate_specs([str(tmp_path / "exp"), "telea"], tmp_path / "ev", data=to_dict(tiny_run.data),
                          masks="square", n=4, lpips=False, fid=False, gallery=0, verbose=False, report=False)
    doc, _ = load_eval(path)
    assert doc["methods"]["exp"]["kind"] == tiny_run.model["kind"] and doc["methods"]["telea"]["kind"] == "peer"
    given = {"telea": PEERS["mean"]}
    fills = fillers_of(doc, "cpu", given)
    assert fills["telea"] is PEERS["mean"] and fills["exp"].__self__.kind == tiny_run.model["kind"]
    doc["methods"]["exp"]["source"] = str(tmp_path / "gone")
    assert fillers_of(doc, "cpu") == {"exp": None, "telea": PEERS["telea"]}
