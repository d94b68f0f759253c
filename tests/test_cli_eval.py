"""`genfill eval | compare | reproduce` in-process on the tiny faces: files written, numbers consistent,
unfair comparisons refused, and every picture a report references present on disk."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch
import yaml

import genfill.metrics.fid_eval as fid_eval
from genfill.cli import main
from genfill.report import referenced_files
from tests.conftest import check_report_structure, tiny_raw


@pytest.fixture
def tiny_run(make_cfg):
    from genfill.train import train

    cfg = make_cfg()
    train(cfg, verbose=False)
    return cfg


@pytest.fixture
def data_yaml(tmp_path, cache_root) -> Path:
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump({"data": tiny_raw(tmp_path, cache_root)["data"]}))
    return path


@pytest.fixture
def fake_inception(monkeypatch):
    """A cheap stand-in for InceptionV3 (the real one takes ~1 s per image on a CPU)."""
    proj = torch.randn(3 * 32 * 32, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    monkeypatch.setattr(fid_eval, "_try_inception", lambda device: (lambda x: x.flatten(1).double().cpu() @ proj))


def _check_report(page: Path) -> list[str]:
    refs = referenced_files(page.read_text())
    missing = [r for r in refs if not (page.parent / r).is_file()]
    assert not missing, f"{page} references missing files {missing}"
    return refs


def test_eval_peer_writes_json_and_csvs(tmp_path, data_yaml, capsys):
    out = tmp_path / "e"
    rc = main(["eval", "-c", "mean", "--data", str(data_yaml), "--masks", "thin,square", "-n", "4", "-o", str(out),
               "--quiet", "--no-lpips"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert re.search(r"^mean +thin +\d+% +\d+\.\d\d\*", printed, re.M)  # the terminal table: a row per kind
    doc = json.loads((out / "eval.json").read_text())
    assert doc["protocol"]["n"] == 4 and list(doc["protocol"]["masks"]) == ["thin", "square"]
    entry = doc["methods"]["mean"]
    assert entry["summary"]["all"]["count"] == 8 and entry["gallery"] == "failures_mean.png"
    assert (out / "failures_mean.png").is_file()
    rows = list(csv.DictReader((out / "records.csv").open()))
    assert len(rows) == 8 and {r["mask"] for r in rows} == {"thin", "square"}
    mean_psnr = sum(float(r["psnr"]) for r in rows) / 8
    assert mean_psnr == pytest.approx(entry["summary"]["all"]["psnr"], rel=1e-9)
    summary = list(csv.DictReader((out / "summary.csv").open()))
    buckets = [r for r in summary if r["group"] == "bucket"]
    assert sum(int(r["count"]) for r in buckets) == 8


def test_eval_checkpoint_defaults_to_its_own_data_and_reports_vae_extras(tiny_run, tmp_path, fake_inception):
    rc = main(["eval", "-c", str(tiny_run.run_dir), "--masks", "square", "-n", "6", "--fid", "--quiet"])
    assert rc == 0
    out = tiny_run.run_dir / "eval"  # the default output folder of a run
    doc = json.loads((out / "eval.json").read_text())
    entry = doc["methods"]["tiny"]
    assert doc["protocol"]["data_key"] == "faces64-32-3-60-0"
    assert entry["kind"] == "vae" and entry["parameters"] > 0
    assert {"loss", "recon", "kl"} <= set(entry["test_loss"])
    assert entry["fid"] >= 0 and "sample_fid" in entry and entry["sample_fid"]["fid"] >= 0
    assert "lpips" in entry["summary"]["all"]


def test_eval_unknown_method_is_a_one_line_error(tmp_path, capsys):
    assert main(["eval", "-c", str(tmp_path / "nope"), "--quiet"]) == 2
    assert "neither a peer" in capsys.readouterr().err


def test_compare_evals_runs_and_peers(tiny_run, tmp_path, data_yaml, capsys):
    common = ["--masks", "thin,square", "-n", "4", "--quiet"]
    assert main(["eval", "-c", "telea", "--data", str(data_yaml), "-o", str(tmp_path / "e_telea"), *common]) == 0
    out = tmp_path / "cmp"
    # an eval.json, a run directory (evaluated on the fly under the same protocol) and the other peers
    rc = main(["compare", str(tmp_path / "e_telea" / "eval.json"), str(tiny_run.run_dir), "--peers", "-o", str(out),
               "--quiet"])
    assert rc == 0
    doc = json.loads((out / "compare.json").read_text())
    assert set(doc["methods"]) == {"telea", "tiny", "ns", "biharmonic", "patchmatch", "mean"}  # telea not evaluated twice
    md = (out / "comparison.md").read_text()
    assert "by hole ratio" in md and "| tiny | vae |" in md
    refs = _check_report(out / "comparison.html")
    assert "quality_speed.png" in refs and "galleries/tiny.png" in refs


def test_compare_refuses_different_holes(tmp_path, data_yaml, capsys):
    base = ["--data", str(data_yaml), "-n", "3", "--quiet", "--no-lpips"]
    assert main(["eval", "-c", "mean", "--masks", "square", "-o", str(tmp_path / "a"), *base]) == 0
    assert main(["eval", "-c", "ns", "--masks", "square", "--seed", "9", "-o", str(tmp_path / "b"), *base]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "other images or holes" in err and "seed 1234 vs 9" in err


def test_reproduce_tiny_preset(tmp_path, cache_root, capsys):
    model_cfg = tmp_path / "tinyvae.yaml"
    model_cfg.write_text(yaml.safe_dump(tiny_raw(tmp_path / "unused", cache_root)))
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump({
        "name": "repro", "set": ["train.max_steps=2"],
        "models": [{"config": str(model_cfg), "name": "tinyvae"}],
        "eval": {"n": 4, "masks": ["square", "thin"], "peers": ["mean", "telea"], "gallery": 3, "samples": 4,
                 "lpips": False},
    }))
    assert main(["reproduce", "--preset", str(preset), "--out-dir", str(tmp_path / "runs"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "| tinyvae | vae |" in captured.out and "| telea | peer |" in captured.out
    root = tmp_path / "runs" / "repro"
    check_report_structure(root / "report.html", ["square", "thin"], ["tinyvae", "mean", "telea"])
    refs = _check_report(root / "report.html")
    for pic in ("compare/quality_speed.png", "tinyvae/curves.png", "tinyvae/samples_grid.png", "tinyvae/morph.png",
                "compare/galleries/tinyvae.png", "compare/galleries/telea.png"):
        assert pic in refs
    info = json.loads((root / "reproduce.json").read_text())
    assert info["models"] == ["tinyvae"]
    # a second reproduce keeps the first one (archived next to it), never deletes it
    assert main(["reproduce", "--preset", str(preset), "--out-dir", str(tmp_path / "runs"), "--quiet"]) == 0
    kept = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("repro-")]
    assert len(kept) == 1 and (kept[0] / "report.html").is_file()


def test_reproduce_refuses_a_preset_whose_model_config_is_missing(tmp_path, cache_root, capsys):
    model_cfg = tmp_path / "tinyvae.yaml"
    model_cfg.write_text(yaml.safe_dump(tiny_raw(tmp_path / "unused", cache_root)))
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump({"name": "repro", "models": [str(model_cfg), "unet-faces46"],
                                      "eval": {"n": 4, "masks": ["square"], "peers": ["mean"]}}))
    for extra in ([], ["--dry-run"]):
        assert main(["reproduce", "--preset", str(preset), "--out-dir", str(tmp_path / "runs"), *extra]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
        assert "model config not found: unet-faces46 (did you mean unet-faces64?)" in captured.err
    assert not (tmp_path / "runs").exists()  # no report, no folder: nothing was trained or written


def test_reproduce_dry_run_resolves_the_shipped_preset(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./configs here: the shipped presets and model configs are found
    assert main(["reproduce", "--preset", "quick", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "reproduce/quick.yaml" in out and "model unet-faces64" in out and "unet ->" in out
    assert not (tmp_path / "runs").exists()


def test_shipped_presets_are_valid():
    from genfill.config import PEER_NAMES
    from genfill.reproduce import load_preset

    for name in ("quick", "full"):
        p = load_preset(name)
        assert p.models[0].config == "vae-faces64" and set(p.eval.peers) == set(PEER_NAMES)
