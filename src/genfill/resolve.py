"""One resolver: a name, a run, a checkpoint or an export -> a `Filler` (what fills, and what it is).

A spec is a classical peer's name (telea, ns, biharmonic, patchmatch, mean), a run directory (its best
checkpoint, else its last), a checkpoint file (.pt) or an exported folder (model.safetensors + config.json).
The Python API (`genfill.load`, so also `genfill fill` and the page of `genfill serve`), `genfill eval` and the
reports' pictures (`fillers_of`, for evaluations read back by `genfill compare`) all resolve through here, so a
name means the same thing everywhere and a bad one fails with the same line. A peer is chosen only by a
string; a `Path` is always a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from genfill.device import pick_device
from genfill.errors import GenfillError, did_you_mean
from genfill.export import is_export_dir, load_export
from genfill.models import GenModel, load_model
from genfill.peers import PEERS
from genfill.pixels import FillFn


@dataclass
class Filler:
    """What a spec resolved to: a classical peer (`model` None) or a model loaded in eval mode."""

    name: str  # the peer's name, a run's own name (else its path's stem), an export's folder name
    source: str  # the peer's name, the checkpoint file or the export folder (eval.json's "source")
    kind: str  # "peer" or the model's family
    fill: FillFn  # (N,C,H,W) in [-1, 1] under (N,1,H,W) masks, 1 = hole -> the composited fill
    model: GenModel | None = None
    data: dict | None = None  # a run's own data config (its checkpoint's run config), None otherwise
    blend: str | None = None  # a sampler's exemplar blend when it was set at load (`with_blend`), else None

    @property
    def parameters(self) -> int | None:
        return None if self.model is None else self.model.num_parameters()


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long for the file system is not a run either
        return False


def not_found(spec: str | Path) -> str:
    """The one line for a spec that is neither a peer nor an existing path (a .pt file is a checkpoint)."""
    if Path(spec).suffix == ".pt":
        return f"checkpoint not found: {spec}"
    return (f"run not found: {spec}{did_you_mean(spec, PEERS)} is neither a peer ({', '.join(PEERS)}) nor a run "
            "directory, checkpoint or export")


def resolve(spec: str | Path, device: str | torch.device = "auto") -> Filler:
    """The Filler that `spec` names; a model is loaded onto `device` ("auto" picks one) in eval mode."""
    if isinstance(spec, str) and spec in PEERS:
        return Filler(spec, spec, "peer", PEERS[spec])
    path = Path(spec)
    if not _exists(path):
        raise GenfillError(not_found(spec))
    dev = device if isinstance(device, torch.device) else pick_device(str(device))
    if is_export_dir(path):
        model, _ = load_export(path, dev)
        return Filler(path.resolve().name or str(path), str(path), model.kind, model.fill, model)
    model, ckpt = load_model(path, dev)
    run_cfg = ckpt.get("run_config", {})
    return Filler(run_cfg.get("name") or path.stem, ckpt["path"], ckpt["kind"], model.fill, model,
                  run_cfg.get("data"))


def set_blend(model: GenModel | None, blend: str) -> bool:
    """Make a sampler draw with exemplar blend `blend` (its `use_blend`, which refuses a bad name or a sampler
    without stored faces in one line) and say so (True); any other model, or none, is left as it is (False)."""
    if model is None or not hasattr(model, "use_blend"):
        return False
    model.use_blend(blend)
    return True


def with_blend(filler: Filler, blend: str) -> bool:
    """`set_blend` on a Filler's model, noted in `filler.blend` when it took."""
    if not set_blend(filler.model, blend):
        return False
    filler.blend = blend
    return True


def fillers_of(doc: dict, device: str | torch.device, given: dict[str, FillFn] | None = None
               ) -> dict[str, FillFn | None]:
    """A fill per method of an evaluation document (eval.json): the `given` ones first, peers by name, models
    from their source while it still exists; None for a method that cannot be re-run (its pictures show "n/a")."""
    out: dict[str, FillFn | None] = {}
    for name, e in doc["methods"].items():
        source = e.get("source")
        if given and name in given:
            out[name] = given[name]
        elif e.get("kind") == "peer" and source in PEERS:
            out[name] = PEERS[source]
        elif source and _exists(Path(source)):
            filler = resolve(Path(source), device)
            if e.get("blend"):  # evaluated with another blend than its config's: draw its pictures alike
                with_blend(filler, e["blend"])
            out[name] = filler.fill
        else:
            out[name] = None
    return out
