"""`genfill compare`: one table, one plot and one failure gallery for several evaluated methods.

Inputs are eval.json files (or folders holding one) and run directories / checkpoints, which are evaluated on
the fly under the protocol of the first eval.json (or the given settings when there is none); `peers` adds the
classical peers, evaluated the same way. Every input must have been scored on the same images under the same
holes (data, split, n, mask kinds, seed): anything else is an error, never a silently unfair table.
"""

from __future__ import annotations

import math
from pathlib import Path

from genfill.errors import GenfillError
from genfill.evaljob import DEFAULT_MASKS, DEFAULT_SEED, EVAL_FORMAT, Protocol, evaluate_specs, load_eval, slug
from genfill.evaluate import BUCKETS
from genfill.io import atomic_write_bytes, atomic_write_json, atomic_write_text, make_dir, save_figure
from genfill.report import esc, figure, table, write_page

# (key in a summary group, column title, "max" | "min" is better)
OVERALL = [("psnr", "PSNR dB", "max"), ("ssim", "SSIM", "max"), ("psnr_hole", "PSNR hole", "max"),
           ("ssim_hole", "SSIM hole", "max"), ("l1_hole", "L1 hole", "min"), ("edge_hole", "edge hole", "min"),
           ("lpips", "LPIPS", "min")]
BY_GROUP = [("psnr_hole", "PSNR in the hole (dB)", "max"), ("l1_hole", "L1 in the hole", "min"),
            ("ssim_hole", "SSIM in the hole", "max"), ("lpips", "LPIPS (whole image)", "min")]


def _is_eval(path: Path) -> bool:
    return path.suffix == ".json" or (path.is_dir() and (path / "eval.json").is_file())


def merge(docs: list[tuple[dict, Path, str]]) -> dict:
    """Merge eval documents [(doc, folder, label)] after checking they share one protocol; method names that
    collide get a suffix. Each method remembers the folder its gallery lies in (`_dir`)."""
    if not docs:
        raise GenfillError("nothing to compare")
    base, _, base_label = docs[0]
    proto = Protocol.from_dict(base["protocol"])
    merged = {"format": EVAL_FORMAT, "protocol": base["protocol"], "methods": {}}
    for doc, folder, label in docs:
        diff = proto.mismatch(Protocol.from_dict(doc["protocol"]))
        if diff:
            raise GenfillError(f"{label} was evaluated on other images or holes than {base_label} ({diff}); "
                               "re-run genfill eval with the same --data, --masks, -n and --seed")
        for name, entry in doc["methods"].items():
            key, i = name, 2
            while key in merged["methods"]:
                key, i = f"{name}-{i}", i + 1
            merged["methods"][key] = {**entry, "_dir": str(folder)}
    return merged


def collect(inputs: list[str], out_dir: Path, peers: bool = False, data: str | None = None,
            masks: str = DEFAULT_MASKS, n: int = 500, seed: int = DEFAULT_SEED, fid: bool = False,
            device: str = "auto", verbose: bool = True) -> dict:
    """Load eval.json inputs, evaluate run directories (and the peers) on the fly under the same protocol."""
    from genfill.peers import PEERS

    docs, pending = [], []
    for item in inputs:
        p = Path(item)
        if not p.exists():
            raise GenfillError(f"not found: {item}")
        if _is_eval(p):
            doc, folder = load_eval(p)
            docs.append((doc, folder, str(p)))
        else:
            pending.append(str(p))
    if peers:  # the peers no loaded evaluation already holds
        have = {e["source"] for doc, _, _ in docs for e in doc["methods"].values() if e["kind"] == "peer"}
        pending += [p for p in PEERS if p not in have]
    if pending:
        kw = dict(data=data, masks=masks, n=n, seed=seed)
        if docs:  # the same images and holes as the first evaluation
            pr = docs[0][0]["protocol"]
            kw = dict(data=pr["data"], masks=pr["masks"], n=pr["n"], seed=pr["seed"])
            if pr["split"] != "test":
                kw["split"] = pr["split"]
        path = evaluate_specs(pending, out_dir / "evals", fid=fid, device=device, verbose=verbose, **kw)
        doc, folder = load_eval(path)
        docs.append((doc, folder, "the on-the-fly evaluation of " + ", ".join(pending)))
    return merge(docs)


