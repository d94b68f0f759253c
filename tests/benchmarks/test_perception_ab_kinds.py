"""benchmarks/perception_ab_kinds.py's --merge: evals run apart join one table only under one protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmarks import benchmark_module


@pytest.fixture(scope="module")
def ab():
    return benchmark_module("perception_ab_kinds")  # it imports its sibling perception_ab


def eval_doc(methods: dict, n: int = 1000) -> dict:
    protocol = {"data_key": "faces64-64-3-20000-0", "split": "test", "n": n, "masks": {"thin": {}}, "seed": 1234}
    return {"format": 1, "protocol": protocol, "methods": methods, "timing": {"fid": {"seconds": 2.0}}}


def method(psnr: float, fid: float) -> dict:
    return {"kind": "vae", "summary": {"mask": {"thin": {"psnr": psnr}}}, "by_mask": {"thin": {"fid": fid}}}


def put(folder: Path, doc: dict) -> None:
    (folder / "eval_thin").mkdir(parents=True)
    (folder / "eval_thin" / "eval.json").write_text(json.dumps(doc))


def test_merge_adds_the_other_folders_methods_and_refuses_another_protocol_or_a_method_twice(ab, tmp_path):
    put(tmp_path / "b", eval_doc({"b": method(30.0, 20.0)}))
    put(tmp_path / "c", eval_doc({"c": method(31.0, 21.0)}, n=500))
    put(tmp_path / "d", eval_doc({"a": method(1.0, 1.0)}))
    doc = ab.merged(eval_doc({"a": method(29.0, 25.0)}), "thin", [tmp_path / "b", tmp_path / "missing"])
    rows = ab.rows_of(doc, "thin")
    assert rows == {"a (vae)": {"psnr": 29.0, "ssim": None, "lpips": None, "diversity": None, "fid": 25.0},
                    "b (vae)": {"psnr": 30.0, "ssim": None, "lpips": None, "diversity": None, "fid": 20.0}}
    assert doc["timing"]["fid"]["seconds"] == 4.0
    with pytest.raises(SystemExit, match="another protocol"):
        ab.merged(eval_doc({"a": method(29.0, 25.0)}), "thin", [tmp_path / "c"])
    with pytest.raises(SystemExit, match="in two evals"):
        ab.merged(eval_doc({"a": method(29.0, 25.0)}), "thin", [tmp_path / "d"])


def test_verdict_measures_the_gap_to_the_best_other_row_in_bootstrap_stds(ab):
    rows = {"s (sampler)": {"thin": {"fid": 16.3, "fid_std": 0.6}, "square": {"fid": 19.0, "fid_std": 0.5}},
            "u (unet)": {"thin": {"fid": 15.9, "fid_std": 0.5}, "square": {"fid": 47.0, "fid_std": 1.0}},
            "p (peer)": {"thin": {"fid": 16.1, "fid_std": 0.7}, "square": {"fid": 64.0, "fid_std": 1.2}}}
    lines = ab.verdict(rows, "s", ["thin", "square"])
    assert lines[2] == ("- thin: 16.30 against u (unet)'s 15.90: behind the best by 0.40 = 0.7 x the larger "
                        "bootstrap std (0.60)")
    assert lines[3] == ("- square: 19.00 against u (unet)'s 47.00: lowest by 28.00 = 28.0 x the larger bootstrap "
                        "std (1.00)")
    apart = ab.verdict(rows, "s", ["thin"], apart=("u",))  # u a variant of s: not among the others
    assert apart[2].startswith("- thin: 16.30 against p (peer)'s 16.10: behind the best by 0.20")
    with pytest.raises(SystemExit, match="names 0 rows"):
        ab.verdict(rows, "x", ["thin"])
