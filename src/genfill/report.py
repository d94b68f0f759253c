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
no script, no server.
"""

from __future__ import annotations

import html
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from genfill.evaluate import BUCKETS
from genfill.io import atomic_write_text, make_dir, save_image

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

# The verdict's two axes (Blau & Michaeli's perception-distortion trade-off): distortion, where the mean of
# the plausible fills wins, and perception, where a fill that looks like a real image wins. Each is a list of
# (key, title, "max" | "min" is better); the first metric with values names the axis's winner. FID and KID
# are per method and mask kind (eval.json's entry["by_mask"]), the others means of per-image values.
DISTORTION = [("psnr", "PSNR dB", "max"), ("ssim", "SSIM", "max")]
PERCEPTION = [("fid", "FID", "min"), ("kid", "KID", "min"), ("lpips", "LPIPS", "min")]
AXES = {"distortion": DISTORTION, "perception": PERCEPTION}
VERDICT = DISTORTION + PERCEPTION
SET_METRICS = {"fid", "kid"}  # scored on a set of fills, not per image
FID_NOTE = ("FID per mask kind on a few hundred images is biased upwards (its expected value falls like 1/n), so "
            "compare FIDs only at one n and mask kind; KID is unbiased and usable with few images.")
# The detailed tables' columns.
OVERALL = [("psnr", "PSNR dB", "max"), ("ssim", "SSIM", "max"), ("psnr_hole", "PSNR hole", "max"),
           ("ssim_hole", "SSIM hole", "max"), ("l1_hole", "L1 hole", "min"), ("edge_hole", "edge hole", "min"),
           ("lpips", "LPIPS", "min")]
BY_GROUP = [("psnr_hole", "PSNR in the hole (dB)", "max"), ("l1_hole", "L1 in the hole", "min"),
            ("ssim_hole", "SSIM in the hole", "max"), ("lpips", "LPIPS (whole image)", "min")]
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]


# ---------------------------------------------------------------- HTML basics

def slug(name: str) -> str:
    """A method or mask name as a file-name part."""
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "method"


def esc(text) -> str:
    return html.escape(str(text))


def num(v):
    """v if it is a finite number, else None."""
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def best_rows(values: list, how: str) -> int | None:
    """The row index of the best number in a column (the first one on a tie), None when there is none."""
    found = [(v, i) for i, v in enumerate(values) if num(v) is not None]
    if not found:
        return None
    pick = max if how == "max" else min
    target = pick(v for v, _ in found)
    return next(i for v, i in found if v == target)


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
    import re

    return re.findall(r'(?:src|href)="([^"#:]+)"', html_text)


# ---------------------------------------------------------------- the evaluation's numbers

def protocol_text(doc: dict) -> str:
    p = doc["protocol"]
    masks = ", ".join(p["masks"])
    return (f"{p['n']} {p['split']} images of {p['data_key']}, mask kinds {masks}, mask seed {p['seed']}; "
            "every method fills the same images under the same holes; metrics on the composited output "
            "(L1/MSE on the [0, 1] scale, PSNR in dB with peak 1; 'hole' = over hole pixels only). "
            "Hole-ratio buckets are half-open [lo, hi): exactly 10% counts in 10-20%.")


def kinds_of(doc: dict) -> list[str]:
    return list(next(iter(doc["methods"].values()))["summary"]["mask"])


def buckets_of(doc: dict) -> list[str]:
    return [b for b in BUCKETS if any(b in e["summary"]["bucket"] for e in doc["methods"].values())]


def group_value(entry: dict, group: str, key: str, metric: str):
    """A method's `metric` over one group: group "mask" (key = kind), "bucket" (key = label) or "all". FID and
    KID come from the sets of fills (all kinds pooled, or one kind; none per hole-size bucket); the other
    metrics are means over the group's images."""
    if metric in SET_METRICS:
        if group == "all":
            return num(entry.get(metric))
        return num((entry.get("by_mask") or {}).get(key, {}).get(metric)) if group == "mask" else None
    s = entry["summary"]
    row = s["all"] if group == "all" else s[group].get(key, {})
    return num(row.get(metric))


def verdict_metrics(doc: dict, group: str = "all") -> list[tuple[str, str, str]]:
    """The verdict's metrics that some method has a value of (over all images, or in some key of `group`)."""
    keys = [None] if group == "all" else (kinds_of(doc) if group == "mask" else buckets_of(doc))
    return [m for m in VERDICT if any(group_value(e, group, k, m[0]) is not None
                                      for e in doc["methods"].values() for k in keys)]


