"""Every report genfill writes (the demo's index.html, eval's report.html, compare's comparison.html,
reproduce's report.html) is built here, from one evaluation document (the eval.json format: a protocol plus
per-method summaries by mask kind and hole-ratio bucket), so all four read the same way:

1. a picture first: one test image per mask kind, original / masked / every method, labelled in the image;
2. the verdict: per mask kind, each method's PSNR / SSIM / LPIPS with the best cell of each column marked,
   a PSNR bar chart, and a win/loss line of each of our models against each peer (and the same by hole size);
3. the same test images side by side for every method, one picture per mask kind;
4. failure galleries: each method's worst images (hole MSE) with every other method's fill of the same image;
5. the detailed tables, then links to the raw files (JSON and CSV are linked, never pasted).

Pages are self-contained: pictures are PNG files next to the page (relative paths), bar charts inline SVG,
no script, no server. A page draws what it is given: the numbers and words of the verdict come from
`genfill.verdict`, the pictures (`genfill.pictures.Pictures`) from the job that made them; nothing here loads
a model or runs a fill.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from genfill.io import atomic_write_text
from genfill.pictures import Pictures
from genfill.verdict import (FID_NOTE, axis_winners, best_rows, buckets_of, fmt, group_value, kinds_of, num,
                             plural_notes, plural_table, protocol_text, sides, tables, timing_text, verdict_metrics,
                             winners, wins)

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.2em auto;max-width:1240px;color:#222;padding:0 1em;line-height:1.4}
h1{font-size:1.6em;margin:.2em 0 .4em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f6f6f6}
td.best{font-weight:bold;background:#d7f0db}
td.best::after{content:" \\2605";color:#2e7d32}
img{max-width:100%;image-rendering:pixelated;border:1px solid #ddd;margin:4px 0}
figure{display:inline-table;margin:0 1em 1em 0;vertical-align:top}
figure.wide{display:table;margin:.5em 0 1em}
figcaption{display:table-caption;caption-side:bottom;font-size:13px;color:#555}
code{background:#f4f4f4;padding:1px 4px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px}
table.verdict td,table.verdict th,table.glance td,table.glance th{white-space:nowrap}
.top{display:flex;gap:1.5em;align-items:flex-start;flex-wrap:wrap}.top>div{flex:1;min-width:300px;overflow-x:auto}
table.glance{font-size:13px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;background:#fcfcfc}
.card h3{margin:.2em 0;font-size:1.05em}.card table{margin:.3em 0;width:100%}
.lead{font-size:1.05em;background:#f3f7fb;border-left:4px solid #1f77b4;padding:.5em .8em}
p.axes{margin:.2em 0;font-size:13px}
ul.wl{padding-left:1.2em}ul.wl li{margin:.2em 0}
.win{color:#2e7d32;font-weight:bold}.loss{color:#c62828;font-weight:bold}
details{margin:.6em 0}summary{cursor:pointer;font-weight:bold}
.links a{margin-right:1em}
"""
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]


# ---------------------------------------------------------------- HTML basics

def esc(text) -> str:
    return html.escape(str(text))


