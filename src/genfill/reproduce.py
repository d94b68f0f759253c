"""`genfill reproduce`: seed 001's pipeline in one command. Build the data, train every model a preset lists,
evaluate them next to the classical peers on the same images and holes, and write `<out>/<name>/report.html`
(tables, the quality-vs-speed plot, training curves, sample grids, morphs, failure galleries).

A preset is a YAML file (configs/reproduce/quick.yaml, full.yaml):

    name: reproduce                 # the run folder under out_dir; an earlier one is archived, never deleted
    out_dir: runs
    set: [data.count=5000]          # overrides applied to every model config
    models:                         # config names (./configs/, the preset's own folder tree, or shipped)
      - vae-faces64                 #   or paths; a config that cannot be found stops the run before anything
      - {config: gan-faces64, name: gan, set: [train.time_budget_s=90]}
    eval: {n: 200, masks: [thin, medium, thick, square], fid: false, peers: [telea, ns, biharmonic, patchmatch, mean]}
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from genfill.compare import merge, plot_section, render_comparison
from genfill.config import (EVAL_MASKS, EVAL_SEED, PEER_NAMES, DataConfig, from_dict, list_configs, read_yaml,
                            resolve_config, to_dict)
from genfill.data.cache import load_cache
from genfill.data.datasets import source_key
from genfill.device import pick_device
from genfill.errors import GenfillError, did_you_mean
from genfill.evaljob import evaluate_specs, load_eval
from genfill.io import archive_previous, atomic_write_json, make_dir
from genfill.loadconfig import load_config
from genfill.models import load_model
from genfill.progress import Progress, say
from genfill.report import esc, figure, results_sections, table, write_page
from genfill.sample import interpolate, sample_grid
from genfill.train import TrainResult, train


@dataclass
class ModelEntry:
    config: str  # a config name from configs/ or a YAML path
    name: str | None = None  # the run's name (default: the config's stem)
    set: list[str] = field(default_factory=list)  # overrides for this model only


@dataclass
class EvalSettings:
    n: int = 200  # test images (each under every mask kind)
    masks: list[str] = field(default_factory=lambda: list(EVAL_MASKS))
    seed: int = EVAL_SEED  # mask seed: every method sees the same holes
    fid: bool = False  # FID/KID (Inception at 299x299, slow on a CPU)
    lpips: bool = True
    peers: list[str] = field(default_factory=lambda: list(PEER_NAMES))
    gallery: int = 8  # worst images per method in the failure gallery
    samples: int = 64  # prior samples per generative model


@dataclass
class Preset:
    name: str = "reproduce"
    out_dir: str = "runs"
    set: list[str] = field(default_factory=list)
    models: list[ModelEntry] = field(default_factory=list)
    eval: EvalSettings = field(default_factory=EvalSettings)


def find_preset(preset: str) -> Path:
    """A preset YAML path, or a preset name in ./configs/reproduce/ or shipped with genfill (quick, full)."""
    return resolve_config(preset, "reproduce", "reproduce preset")


def load_preset(preset: str) -> Preset:
    raw = read_yaml(find_preset(preset))
    models = raw.get("models") or []
    if not isinstance(models, list):
        raise GenfillError("models: expected a list of config names or {config: ..., set: [...]} mappings")
    raw["models"] = [{"config": m} if isinstance(m, str) else m for m in models]
    return from_dict(Preset, raw)


def _config_path(name: str, preset_path: Path) -> Path | None:
    """A model config of a preset: a path, or a name looked up next to the preset's folder (a user's own
    configs/reproduce/x.yaml finds its sibling configs/NAME.yaml), then in ./configs/ and the shipped ones."""
    p = Path(name)
    if not p.is_file() and not p.suffix:
        for folder in (preset_path.parent.parent, preset_path.parent):
            if (folder / f"{p.name}.yaml").is_file():
                return folder / f"{p.name}.yaml"
    try:
        return resolve_config(name)
    except GenfillError:
        return None


def _link_earlier_runs(cfg, earlier: list) -> None:
    """A model key naming a run (e.g. the prior's `vqvae: runs/vqvae-faces64`) that this preset trains
    earlier points at that run's folder under the preset's root instead."""
    runs = {c.name: str(c.run_dir) for c in earlier}
    for key, value in cfg.model.items():
        if key != "kind" and isinstance(value, str) and Path(value).name in runs:
            cfg.model[key] = runs[Path(value).name]


def _plan(preset: Preset, root: Path, preset_path: Path) -> list:
    """Every model config of the preset, loaded with the preset's overrides. One that cannot be found stops
    here, before anything is built or trained: a "reproduction" without its models would be a peers-only
    report under the preset's name."""
    missing = [e.config for e in preset.models if _config_path(e.config, preset_path) is None]
    if missing:
        known = [c.name for c in list_configs() if c.section == "train"]
        raise GenfillError(f"preset {preset_path.name}: model config not found: {', '.join(missing)}"
                           f"{did_you_mean(missing[0], known)} (looked in {preset_path.parent.parent}, ./configs "
                           "and genfill's own configs; `genfill configs` lists them)")
    cfgs = []
    for entry in preset.models:
        path = _config_path(entry.config, preset_path)
        name = entry.name or Path(entry.config).stem
        cfg = load_config(path, [*preset.set, *entry.set, f"name={name}", f"out_dir={root}"])
        _link_earlier_runs(cfg, cfgs)
        cfgs.append(cfg)
    names = [c.name for c in cfgs]
    if len(set(names)) != len(names):
        raise GenfillError(f"two models in the preset share a run name ({', '.join(names)}): give one a name:")
    keys = {source_key(c.data) for c in cfgs}
    if len(keys) > 1:
        raise GenfillError(f"the preset's models train on different data ({', '.join(sorted(keys))}); a fair "
                           "comparison needs one dataset: set data.* in the preset's `set`")
    return cfgs


def plan_reproduce(preset: str = "quick", out_dir: str | None = None) -> dict[str, str]:
    """What `genfill reproduce` would do, resolved and validated but nothing built or trained (--dry-run)."""
    path = find_preset(preset)
    p = load_preset(preset)
    root = Path(out_dir or p.out_dir) / p.name
    cfgs = _plan(p, root, path)
    out = {"preset": str(path), "report": str(root / "report.html")}
    for cfg in cfgs:
        out[f"model {cfg.name}"] = f"{cfg.model['kind']} -> {cfg.run_dir}"
    data = _data_config(p, cfgs)
    out["data"] = f"{source_key(data)} in {data.cache_root}"
    out["eval"] = (f"{p.eval.n} test images x {', '.join(p.eval.masks)}; peers {', '.join(p.eval.peers) or 'none'}"
                   f"; fid {'on' if p.eval.fid else 'off'}")
    return out


def _data_config(p: Preset, cfgs: list) -> DataConfig:
    """The data every model of the preset trains on (the first's; `_plan` checked they agree), or the preset's
    own `data.*` overrides when it lists peers only."""
    return cfgs[0].data if cfgs else load_config(None, [s for s in p.set if s.startswith("data.")]).data


def _train_all(p: Preset, cfgs: list, device: str, verbose: bool) -> list[tuple]:
    """(config, TrainResult) per model, trained in the preset's order."""
    trained: list[tuple] = []
    with Progress(len(cfgs), f"reproduce {p.name}: training", "models", enabled=verbose) as bar:
        for cfg in cfgs:
            say(f"genfill: training {cfg.name} ({cfg.model['kind']})")
            trained.append((cfg, train(cfg, device=device, verbose=verbose)))
            bar.update(1)
    return trained


def _evaluate_all(p: Preset, cfgs: list, data_cfg: DataConfig, root: Path, device: str, verbose: bool):
    """Models and peers evaluated together (one protocol, one table), rendered as a comparison: (the merged
    document, its pictures, its plot's file name)."""
    ev = p.eval
    specs = [str(cfg.run_dir) for cfg in cfgs] + list(ev.peers)
    say(f"genfill: evaluating {', '.join(Path(s).name for s in specs)} on {ev.n} test images x {len(ev.masks)} "
        "mask kinds")
    path = evaluate_specs(specs, root / "eval", data=to_dict(data_cfg), masks=ev.masks, n=ev.n, fid=ev.fid,
                          seed=ev.seed, device=device, lpips=ev.lpips, gallery=ev.gallery, verbose=verbose,
                          report=False)  # the pictures and page are the comparison's, below
    doc, folder = load_eval(path)
    merged = merge([(doc, folder, str(path))])
    _, pics, plot = render_comparison(merged, root / "compare", title=f"genfill {p.name}: comparison", device=device)
    return merged, pics, plot


def _model_pictures(trained: list[tuple[object, TrainResult]], ev: EvalSettings, pool, root: Path,
                    device: str) -> tuple[list[list], list[str]]:
    """Per model: its row of the training table, and its curves, prior samples and morphs (what it can do)."""
    dev = pick_device(device)
    rows, figs = [], []
    for cfg, res in trained:
        model, _ = load_model(cfg.run_dir, dev)
        rows.append([cfg.name, cfg.model["kind"], model.num_parameters(), res.step, res.epoch, round(res.seconds, 1)])
        rel = cfg.run_dir.relative_to(root)
        own = []
        if (cfg.run_dir / "curves.png").is_file():
            own.append(figure(f"{rel}/curves.png", f"{cfg.name}: training curves (train and validation)"))
        if model.can_sample:
            sample_grid(model, ev.samples, cfg.run_dir / "samples_grid.png")
            own.append(figure(f"{rel}/samples_grid.png", f"{cfg.name}: {ev.samples} prior samples"))
        if model.can_interpolate:
            interpolate(model, cfg.run_dir / "morph.png", rows=4, steps=8, pool=pool.to(dev))
            own.append(figure(f"{rel}/morph.png", f"{cfg.name}: morphs between encoded test faces"))
        figs += [f"<h3>{esc(cfg.name)}</h3>", *own]
    return rows, figs


def run_reproduce(preset: str = "quick", out_dir: str | None = None, device: str = "auto",
                  verbose: bool = True) -> Path:
    """`genfill reproduce` (module docstring): train, evaluate with the peers, draw, write `report.html`."""
    t0 = time.time()
    p = load_preset(preset)
    root = Path(out_dir or p.out_dir) / p.name
    cfgs = _plan(p, root, find_preset(preset))
    if not cfgs and not p.eval.peers:
        raise GenfillError("the preset lists no models and no peers: nothing to do")
    moved = archive_previous(root)
    if moved:
        say(f"genfill: kept the previous {p.name} as {moved}")
    make_dir(root)
    trained = _train_all(p, cfgs, device, verbose)
    data_cfg = _data_config(p, cfgs)
    merged, pics, plot = _evaluate_all(p, cfgs, data_cfg, root, device, verbose)
    data = load_cache(data_cfg, verbose=False)
    model_rows, model_figs = _model_pictures(trained, p.eval, data.batch(data.split("test")[:64]), root, device)

    # ---- the record and the page
    ev, wall = p.eval, time.time() - t0
    atomic_write_json(root / "reproduce.json", {
        "preset": str(find_preset(preset)), "models": [c.name for c in cfgs],
        "peers": list(ev.peers), "wall_seconds": round(wall, 1), "eval": to_dict(ev),
        "train": {c.name: {"steps": r.step, "seconds": round(r.seconds, 1)} for c, r in trained}})
    intro = [
        f"<p>Preset <code>{esc(find_preset(preset).name)}</code>: {len(cfgs)} model(s) trained on "
        f"<code>{esc(to_dict(data_cfg)['name'])}</code> ({esc(data.key)}), evaluated with the classical peers "
        f"{esc(', '.join(ev.peers))}. Total wall time {wall / 60:.1f} min. Reproduce with "
        f"<code>genfill reproduce --preset {esc(Path(preset).stem)}</code> (or <code>make reproduce</code>).</p>",
    ]
    details = plot_section(f"compare/{plot}" if plot else None)
    if model_rows:
        details += ["<h2>Training</h2>", table(["model", "kind", "parameters", "steps", "epochs", "train s"],
                                               model_rows), *model_figs]
    raw = [("reproduce.json", "reproduce.json"), ("compare/compare.json", "compare.json"),
           ("eval/records.csv", "records.csv"), ("compare/comparison.html", "comparison page")]
    body = results_sections(merged, pics.prefixed("compare/"), intro, details, raw)
    report = write_page(root / "report.html", f"genfill {p.name}", body)
    say(f"genfill: reproduce finished in {wall / 60:.1f} min -> {report}")
    return report