def winners(doc: dict, group: str = "mask") -> dict[str, dict[str, tuple[str, str, float]]]:
    """The winner per mask kind (or hole-size bucket) on each axis: {kind: {"distortion": (method, metric
    title, value), "perception": (...)}}. An axis's winner is the best method on its first metric that has
    values there (distortion: PSNR; perception: FID, else KID, else LPIPS); an axis with no values is left out."""
    names = list(doc["methods"])
    keys = kinds_of(doc) if group == "mask" else buckets_of(doc)
    out: dict[str, dict] = {}
    for k in keys:
        for axis, metrics in AXES.items():
            for metric, title, how in metrics:
                vals = [group_value(doc["methods"][n], group, k, metric) for n in names]
                i = best_rows(vals, how)
                if i is not None:
                    out.setdefault(k, {})[axis] = (names[i], title, vals[i])
                    break
    return out


def sides(doc: dict) -> tuple[list[str], list[str]]:
    """(ours, peers): learned models against classical peers; with no model, the first method against the rest."""
    names = list(doc["methods"])
    ours = [n for n, e in doc["methods"].items() if e.get("kind") != "peer"]
    peers = [n for n in names if n not in ours]
    if not ours:
        ours, peers = names[:1], names[1:]
    if not peers:
        ours, peers = names[:1], names[1:]
    return ours, peers


def wins(doc: dict, a: str, b: str, metric: str, how: str, group: str = "mask") -> tuple[list[str], list[str]]:
    """(groups where a beats b, groups where b beats a) on `metric`; ties count for neither."""
    keys = kinds_of(doc) if group == "mask" else buckets_of(doc)
    won, lost = [], []
    for k in keys:
        va, vb = group_value(doc["methods"][a], group, k, metric), group_value(doc["methods"][b], group, k, metric)
        if va is None or vb is None or va == vb:
            continue
        (won if (va > vb) == (how == "max") else lost).append(k)
    return won, lost


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


def axis_winners(doc: dict) -> list[tuple[str, str, str]]:
    """Per axis, who wins which mask kinds: [(axis, metric title, "unet on thin, medium; biharmonic on
    square")]; the title is "" when kinds were judged on different metrics (each part then names its own)."""
    out = []
    for axis in AXES:
        by_winner: dict[tuple[str, str], list[str]] = {}
        for k, axes in winners(doc).items():
            if axis in axes:
                name, title, _ = axes[axis]
                by_winner.setdefault((title, name), []).append(k)
        if by_winner:
            titles = list(dict.fromkeys(t for t, _ in by_winner))
            one = len(titles) == 1
            parts = [f"{name} on {', '.join(ks)}" + ("" if one else f" ({t})") for (t, name), ks in by_winner.items()]
            out.append((axis, titles[0] if one else "", "; ".join(parts)))
    return out


def verdict_lines(doc: dict) -> list[str]:
    """Plain-text winners per axis: 'distortion (PSNR dB): unet on thin, medium; biharmonic on square'."""
    return [f"{axis}{f' ({title})' if title else ''}: {text}" for axis, title, text in axis_winners(doc)]


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


def timing_text(doc: dict) -> str:
    """Where the evaluation's time went, one sentence ("" for documents from before it was recorded)."""
    t = doc.get("timing")
    if not t:
        return ""
    text = f"Evaluation {t['seconds'] / 60:.1f} min ({t['fill_seconds']:.0f} s of it filling)"
    f = t.get("fid") or {}
    if f.get("images") is not None:
        rate = f" ({f['images_per_s']:.1f} images/s)" if f.get("images_per_s") else ""
        cached = f"; cached features reused for {f['cached_images']} fills" if f.get("cached_images") else ""
        real = " and the test images" if f.get("real_cached") else ""
        text += f"; Inception {f['seconds']:.0f} s for {f['images']} images{rate}{cached}{real}"
    elif not f.get("on"):
        text += "; FID/KID off" + (" (on by default from 200 test images)" if f.get("auto") else "")
    return text + "."


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


