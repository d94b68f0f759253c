"""Reports (genfill.report, shared by demo, eval, compare and reproduce): the verdict marks one best cell per
column, win/loss lines count mask kinds, pictures carry every method's column, pages paste no JSON."""

from __future__ import annotations

import re

import pytest
import yaml

from genfill.cli import main
from genfill.report import table, verdict_cards, win_loss_lines
from genfill.verdict import best_rows
from tests.conftest import check_report_structure, tiny_raw


def _doc(values: dict[str, dict[str, float]]) -> dict:
    """A minimal eval document: {method: {kind: psnr}} (SSIM follows PSNR, LPIPS the other way)."""
    methods = {}
    for i, (name, by_kind) in enumerate(values.items()):
        mask = {k: {"count": 4, "psnr": v, "ssim": v / 40, "lpips": 1 / v, "hole_ratio": 0.2} for k, v in by_kind.items()}
        methods[name] = {"kind": "peer" if i else "unet", "source": name, "summary": {
            "all": {"count": 4 * len(mask), "psnr": 0.0, "ssim": 0.0, "lpips": 0.0}, "mask": mask,
            "bucket": {"20-30%": {"count": 4, "psnr": 1.0, "ssim": 0.5, "lpips": 0.3}}}}
    return {"protocol": {"n": 4, "split": "test", "masks": {k: {} for k in next(iter(values.values()))},
                         "seed": 1, "data_key": "x"}, "methods": methods}


def test_best_is_one_cell_per_column_even_on_ties():
    assert best_rows([1.0, 3.0, 3.0, None], "max") == 1
    assert best_rows([None, None], "min") is None
    html = table(["m", "a", "b"], [["x", 1.0, 2.0], ["y", 1.0, 1.0]], {1: "max", 2: "min"})
    assert html.count('class="best"') == 2


def test_verdict_cards_and_win_loss_lines():
    doc = _doc({"ours": {"thin": 27.0, "square": 26.0}, "telea": {"thin": 31.0, "square": 25.0}})
    cards = verdict_cards(doc)
    thin = re.search(r'data-mask="thin">(.*?)</div>', cards, re.S).group(1)
    assert re.search(r'<td class="best">31', thin)  # Telea wins thin holes, and the table says so
    line = win_loss_lines(doc)[0]
    assert "<b>ours</b> vs <b>telea</b>" in line and "1-1" in line and "loses thin" in line


@pytest.fixture
def data_yaml(tmp_path, cache_root):
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump({"data": tiny_raw(tmp_path, cache_root)["data"]}))
    return path


def test_eval_and_compare_reports_have_the_shared_structure(tmp_path, data_yaml):
    common = ["--data", str(data_yaml), "--masks", "thin,square", "-n", "4", "--quiet", "--no-lpips"]
    assert main(["eval", "-c", "mean", "-c", "telea", "-o", str(tmp_path / "a"), *common]) == 0
    check_report_structure(tmp_path / "a" / "report.html", ["thin", "square"], ["mean", "telea"])
    assert main(["eval", "-c", "biharmonic", "-o", str(tmp_path / "b"), *common]) == 0
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "c"), "--quiet"]) == 0
    text = check_report_structure(tmp_path / "c" / "comparison.html", ["thin", "square"],
                                  ["mean", "telea", "biharmonic"])
    # the failure gallery of each method shows every method's fill of its worst images
    assert all(f"galleries/{m}.png" in text for m in ("mean", "telea", "biharmonic"))
    assert 'href="compare.json"' in text