def _num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _cell(v):
    return "-" if v is None else v


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def tables(doc: dict) -> list[tuple[str, list[str], list[list], dict[int, str]]]:
    """Every table of a comparison as (title, headers, rows, best columns); shared by the HTML and Markdown."""
    methods = doc["methods"]
    out = []
    head = ["method", "kind", "parameters", "ms / image", *[t for _, t, _ in OVERALL], "FID", "KID"]
    rows = []
    for name, e in methods.items():
        s = e["summary"]["all"]
        rows.append([name, e["kind"], _cell(e.get("parameters")), _num(e.get("ms_per_image")),
                     *[_cell(_num(s.get(k))) for k, _, _ in OVERALL], _cell(_num(e.get("fid"))),
                     _cell(_num(e.get("kid")))])
    best = {3: "min", **{4 + i: how for i, (_, _, how) in enumerate(OVERALL)}, len(head) - 2: "min",
            len(head) - 1: "min"}
    out.append(("All evaluated images", head, rows, best))

    first = next(iter(methods.values()))["summary"]
    kinds = list(first["mask"])
    buckets = [b for b in BUCKETS if any(b in e["summary"]["bucket"] for e in methods.values())]
    for key, title, how in BY_GROUP:
        if not any(key in e["summary"]["all"] for e in methods.values()):
            continue
        rows = [[name, *[_cell(_num(e["summary"]["mask"].get(k, {}).get(key))) for k in kinds]]
                for name, e in methods.items()]
        head = ["method", *[f"{k} ({100 * (_num(first['mask'][k].get('hole_ratio')) or 0):.0f}% hole)"
                            for k in kinds]]
        out.append((f"{title} by mask kind", head, rows, {i + 1: how for i in range(len(kinds))}))
        counts = {b: max(e["summary"]["bucket"].get(b, {}).get("count", 0) for e in methods.values())
                  for b in buckets}
        rows = [[name, *[_cell(_num(e["summary"]["bucket"].get(b, {}).get(key))) for b in buckets]]
                for name, e in methods.items()]
        out.append((f"{title} by hole ratio", ["method", *[f"{b} (n={counts[b]})" for b in buckets]], rows,
                    {i + 1: how for i in range(len(buckets))}))

    losses = {name: e["test_loss"] for name, e in methods.items() if e.get("test_loss")}
    if losses:
        parts = list(dict.fromkeys(k for t in losses.values() for k in t if k != "by_mask"))
        rows = [[name, *[_cell(_num(t.get(p))) for p in parts]] for name, t in losses.items()]
        out.append(("Test-set loss parts (eval mode, evaluated holes)", ["model", *parts], rows,
                    {i + 1: "min" for i in range(len(parts))}))
    sfid = {name: e["sample_fid"] for name, e in methods.items() if e.get("sample_fid")}
    if sfid:
        rows = [[name, _num(v.get("fid")), _num(v.get("kid"))] for name, v in sfid.items()]
        out.append(("Prior samples vs test images", ["model", "FID", "KID"], rows, {1: "min", 2: "min"}))
    return out


def protocol_text(doc: dict) -> str:
    p = doc["protocol"]
    masks = ", ".join(p["masks"])
    return (f"{p['n']} {p['split']} images of {p['data_key']}, mask kinds {masks}, mask seed {p['seed']}; "
            "every method fills the same images under the same holes; metrics on the composited output "
            "(L1/MSE on the [0, 1] scale, PSNR in dB with peak 1; 'hole' = over hole pixels only). "
            "Hole-ratio buckets are half-open [lo, hi): exactly 10% counts in 10-20%.")