def tables(doc: dict) -> list[tuple[str, list[str], list[list], dict[int, str]]]:
    """Every detailed table of an evaluation as (title, headers, rows, best columns); shared by HTML and
    Markdown (`genfill eval` prints the first)."""
    methods = doc["methods"]
    out = []
    head = ["method", "kind", "parameters", "ms / image", *[t for _, t, _ in OVERALL], "FID", "KID"]
    rows = []
    for name, e in methods.items():
        s = e["summary"]["all"]
        rows.append([name, e["kind"], e.get("parameters"), num(e.get("ms_per_image")),
                     *[num(s.get(k)) for k, _, _ in OVERALL], num(e.get("fid")), num(e.get("kid"))])
    best = {3: "min", **{4 + i: how for i, (_, _, how) in enumerate(OVERALL)}, len(head) - 2: "min",
            len(head) - 1: "min"}
    out.append(("All evaluated images", head, rows, best))

    first = next(iter(methods.values()))["summary"]
    kinds, buckets = kinds_of(doc), buckets_of(doc)
    for key, title, how in BY_GROUP:
        if not any(key in e["summary"]["all"] for e in methods.values()):
            continue
        rows = [[name, *[num(e["summary"]["mask"].get(k, {}).get(key)) for k in kinds]] for name, e in methods.items()]
        head = ["method", *[f"{k} ({100 * (num(first['mask'][k].get('hole_ratio')) or 0):.0f}% hole)" for k in kinds]]
        out.append((f"{title} by mask kind", head, rows, {i + 1: how for i in range(len(kinds))}))
        counts = {b: max(e["summary"]["bucket"].get(b, {}).get("count", 0) for e in methods.values()) for b in buckets}
        rows = [[name, *[num(e["summary"]["bucket"].get(b, {}).get(key)) for b in buckets]]
                for name, e in methods.items()]
        out.append((f"{title} by hole ratio", ["method", *[f"{b} (n={counts[b]})" for b in buckets]], rows,
                    {i + 1: how for i in range(len(buckets))}))

    for key, title in (("fid", "FID"), ("kid", "KID")):
        rows = [[name, *[group_value(e, "mask", k, key) for k in kinds]] for name, e in methods.items()]
        if any(v is not None for r in rows for v in r[1:]):
            head = ["method", *[f"{k} ({100 * (num(first['mask'][k].get('hole_ratio')) or 0):.0f}% hole)" for k in kinds]]
            out.append((f"{title} by mask kind (lower is better)", head, rows, {i + 1: "min" for i in range(len(kinds))}))
    losses = {name: e["test_loss"] for name, e in methods.items() if e.get("test_loss")}
    if losses:
        parts = list(dict.fromkeys(k for t in losses.values() for k in t if k != "by_mask"))
        rows = [[name, *[num(t.get(p)) for p in parts]] for name, t in losses.items()]
        out.append(("Test-set loss parts (eval mode, evaluated holes)", ["model", *parts], rows,
                    {i + 1: "min" for i in range(len(parts))}))
    plural = plural_table(doc)
    if plural is not None:
        out.append(plural)
    sfid = {name: e["sample_fid"] for name, e in methods.items() if e.get("sample_fid")}
    if sfid:
        rows = [[name, num(v.get("fid")), num(v.get("kid"))] for name, v in sfid.items()]
        out.append(("Prior samples vs test images", ["model", "FID", "KID"], rows, {1: "min", 2: "min"}))
    return out


PLURAL_COLUMNS = [("diversity", "diversity (pairwise LPIPS)"), ("psnr_best", "PSNR best-of-K"),
                  ("psnr_meank", "PSNR mean-over-K"), ("lpips_best", "LPIPS best-of-K"),
                  ("lpips_meank", "LPIPS mean-over-K")]


def plural_table(doc: dict) -> tuple[str, list[str], list[list], dict[int, str]] | None:
    """Several fills and calibration, one row per (method, mask kind) for the methods that have them
    (`entry["plural"]` with `by_mask`): diversity and best-of-K / mean-over-K quality (means over images),
    coverage of the central 90 % interval against what a calibrated predictor scores there, and Pearson's r
    between uncertainty and absolute error (pooled over hole pixels). None when no method has any."""
    head = ["method", "mask", "K", *[t for _, t in PLURAL_COLUMNS], "coverage 90%", "calibrated coverage",
            "r(uncertainty, abs error)", "interval"]
    rows = []
    for name, e in doc["methods"].items():
        pl = e.get("plural") or {}
        for kind, cal in (pl.get("by_mask") or {}).items():
            s = e["summary"]["mask"].get(kind, {})
            rows.append([name, kind, pl.get("k"), *[num(s.get(k)) for k, _ in PLURAL_COLUMNS],
                         num(cal.get("coverage90")), num(pl.get("nominal_coverage")), num(cal.get("unc_corr")),
                         pl.get("interval")])
    if not rows:
        return None
    return ("Several fills and uncertainty by mask kind", head, rows, {})


