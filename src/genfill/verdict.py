"""The verdict of an evaluation document (the eval.json format: a protocol plus per-method summaries by mask
kind and hole-ratio bucket) in numbers and words: a method's value of a metric over a group (`group_value`), the
winner of each mask kind on each axis (`winners`), who beats whom where (`wins`), the detailed tables every
report and `genfill compare` share (`tables`, `plural_table`, `md_table`), and the table `genfill eval` prints
in a terminal (`terminal_summary`). `genfill.report` draws the same verdict as a page.
"""

from __future__ import annotations

import math
import textwrap

from genfill.evaluate import BUCKETS

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