def md_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def quality_speed_plot(doc: dict, path: Path) -> Path | None:
    """PSNR in the hole against inference time per image (log scale), one labelled point per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(name, e.get("ms_per_image"), e["summary"]["all"].get("psnr_hole"), e["kind"] == "peer")
           for name, e in doc["methods"].items()]
    pts = [p for p in pts if _num(p[1]) and _num(p[2]) is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, ms, q, peer in pts:
        ax.scatter([max(ms, 1e-3)], [q], c="grey" if peer else "tab:blue", marker="s" if peer else "o", s=40)
        ax.annotate(name, (max(ms, 1e-3), q), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("inference ms per image (log)")
    ax.set_ylabel("PSNR in the hole (dB, higher is better)")
    ax.set_title("quality vs speed (grey squares: classical peers)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def copy_galleries(doc: dict, out_dir: Path) -> dict[str, str]:
    """Copy each method's failure gallery next to the comparison: {method: relative path}."""
    out = {}
    for name, e in doc["methods"].items():
        src = Path(e.get("_dir", ".")) / e["gallery"] if e.get("gallery") else None
        if src is None or not src.is_file():
            continue
        rel = f"galleries/{slug(name)}.png"
        if src.resolve() != (out_dir / rel).resolve():
            atomic_write_bytes(out_dir / rel, src.read_bytes())  # the one writer: no link or device clobbered
        out[name] = rel
    return out


def html_sections(doc: dict, galleries: dict[str, str], plot: str | None, prefix: str = "") -> list[str]:
    """The comparison as HTML fragments; picture paths get `prefix` (the comparison folder, relative to the
    page that includes them)."""
    body = [f"<p>{esc(protocol_text(doc))}</p>"]
    for title, head, rows, best in tables(doc):
        body += [f"<h3>{esc(title)}</h3>", table(head, rows, best)]
    if plot:
        body += ["<h3>Quality vs speed</h3>", figure(prefix + plot, "PSNR in the hole vs inference time per image")]
    if galleries:
        body.append("<h3>Failure gallery: worst images by hole MSE</h3>")
        for name, rel in galleries.items():
            fails = doc["methods"][name].get("failures") or []
            which = ", ".join(f"#{f['index']} {f['mask']} ({100 * f['hole_ratio']:.0f}%)" for f in fails)
            body.append(figure(prefix + rel, f"{name} - rows: original, masked, fill; {which}"))
    return body


def markdown(doc: dict, galleries: dict[str, str], plot: str | None) -> str:
    parts = ["# genfill comparison", "", protocol_text(doc), ""]
    for title, head, rows, _ in tables(doc):
        parts += [f"## {title}", "", md_table(head, rows), ""]
    if plot:
        parts += ["## Quality vs speed", "", f"![quality vs speed]({plot})", ""]
    if galleries:
        parts += ["## Failure gallery (worst by hole MSE; rows original / masked / fill)", ""]
        parts += [f"### {name}\n\n![{name}]({rel})\n" for name, rel in galleries.items()]
    return "\n".join(parts) + "\n"


def write_comparison(doc: dict, out_dir: Path, title: str = "genfill comparison") -> Path:
    """compare.json, comparison.md, comparison.html, quality_speed.png and galleries/ in out_dir."""
    make_dir(out_dir)
    galleries = copy_galleries(doc, out_dir)
    plot = "quality_speed.png" if quality_speed_plot(doc, out_dir / "quality_speed.png") else None
    clean = {**doc, "methods": {k: {kk: vv for kk, vv in v.items() if kk != "_dir"} for k, v in doc["methods"].items()}}
    atomic_write_json(out_dir / "compare.json", clean)
    atomic_write_text(out_dir / "comparison.md", markdown(doc, galleries, plot))
    return write_page(out_dir / "comparison.html", title, html_sections(doc, galleries, plot))


def run_compare(inputs: list[str], out_dir: str | Path = "runs/compare", peers: bool = False, **kw) -> Path:
    """The `genfill compare` job; returns comparison.html."""
    out = Path(out_dir)
    if not inputs and not peers:
        raise GenfillError("compare needs eval.json files, run directories, or --peers")
    return write_comparison(collect(inputs, out, peers=peers, **kw), out)