def plural_notes(doc: dict) -> list[str]:
    """The one-line notes of methods asked for several fills that draw one."""
    return [f"{name}: {e['plural']['note']}" for name, e in doc["methods"].items()
            if (e.get("plural") or {}).get("note")]


# The terminal table's metric columns: (key, header, format); a column shows only when some row has a value.
TERMINAL = [("psnr", "PSNR", "{:.2f}"), ("ssim", "SSIM", "{:.4f}"), ("lpips", "LPIPS", "{:.4f}"),
            ("fid", "FID", "{:.2f}"), ("kid", "KID", "{:.4f}")]


def terminal_table(doc: dict, name_width: int = 18) -> str:
    """The evaluation as a person reads it in a terminal: one row per mask kind and method (then every kind
    pooled, "all"), only the metric columns that have values, the best of each column and kind marked "*",
    and a last column naming the winner of each axis (distortion: PSNR; perception: FID, else KID, else
    LPIPS; `winners`). About 90 characters wide with every column."""
    methods = doc["methods"]
    groups = [("mask", k) for k in kinds_of(doc)] + [("all", None)]
    cols = [c for c in TERMINAL if any(group_value(e, g, k, c[0]) is not None for e in methods.values() for g, k in groups)]
    how = {key: h for key, _, h in VERDICT}
    wins = winners(doc)
    head = ["method", "mask", "hole", *[title for _, title, _ in cols], "winner"]
    body: list[list[str] | None] = []
    for g, k in groups:
        if body:
            body.append(None)  # a blank line between mask kinds
        vals = {key: [group_value(methods[n], g, k, key) for n in methods] for key, _, _ in cols}
        best = {key: best_rows(v, how[key]) for key, v in vals.items()}
        for i, (name, e) in enumerate(methods.items()):
            row = e["summary"]["mask"].get(k, {}) if g == "mask" else e["summary"]["all"]
            ratio = num(row.get("hole_ratio"))
            cells = []
            for key, _, spec in cols:
                v = vals[key][i]
                cells.append("-" if v is None else spec.format(v) + ("*" if best[key] == i else " "))
            won = [axis for axis, w in (wins.get(k, {}) if g == "mask" else {}).items() if w[0] == name]
            short = name if len(name) <= name_width else name[:name_width - 1] + "~"
            body.append([short, k or "all", "-" if ratio is None else f"{100 * ratio:.0f}%", *cells, "+".join(won)])
    widths = [max(len(r[c]) for r in [head, *[b for b in body if b]]) for c in range(len(head))]
    left = {0, 1, len(head) - 1}

    def line(r: list[str]) -> str:
        return "  ".join(v.ljust(w) if c in left else v.rjust(w) for c, (v, w) in enumerate(zip(r, widths))).rstrip()

    return "\n".join([line(head), *[line(r) if r else "" for r in body]])


def terminal_summary(doc: dict) -> str:
    """The terminal table, then the winners per axis, the speed of each method, where the time went, and
    the FID caveat when FID was scored."""
    parts = [terminal_table(doc), ""]
    parts += [f"winner, {line}" for line in verdict_lines(doc)]
    speed = ", ".join(f"{n} {fmt(num(e.get('ms_per_image')))}" for n, e in doc["methods"].items())
    parts.append(f"ms per image: {speed}")
    if timing_text(doc):
        parts.append(timing_text(doc))
    note = "* best of the column per mask kind."
    if any(group_value(e, "all", None, "fid") is not None for e in doc["methods"].values()):
        note += " " + FID_NOTE
    parts.append(note)
    return "\n".join(textwrap.fill(p, 100, break_on_hyphens=False) if len(p) > 100 and "  " not in p else p
                     for p in parts)


def md_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- pictures

FillFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
TILE = 128  # px per image in the pictures (64 px faces shown at 2x, nearest neighbour)


