"""Plain, self-contained HTML reports: headings, tables and pictures referenced by relative paths."""

from __future__ import annotations

import html
from pathlib import Path

from genfill.io import atomic_write_text

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
td.best{font-weight:bold;background:#e8f5e9}
img{max-width:100%;image-rendering:pixelated;border:1px solid #ddd;margin:4px 0}
figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top}
figcaption{font-size:13px;color:#555}
code{background:#f4f4f4;padding:1px 4px}
"""


def esc(text) -> str:
    return html.escape(str(text))


def table(headers: list[str], rows: list[list], best: dict[int, str] | None = None, fmt: str = "{:.4g}") -> str:
    """An HTML table; `best` maps a column index to "max" or "min" to bold the best cell of that column."""
    best = best or {}
    winners = {}
    for col, how in best.items():
        vals = [r[col] for r in rows if isinstance(r[col], (int, float))]
        if vals:
            winners[col] = max(vals) if how == "max" else min(vals)
    out = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr>"]
    for r in rows:
        cells = []
        for i, v in enumerate(r):
            text = fmt.format(v) if isinstance(v, float) else esc(v)
            cls = ' class="best"' if i in winners and v == winners[i] else ""
            cells.append(f"<td{cls}>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</table>"


def figure(src: str, caption: str) -> str:
    return f'<figure><img src="{esc(src)}" alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption></figure>'


def page(title: str, body: list[str]) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n")


def write_page(path: str | Path, title: str, body: list[str]) -> Path:
    atomic_write_text(path, page(title, body))
    return Path(path)


def referenced_files(html_text: str) -> list[str]:
    """Every src/href a page references (for tests that check a report is complete)."""
    import re

    return re.findall(r'(?:src|href)="([^"#:]+)"', html_text)