def table(headers: list[str], rows: list[list], best: dict[int, str] | None = None, fmt_spec: str = "{:.4g}",
          cls: str = "") -> str:
    """An HTML table; `best` maps a column index to "max" or "min": that column's best cell (one, the first
    on a tie) gets class "best" (bold, green, a star)."""
    marked = {col: best_rows([r[col] for r in rows], how) for col, how in (best or {}).items()}
    out = [f"<table{f' class={chr(34)}{cls}{chr(34)}' if cls else ''}><tr>"
           + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr>"]
    for ri, r in enumerate(rows):
        cells = []
        for i, v in enumerate(r):
            text = fmt_spec.format(v) if isinstance(v, float) else esc(fmt(v) if v is None else v)
            c = ' class="best"' if marked.get(i) == ri else ""
            cells.append(f"<td{c}>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</table>"


def figure(src: str, caption: str, wide: bool = False) -> str:
    cls = ' class="wide"' if wide else ""
    return (f'<figure{cls}><img src="{esc(src)}" alt="{esc(caption)}" loading="lazy">'
            f'<figcaption>{esc(caption)}</figcaption></figure>')


def links(items: list[tuple[str, str]]) -> str:
    """Links to raw files: [(href, label)]."""
    return '<p class="links">Raw files: ' + " ".join(f'<a href="{esc(h)}">{esc(t)}</a>' for h, t in items) + "</p>"


def page(title: str, body: list[str]) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n")


def write_page(path: str | Path, title: str, body: list[str]) -> Path:
    atomic_write_text(path, page(title, body))
    return Path(path)


def referenced_files(html_text: str) -> list[str]:
    """Every src/href a page references (for tests that check a report is complete)."""
    return re.findall(r'(?:src|href)="([^"#:]+)"', html_text)


# ---------------------------------------------------------------- the verdict drawn

def win_loss_lines(doc: dict, group: str = "mask") -> list[str]:
    """One line per (ours, peer): e.g. 'unet vs telea: PSNR 4-1 (loses thin) · SSIM 5-0 · LPIPS 5-0'."""
    ours, peers = sides(doc)
    lines = []
    for a in ours:
        for b in peers:
            bits = []
            for metric, title, how in verdict_metrics(doc):
                won, lost = wins(doc, a, b, metric, how, group)
                if not won and not lost:
                    continue
                cls = "win" if len(won) > len(lost) else ("loss" if len(lost) > len(won) else "")
                detail = f" (loses {', '.join(lost)})" if lost and won else (" (all)" if not lost else "")
                if not won:
                    detail = " (loses all)"
                bits.append(f'{esc(title.split()[0])} <span class="{cls}">{len(won)}-{len(lost)}</span>'
                            f"{esc(detail)}")
            if bits:
                lines.append(f"<li><b>{esc(a)}</b> vs <b>{esc(b)}</b>: " + " &middot; ".join(bits) + "</li>")
    return lines


def headline(doc: dict) -> str:
    """The verdict in two sentences: who wins which mask kinds on distortion and on perception."""
    items = [f"<b>Best {esc(axis)}{esc(f' ({title})' if title else '')}</b> per mask kind: {esc(text)}."
             for axis, title, text in axis_winners(doc)]
    return '<p class="lead">' + "<br>".join(items) + "</p>" if items else ""


def axis_matrix(doc: dict, metric: str, title: str, how: str, fmt_spec: str = "{:.2f}") -> str:
    """A metric at a glance: methods x mask kinds, the best of each kind starred ("" when nobody has it)."""
    kinds = kinds_of(doc)
    rows = [[n, *[group_value(e, "mask", k, metric) for k in kinds]] for n, e in doc["methods"].items()]
    if all(v is None for r in rows for v in r[1:]):
        return ""
    return table([title, *kinds], rows, {i + 1: how for i in range(len(kinds))}, fmt_spec, cls="glance")


def psnr_matrix(doc: dict) -> str:
    """The verdict at a glance: whole-image PSNR (distortion) and, when scored, FID (perception; else LPIPS),
    methods x mask kinds, the best of each kind starred."""
    perception = (axis_matrix(doc, "fid", "FID", "min", "{:.1f}")
                  or axis_matrix(doc, "lpips", "LPIPS", "min", "{:.4f}"))
    return axis_matrix(doc, "psnr", "PSNR dB", "max") + perception


def bar_chart(labels: list[str], values: list, how: str, unit: str = "dB", colours: list[str] | None = None) -> str:
    """A small inline SVG of horizontal bars, one per method, the best one outlined; axis from the smallest
    value minus a margin, so differences of a dB are visible."""
    vals = [num(v) for v in values]
    known = [v for v in vals if v is not None]
    if not known:
        return ""
    lo, hi = min(known), max(known)
    span = max(hi - lo, 1e-9)
    base = lo - 0.25 * span if lo != hi else lo - 1
    top = hi + 0.02 * span
    best = best_rows(vals, how)
    row_h, label_w, bar_w = 18, 120, 200
    h = row_h * len(labels) + 4
    out = [f'<svg width="{label_w + bar_w + 70}" height="{h}" role="img" aria-label="bar chart">']
    for i, (lab, v) in enumerate(zip(labels, vals)):
        y = 2 + i * row_h
        out.append(f'<text x="{label_w - 4}" y="{y + 13}" font-size="12" text-anchor="end">{esc(lab[:18])}</text>')
        if v is None:
            continue
        w = max(1.0, bar_w * (v - base) / (top - base))
        colour = (colours or PALETTE)[i % len(colours or PALETTE)]
        stroke = ' stroke="#111" stroke-width="2"' if i == best else ""
        out.append(f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row_h - 5}" fill="{colour}"{stroke}/>')
        star = " \u2605" if i == best else ""
        suffix = " " + unit if unit else ""
        out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 13}" font-size="12">{v:.2f}{suffix}{star}</text>')
    out.append("</svg>")
    return "".join(out)


def verdict_cards(doc: dict, group: str = "mask") -> str:
    """One card per mask kind (or hole-ratio bucket): methods x PSNR/SSIM/LPIPS, the best cell of each column
    marked, and a PSNR bar chart."""
    methods = doc["methods"]
    names = list(methods)
    metrics = verdict_metrics(doc, group)
    keys = kinds_of(doc) if group == "mask" else buckets_of(doc)
    wins_by_key = winners(doc, group)
    cards = []
    for k in keys:
        first = next(iter(methods.values()))["summary"][group].get(k, {})
        if group == "mask":
            title = f"{k} holes ({100 * (num(first.get('hole_ratio')) or 0):.0f}% of the image on average)"
        else:
            count = max(e["summary"]["bucket"].get(k, {}).get("count", 0) for e in methods.values())
            title = f"holes {k} of the image ({count} images)"
        rows = [[n, *[group_value(methods[n], group, k, m) for m, _, _ in metrics]] for n in names]
        tab = table(["method", *[t for _, t, _ in metrics]], rows,
                    {i + 1: how for i, (_, _, how) in enumerate(metrics)}, cls=f"verdict {group}")
        chart = bar_chart(names, [r[1] for r in rows], "max") if metrics and metrics[0][0] == "psnr" else ""
        named = " &middot; ".join(f"{esc(axis)}: <b>{esc(w[0])}</b> ({esc(w[1])})"
                                  for axis, w in wins_by_key.get(k, {}).items())
        named = f'<p class="axes">Winner &mdash; {named}</p>' if named else ""
        cards.append(f'<div class="card" data-{group}="{esc(k)}"><h3>{esc(title)}</h3>{named}{tab}{chart}</div>')
    return '<div class="cards">' + "".join(cards) + "</div>"


# ---------------------------------------------------------------- the sections every report shares

def results_sections(doc: dict, pics: Pictures, intro: list[str] | None = None, details: list[str] | None = None,
                     raw: list[tuple[str, str]] | None = None) -> list[str]:
    """The body of a results page: intro, picture, verdict, side-by-side, failure galleries, details, raw links."""
    names = list(doc["methods"])
    body = list(intro or [])
    top = []
    if pics.headline:
        top.append(figure(pics.headline, "One test image per mask kind (rows): original, masked (hole white), then "
                          "each method's fill. Every method sees the same image and the same hole."))
    lines = win_loss_lines(doc, "mask")
    side = [headline(doc), psnr_matrix(doc)]
    if lines:
        side += ["<p><b>Wins-losses over mask kinds</b> (a kind is won when the mean is better):</p>",
                 '<ul class="wl">' + "".join(lines) + "</ul>"]
    body.append('<div class="top">' + "".join(top) + "<div>" + "".join(side) + "</div></div>")
    body.append("<h2>Verdict by mask kind</h2>")
    fid_note = f" {FID_NOTE}" if any(group_value(e, "all", None, "fid") is not None for e in doc["methods"].values()) else ""
    body.append("<p>Two axes, on the composited fill. <b>Distortion</b>: whole-image PSNR and SSIM (higher is "
                "better; the mean of all plausible fills wins here, even when it is a blur). <b>Perception</b>: "
                "FID and KID of each method's fills per mask kind against the original images, and LPIPS per "
                "image (lower is better; a fill that looks like a real image wins here). Each card names the "
                "winner on each axis (distortion: PSNR; perception: FID, else KID, else LPIPS); \u2605 marks "
                f"the best of each column. Bars: PSNR.{esc(fid_note)}</p>")
    body.append(verdict_cards(doc, "mask"))
    if buckets_of(doc):
        body.append("<details><summary>Verdict by hole size (all mask kinds pooled)</summary>")
        body.append(verdict_cards(doc, "bucket"))
        lines = win_loss_lines(doc, "bucket")
        if lines:
            body.append('<ul class="wl">' + "".join(lines) + "</ul>")
        body.append("</details>")
    if pics.side_by_side:
        body.append("<h2>Side by side: the same test images for every method</h2>")
        for k, src in pics.side_by_side.items():
            body.append(figure(src, f"{k} holes: the first {pics.rows} test images (rows); columns original, masked, "
                                    + ", ".join(names)))
    if pics.failures:
        body.append("<h2>Failure galleries</h2><p>Each method's worst images by hole MSE (its column highlighted), "
                    "with every other method's fill of the same image and hole.</p>")
        for meth, src in pics.failures.items():
            body.append(figure(src, f"the worst of {meth} (highlighted column)"))
    plural, notes = plural_table(doc), plural_notes(doc)
    if plural is not None or notes:
        body.append("<h2>Several fills and uncertainty</h2><p>Diversity is the mean LPIPS between every pair of "
                    "a method's K fills of one hole; best-of-K and mean-over-K score those fills against the "
                    "original. Coverage is the share of true hole values inside the predicted central 90 % "
                    "interval (from K fills: their 5-95 % quantiles, which even a perfect sampler fills only to "
                    "the calibrated coverage shown at that K); r is Pearson's correlation between the "
                    "uncertainty map and the ordinary fill's absolute error over hole pixels.</p>")
        for name, e in doc["methods"].items():
            pic = (e.get("plural") or {}).get("picture")
            if pic:
                body.append(figure(pic, f"{name}: test image i under mask kind i (rows): input, "
                                        f"{e['plural']['shown']} of its fills, the heat map of their spread "
                                        "(black 0, white a std of 0.15 or more)"))
        if plural is not None:
            body.append(table(plural[1], plural[2], plural[3]))
        if notes:
            body.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    body.append(f"<h2>Details</h2><p>{esc(protocol_text(doc))} {esc(timing_text(doc))}</p>")
    body.append("<details><summary>All tables (overall, by mask kind, by hole ratio, loss parts)</summary>")
    for title, head, rows, best in tables(doc):
        body += [f"<h3>{esc(title)}</h3>", table(head, rows, best)]
    body.append("</details>")
    body += list(details or [])
    if raw:
        body.append(links(raw))
    return body
