"""`genfill compare`: one report (genfill.report's shared page), one plot and the Markdown tables for several
evaluated methods.

Inputs are eval.json files (or folders holding one) and run directories / checkpoints, which are evaluated on
the fly under the protocol of the first eval.json (or the given settings when there is none); `peers` adds the
classical peers, evaluated the same way. Every input must have been scored on the same images under the same
holes (data, split, n, mask kinds, seed): anything else is an error, never a silently unfair table.
"""

from __future__ import annotations

from pathlib import Path

from genfill.config import DataConfig, from_dict
from genfill.data.cache import load_heldout
from genfill.device import pick_device
from genfill.errors import GenfillError
from genfill.evaljob import DEFAULT_MASKS, DEFAULT_SEED, EVAL_FORMAT, Protocol, evaluate_specs, load_eval
from genfill.io import atomic_write_json, atomic_write_text, make_dir, save_figure
from genfill.peers import PEERS
from genfill.pictures import Pictures, make_pictures, slug
from genfill.report import figure, results_sections, write_page
from genfill.resolve import fillers_of
from genfill.verdict import md_table, num, protocol_text, tables

__all__ = ["merge", "collect", "tables", "md_table", "markdown", "render_comparison", "write_comparison",
           "run_compare"]

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
            masks: str = DEFAULT_MASKS, n: int = 500, seed: int = DEFAULT_SEED, fid: bool | None = None,
            device: str = "auto", verbose: bool = True) -> dict:
    """Load eval.json inputs, evaluate run directories (and the peers) on the fly under the same protocol."""
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
        path = evaluate_specs(pending, out_dir / "evals", fid=fid, device=device, verbose=verbose, report=False, **kw)
        doc, folder = load_eval(path)
        docs.append((doc, folder, "the on-the-fly evaluation of " + ", ".join(pending)))
    return merge(docs)


def quality_speed_plot(doc: dict, path: Path) -> Path | None:
    """PSNR in the hole against inference time per image (log scale), one labelled point per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(name, e.get("ms_per_image"), e["summary"]["all"].get("psnr_hole"), e["kind"] == "peer")
           for name, e in doc["methods"].items()]
    pts = [p for p in pts if num(p[1]) and num(p[2]) is not None]
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


def comparison_pictures(doc: dict, out_dir: Path, device: str = "cpu",
                        fillers: dict | None = None) -> Pictures:
    """The report's pictures for a merged comparison, drawn again from the protocol's images and holes: peers
    re-run by name, models from their checkpoints (a method whose checkpoint is gone shows "n/a")."""
    proto = doc["protocol"]
    data = load_heldout(from_dict(DataConfig, proto["data"], prefix="data"), proto["split"], proto["n"], verbose=False)
    dev = pick_device(device)
    return make_pictures(doc, data, fillers_of(doc, dev, fillers), out_dir,
                         gallery_name=lambda name: f"galleries/{slug(name)}.png")


def markdown(doc: dict, pics: Pictures, plot: str | None) -> str:
    parts = ["# genfill comparison", "", protocol_text(doc), ""]
    for title, head, rows, _ in tables(doc):
        parts += [f"## {title}", "", md_table(head, rows), ""]
    if pics.headline:
        parts += ["## One test image per mask kind", "", f"![original, masked, each method]({pics.headline})", ""]
    if plot:
        parts += ["## Quality vs speed", "", f"![quality vs speed]({plot})", ""]
    if pics.failures:
        parts += ["## Failure galleries (each method's worst by hole MSE, with every method's fill)", ""]
        parts += [f"### {name}\n\n![{name}]({rel})\n" for name, rel in pics.failures.items()]
    return "\n".join(parts) + "\n"


def plot_section(plot: str | None) -> list[str]:
    if not plot:
        return []
    return ["<h3>Quality vs speed</h3>", figure(plot, "PSNR in the hole vs inference time per image")]


def render_comparison(doc: dict, out_dir: Path, title: str = "genfill comparison", device: str = "cpu",
                      fillers: dict | None = None) -> tuple[Path, Pictures, str | None]:
    """compare.json, comparison.md, comparison.html, quality_speed.png and the pictures (headline.png,
    side_<kind>.png, galleries/<method>.png) in out_dir -> (the page, its pictures, the plot's file)."""
    make_dir(out_dir)
    pics = comparison_pictures(doc, out_dir, device, fillers)
    plot = "quality_speed.png" if quality_speed_plot(doc, out_dir / "quality_speed.png") else None
    clean = {**doc, "methods": {k: {kk: vv for kk, vv in v.items() if kk != "_dir"} for k, v in doc["methods"].items()}}
    atomic_write_json(out_dir / "compare.json", clean)
    atomic_write_text(out_dir / "comparison.md", markdown(doc, pics, plot))
    body = results_sections(doc, pics, details=plot_section(plot),
                            raw=[("compare.json", "compare.json"), ("comparison.md", "comparison.md")])
    return write_page(out_dir / "comparison.html", title, body), pics, plot


def write_comparison(doc: dict, out_dir: Path, title: str = "genfill comparison", device: str = "cpu") -> Path:
    """Write a comparison's files (see render_comparison); returns comparison.html."""
    return render_comparison(doc, out_dir, title, device)[0]


def run_compare(inputs: list[str], out_dir: str | Path = "runs/compare", peers: bool = False, **kw) -> Path:
    """The `genfill compare` job; returns comparison.html."""
    out = Path(out_dir)
    if not inputs and not peers:
        raise GenfillError("compare needs eval.json files, run directories, or --peers")
    return write_comparison(collect(inputs, out, peers=peers, **kw), out, device=kw.get("device", "auto"))