@dataclass
class Pictures:
    """Picture files of a report, relative to the folder they were written to."""

    headline: str | None = None
    side_by_side: dict[str, str] = field(default_factory=dict)  # mask kind -> file
    failures: dict[str, str] = field(default_factory=dict)  # method -> file
    rows: int = 0

    def prefixed(self, prefix: str) -> "Pictures":
        """The same pictures seen from a page `prefix` above their folder (e.g. "compare/")."""
        return Pictures(prefix + self.headline if self.headline else None,
                        {k: prefix + v for k, v in self.side_by_side.items()},
                        {k: prefix + v for k, v in self.failures.items()}, self.rows)


def resolve_fillers(doc: dict, device, given: dict[str, FillFn] | None = None) -> dict[str, FillFn | None]:
    """A fill function per method: given ones first, peers by name, models from their checkpoint when it
    still exists; None when a method cannot be re-run (its pictures show "n/a")."""
    from genfill.models import load_model
    from genfill.peers import PEERS

    out: dict[str, FillFn | None] = {}
    for name, e in doc["methods"].items():
        if given and name in given:
            out[name] = given[name]
        elif e.get("kind") == "peer" and e.get("source") in PEERS:
            out[name] = PEERS[e["source"]]
        elif e.get("source") and Path(e["source"]).exists():
            model, _ = load_model(e["source"], device)
            out[name] = model.fill
        else:
            out[name] = None
    return out


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def labelled_grid(tiles: list[list[torch.Tensor | None]], col_labels: list[str], row_labels: list[str],
                  highlight_col: int | None = None, tile: int = TILE):
    """A PIL image: tiles[r][c] (C,H,W) in [-1, 1] (None = a grey "n/a" tile) upscaled to `tile` px, column
    labels drawn above, row labels on the left; `highlight_col` gets a coloured header and frame."""
    from PIL import Image, ImageDraw

    from genfill.pixels import to_uint8

    f_col, f_row = _font(15), _font(13)
    pad, head, left = 4, 26, 86
    n_rows, n_cols = len(tiles), len(col_labels)
    w = left + n_cols * (tile + pad) + pad
    h = head + n_rows * (tile + pad) + pad
    im = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(im)
    for c, lab in enumerate(col_labels):
        x0 = left + pad + c * (tile + pad)
        if c == highlight_col:
            draw.rectangle([x0 - 2, 0, x0 + tile + 1, h - 1], fill="#fde2c8")
        text = lab
        while draw.textlength(text, font=f_col) > tile and len(text) > 3:
            text = text[:-2] + "\u2026" if not text.endswith("\u2026") else text[:-2] + "\u2026"
        tw = draw.textlength(text, font=f_col)
        draw.text((x0 + (tile - tw) / 2, 5), text, fill="#111", font=f_col)
    for r, (row, lab) in enumerate(zip(tiles, row_labels)):
        y0 = head + pad + r * (tile + pad)
        for i, line in enumerate(lab.split("\n")[:3]):
            draw.text((6, y0 + 4 + 16 * i), line, fill="#333", font=f_row)
        for c, t in enumerate(row):
            x0 = left + pad + c * (tile + pad)
            if t is None:
                draw.rectangle([x0, y0, x0 + tile - 1, y0 + tile - 1], fill="#ddd")
                draw.text((x0 + tile / 2 - 10, y0 + tile / 2 - 8), "n/a", fill="#666", font=f_row)
                continue
            a = to_uint8(t.float().cpu())
            a = a.repeat(1, 1, 3) if a.shape[-1] == 1 else a
            im.paste(Image.fromarray(a.numpy()).resize((tile, tile), Image.NEAREST), (x0, y0))
    return im


def _fills(x: torch.Tensor, m: torch.Tensor, fillers: dict[str, FillFn | None]) -> dict[str, torch.Tensor | None]:
    out = {}
    for name, fn in fillers.items():
        if fn is None:
            out[name] = None
            continue
        with torch.no_grad():
            dev = x.device
            try:
                dev = next(fn.__self__.parameters()).device  # a model's bound fill: its device
            except (AttributeError, StopIteration, TypeError):
                pass
            out[name] = fn(x.to(dev), m.to(dev)).float().cpu()
    return out


