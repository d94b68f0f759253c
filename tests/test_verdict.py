"""The verdict on two axes (genfill.report): distortion (PSNR, SSIM) and perception (FID, KID per mask kind,
LPIPS), the winner per kind on each, in the HTML page and in the table `genfill eval` prints."""

from __future__ import annotations

import re

from genfill.report import headline, psnr_matrix, verdict_cards
from genfill.verdict import tables, terminal_summary, terminal_table, winners


def _doc(fid: bool = True) -> dict:
    """The mean fill wins PSNR everywhere; the sampler wins FID on square, and on thin FID is a tie won by the
    first method listed (the mean fill); LPIPS follows the sampler on square only."""
    psnr = {"mean-fill": {"thin": 35.0, "square": 27.0}, "sampler": {"thin": 34.0, "square": 25.5},
            "patchmatch": {"thin": 33.0, "square": 24.0}}
    fids = {"mean-fill": {"thin": 5.0, "square": 40.0}, "sampler": {"thin": 5.0, "square": 20.0},
            "patchmatch": {"thin": 9.0, "square": 30.0}}
    methods = {}
    for i, (name, by_kind) in enumerate(psnr.items()):
        mask = {k: {"count": 500, "psnr": v, "ssim": v / 40, "lpips": 0.1 if (name, k) == ("sampler", "square")
                    else 0.2, "hole_ratio": 0.25} for k, v in by_kind.items()}
        e = {"kind": "peer" if name == "patchmatch" else "unet", "source": name, "ms_per_image": 1.0 + i,
             "summary": {"all": {"count": 1000, "psnr": sum(by_kind.values()) / 2, "ssim": 0.8, "lpips": 0.2,
                                 "hole_ratio": 0.25}, "mask": mask, "bucket": {}}}
        if fid:
            e["by_mask"] = {k: {"fid": v, "kid": v / 1000} for k, v in fids[name].items()}
            e["fid"], e["kid"] = sum(fids[name].values()), 0.01
        methods[name] = e
    return {"protocol": {"n": 500, "split": "test", "masks": {"thin": {}, "square": {}}, "seed": 1234,
                         "data_key": "faces"}, "methods": methods,
            "timing": {"seconds": 240.0, "fill_seconds": 60.0,
                       "fid": {"on": fid, "auto": True, "seconds": 150.0, "images": 2000, "cached_images": 2000,
                               "real_cached": True, "images_per_s": 13.3}} if fid else
            {"seconds": 60.0, "fill_seconds": 50.0, "fid": {"on": False, "auto": True}}}


def test_winners_per_kind_on_each_axis():
    w = winners(_doc())
    assert w["square"]["distortion"][:2] == ("mean-fill", "PSNR dB")
    assert w["square"]["perception"][:2] == ("sampler", "FID")
    assert w["thin"]["perception"][0] == "mean-fill"  # a tie goes to the first method listed
    # without FID, perception falls back to LPIPS
    assert winners(_doc(fid=False))["square"]["perception"][:2] == ("sampler", "LPIPS")


def test_page_names_both_winners_and_shows_fid_per_kind():
    doc = _doc()
    lead = headline(doc)
    assert "Best distortion (PSNR dB)</b> per mask kind: mean-fill on thin, square" in lead
    assert "Best perception (FID)</b> per mask kind: mean-fill on thin; sampler on square" in lead
    card = re.search(r'data-mask="square">(.*?)</div>', verdict_cards(doc), re.S).group(1)
    assert "perception: <b>sampler</b> (FID)" in card and "distortion: <b>mean-fill</b>" in card
    assert re.search(r'<th>FID</th>', card) and re.search(r'<td class="best">20</td>', card)
    assert "<th>FID</th><th>thin</th>" in psnr_matrix(doc)  # the at-a-glance perception matrix
    titles = [t for t, *_ in tables(doc)]
    assert "FID by mask kind (lower is better)" in titles and "KID by mask kind (lower is better)" in titles


def test_terminal_table_rows_columns_marks_and_width():
    doc = _doc()
    text = terminal_table(doc)
    lines = text.splitlines()
    assert max(len(line) for line in lines) < 100
    assert lines[0].split() == ["method", "mask", "hole", "PSNR", "SSIM", "LPIPS", "FID", "KID", "winner"]
    rows = [line.split() for line in lines[1:] if line]
    assert len(rows) == 3 * 3  # 3 methods x (2 kinds + all)
    square = {r[0]: r for r in rows if r[1] == "square"}
    assert square["mean-fill"][3] == "27.00*" and square["mean-fill"][-1] == "distortion"
    assert square["sampler"][6] == "20.00*" and square["sampler"][-1] == "perception"
    assert square["patchmatch"][-1] == "0.0300"  # no axis won: the row ends with its last value (KID)
    thin = {r[0]: r for r in rows if r[1] == "thin"}
    assert thin["mean-fill"][-1] == "distortion+perception"


def test_terminal_table_drops_columns_without_values_and_summary_says_why():
    doc = _doc(fid=False)
    head = terminal_table(doc).splitlines()[0].split()
    assert "FID" not in head and "KID" not in head and "LPIPS" in head
    text = terminal_summary(doc)
    assert "FID/KID off (on by default from 200 test images)" in text
    assert "winner, perception (LPIPS): mean-fill on thin; sampler on square" in text
    assert all(len(line) <= 100 for line in text.splitlines())
    full = terminal_summary(_doc())
    assert "Inception 150 s for 2000 images (13.3 images/s)" in full and "biased upwards" in full