def _panel(data, proto: dict, items: list[tuple[str, int]], fillers: dict[str, FillFn | None],
           row_label: Callable[[str, int, float], str], highlight: str | None = None):
    """The labelled grid of `items` [(mask kind, position in the split)]: original / masked / each method."""
    from genfill.masks import masks_at
    from genfill.pixels import show_masked

    ids = data.split(proto["split"])
    x = torch.cat([data.batch(ids[i].view(1), "cpu") for _, i in items])
    m = torch.cat([masks_at(k, [i], data.size, data.size, seed=proto["seed"], **proto["masks"][k]) for k, i in items])
    fills = _fills(x, m, fillers)
    names = list(fillers)
    tiles = [[x[r], show_masked(x, m)[r], *[None if fills[n] is None else fills[n][r] for n in names]]
             for r in range(len(items))]
    labels = [row_label(k, i, float(m[r].mean())) for r, (k, i) in enumerate(items)]
    hl = 2 + names.index(highlight) if highlight in names else None
    return labelled_grid(tiles, ["original", "masked", *names], labels, hl)


def make_pictures(doc: dict, data, fillers: dict[str, FillFn | None], out_dir: Path, rows: int = 4,
                  gallery_name: Callable[[str], str] | None = None, gallery_rows: int = 4) -> Pictures:
    """Write the report's pictures into out_dir: `headline.png` (image i under mask kind i, one row each),
    `side_<kind>.png` (the first `rows` test images under that kind) and a failure gallery per method
    (its `gallery_rows` worst images by hole MSE, `entry["failures"]`, with every method's fill of them). `data` holds the
    protocol's split (positions as in eval.json). File names are returned relative to out_dir."""
    proto = doc["protocol"]
    out_dir = Path(out_dir)
    make_dir(out_dir)
    kinds = list(proto["masks"])
    n = min(proto["n"], len(data.split(proto["split"])))
    pics = Pictures(rows=min(rows, n))
    if n == 0 or not fillers:
        return pics

    def label(k: str, i: int, r: float) -> str:
        return f"#{i}\n{k}\n{100 * r:.0f}% hole"

    items = [(k, j % n) for j, k in enumerate(kinds)]
    save_pil(_panel(data, proto, items, fillers, label), out_dir / "headline.png")
    pics.headline = "headline.png"
    for k in kinds:
        name = f"side_{slug(k)}.png"
        save_pil(_panel(data, proto, [(k, i) for i in range(pics.rows)], fillers, label), out_dir / name)
        pics.side_by_side[k] = name
    for meth, e in doc["methods"].items():
        worst = [(f["mask"], f["index"]) for f in e.get("failures") or [] if f["mask"] in proto["masks"]
                 and f["index"] < n][:gallery_rows]
        if not worst:
            continue
        name = gallery_name(meth) if gallery_name else f"failures_{slug(meth)}.png"
        make_dir((out_dir / name).parent)
        save_pil(_panel(data, proto, worst, fillers, label, highlight=meth), out_dir / name)
        pics.failures[meth] = name
    return pics


def plural_picture(data, proto: dict, model, k: int, path: Path, shown: int = 6) -> None:
    """Test image i under mask kind i (the headline's items), one row each: input (hole white), `shown` of
    the model's fills (seeded by the protocol's seed), the heat map of their spread (`pixels.plural_panel`)."""
    from genfill.masks import masks_at
    from genfill.metrics.uncertainty import spread
    from genfill.pixels import plural_panel

    kinds = list(proto["masks"])
    n = min(proto["n"], len(data.split(proto["split"])))
    ids = data.split(proto["split"])
    dev = next(model.parameters()).device
    items = [(kind, j % n) for j, kind in enumerate(kinds)]
    x = torch.cat([data.batch(ids[i].view(1), "cpu") for _, i in items]).to(dev)
    m = torch.cat([masks_at(kd, [i], data.size, data.size, seed=proto["seed"], **proto["masks"][kd])
                   for kd, i in items]).to(dev)
    with torch.no_grad():
        fills = model.fill_samples(x, m, min(k, shown), torch.Generator(dev).manual_seed(proto["seed"]))
    save_image(plural_panel(x, m, fills, spread(fills) / 2 * m), path)


def save_pil(im, path: Path) -> None:
    """A PIL image written atomically (through io.save_image's uint8 path)."""
    import numpy as np

    arr = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float().div(127.5).sub(1)
    save_image(arr, path)


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
