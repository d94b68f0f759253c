"""Exported models: a folder with the weights alone and what it takes to rebuild the model.

    DIR/model.safetensors   weights only (the EMA weights when the checkpoint has them; no optimiser state,
                            no discriminator); fp16 with --half (floating tensors only)
    DIR/config.json         kind, model keywords, image size, channels, dtype, where it came from
    DIR/model.onnx          with --onnx: image (N,C,H,W) in [-1, 1] and mask (N,1,H,W) of exactly 0 and 1,
                            1 = hole, in; the composited fill out (`filled`), and for a model with a learned
                            scale (unet `uncertainty: true`) a second output `scale` (N,C,H,W), its Laplace
                            b in [-1, 1] units. Dynamic batch; dynamic H and W (multiples of the model's
                            `size_multiple`) for a fully convolutional family (unet), else H = W = S, the
                            training size. The model's doc_string and metadata_props say all this (see
                            `onnx_metadata`; docs/onnx.md). A `sampler` takes a third input
                            `noise` (N, noise_channels, H, W) at full resolution: the graph is one sampling pass (draw
                            the noise outside, one draw per fill, as `Sampler.noise` does: standard Gaussian at
                            H/s x W/s, s = noise_scale, upsampled by the caller, not in the graph; the metadata
                            says how; all zeros gives the mean fill). Otherwise several
                            fills (--samples) are not in the graph:
                            they draw random numbers in loops (the PixelCNN's raster order); use the
                            safetensors export through genfill.load for those.

`load_export(DIR)` rebuilds the model from these two files (safetensors never unpickles anything, and no
training code or optimiser state is read); `genfill.load(DIR)` and `genfill fill -c DIR` use it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from genfill.errors import GenfillError
from genfill.io import atomic_write_bytes, atomic_write_json, load_checkpoint, make_dir, note_input
from genfill.masks import fixed_masks
from genfill.models import build_model, load_model, model_class, saved_config
from genfill.pixels import composite, from_unit
from genfill.progress import say
from genfill.validate import integer

EXPORT_FORMAT = "genfill-export/1"
ONNX_OPSET = 20  # AffineGrid (the GAN context variant crops its hole box in the graph)


@dataclass
class ExportResult:
    out_dir: Path
    sizes: dict[str, int]  # file name -> bytes
    onnx_max_abs: float | None = None  # parity of model.onnx against torch on random holes


def _weights(model: nn.Module, ckpt: dict, state: dict | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict to export, and which weights they are (ema | model); the discriminator is left out:
    nothing fills with it."""
    state = model.state_dict() if state is None else state
    source = "model"
    ema = ckpt.get("ema")
    if isinstance(ema, dict) and "model" in ema and isinstance(ema["model"], dict):
        ema = ema["model"]
    if isinstance(ema, dict) and ema and all(isinstance(v, torch.Tensor) for v in ema.values()):
        unknown = [k for k in ema if k not in state]
        if unknown:
            raise GenfillError(f"{ckpt['path']}: its EMA weights hold {unknown[0]!r}, which the model has not")
        state = {**state, **ema}
        source = "ema"
    return {k: v for k, v in state.items() if not k.startswith("discriminator.")}, source


def export_model(src: str | Path, out_dir: str | Path, half: bool = False, onnx: bool = False) -> ExportResult:
    """Export a run directory or checkpoint to `out_dir` (see the module docstring): a new or empty folder, or
    one holding an earlier export of the same source (replaced whole: a stale model.onnx is removed)."""
    from safetensors.torch import save

    model, ckpt = load_model(src, "cpu")
    if onnx and len(getattr(model, "exemplars", ())):
        raise GenfillError(f"{ckpt['path']}: a sampler with exemplars has no ONNX export (its lookup over "
                           f"{len(model.exemplars):,} stored images runs in torch); export without --onnx "
                           "(safetensors, for genfill.load) or train it with model.exemplars=0")
    if onnx and getattr(model, "strokes", None) is not None:
        raise GenfillError(f"{ckpt['path']}: a sampler with a stroke refiner has no ONNX export (the graph would "
                           "give its mean pass without the thin-stroke correction); export without --onnx "
                           "(safetensors, for genfill.load) or train it with model.stroke_width=0")
    state, which = _weights(model, ckpt)
    if which == "ema":
        model.load_state_dict(state, strict=False)
    tensors = {}
    for k, v in state.items():
        v = v.detach().cpu().contiguous()
        tensors[k] = v.half() if half and v.is_floating_point() else v.clone()
    out = Path(out_dir)
    _check_export_target(out, ckpt["path"])
    make_dir(out)
    # The bytes in memory, then one atomic write: no fixed-name temp file a kill could leave behind.
    atomic_write_bytes(out / "model.safetensors", save(tensors, metadata={"format": EXPORT_FORMAT}))
    config = {"format": EXPORT_FORMAT, "kind": ckpt["kind"], "model_config": ckpt["model_config"],
              "image_size": ckpt["image_size"], "channels": ckpt["channels"],
              "dtype": "float16" if half else "float32", "weights": which, "source": ckpt["path"],
              "step": ckpt.get("step"), "num_parameters": model.num_parameters()}
    atomic_write_json(out / "config.json", config)
    written = ["model.safetensors", "config.json"]
    result = ExportResult(out, {})
    say(f"{out / 'model.safetensors'}: {model.num_parameters():,} parameters ({which} weights)")
    if onnx:
        if half:  # parity and portability: the graph is exported from the fp16-rounded weights, in fp32
            model, _ = load_export(out, "cpu")
        say(f"{out / 'model.onnx'}: tracing the {ckpt['kind']} fill ...")
        export_onnx(model, out / "model.onnx", onnx_metadata(model, config))
        say(f"{out / 'model.onnx'}: checking it against torch with onnxruntime ...")
        result.onnx_max_abs = onnx_parity(model, out / "model.onnx")
        written.append("model.onnx")
    elif (out / "model.onnx").is_file():
        # An ONNX graph of an earlier export of this same source, now out of date: not left next to these weights.
        (out / "model.onnx").unlink()
    result.sizes = {name: (out / name).stat().st_size for name in sorted(written)}
    result.sizes["source .pt"] = Path(ckpt["path"]).stat().st_size
    return result


EXPORT_FILES = ("config.json", "model.safetensors", "model.onnx")


def _check_export_target(out: Path, source: str) -> None:
    """Export into a new or empty folder, or over an export of the same source (re-exporting it); refuse a
    folder holding another model's export or anything else, so no file of another run is left next to these
    weights or replaced."""
    if not out.exists():
        return
    if not out.is_dir():
        raise GenfillError(f"cannot export to {out}: a file is in the way")
    try:
        names = [p.name for p in out.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp"))]
    except OSError as exc:
        raise GenfillError(f"cannot export to {out}: {exc.strerror}") from None
    if not names:
        return
    other = sorted(set(names) - set(EXPORT_FILES))
    if other:
        raise GenfillError(f"{out} holds {other[0]}, which is not part of a genfill export: export into a new or "
                           "empty folder")
    try:
        previous = json.loads((out / "config.json").read_text()).get("source")
    except (OSError, ValueError, AttributeError):
        previous = None
    if previous is None or Path(previous).resolve() != Path(source).resolve():
        of = f"the export of {previous}" if isinstance(previous, str) else "files of another export"
        raise GenfillError(f"{out} holds {of}: export {source} into a new or empty folder")


def read_export_config(out_dir: str | Path) -> dict:
    """An export's config.json, checked: its format, kind, model keywords, image size and channels."""
    path = Path(out_dir) / "config.json"
    if not path.is_file():
        raise GenfillError(f"{out_dir} is not a complete genfill export: config.json is missing")
    note_input(path)
    try:
        config = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise GenfillError(f"{path} is not a readable genfill export config ({exc.__class__.__name__})") from exc
    if not isinstance(config, dict) or config.get("format") != EXPORT_FORMAT:
        raise GenfillError(f"{path} is not a genfill export (format {EXPORT_FORMAT})")

    model_class(config.get("kind"))  # a known kind, or the list of known ones
    if not isinstance(config.get("model_config"), dict):
        raise GenfillError(f"{path}: model_config must be a mapping of the model's keywords")
    integer(f"{path}: image_size", config.get("image_size"), 8, 4096)  # data.size's range
    if config.get("channels") not in (1, 3) or isinstance(config.get("channels"), bool):
        raise GenfillError(f"{path}: channels must be 1 or 3, got {config.get('channels')!r}")
    return config


def load_export(out_dir: str | Path, device: str | torch.device = "cpu"):
    """(model in eval mode on `device`, config) from an exported folder; fp16 weights load as fp32. Every
    tensor must have the name and shape the config's model has."""
    out = Path(out_dir)
    config = read_export_config(out)
    spec = {"kind": config["kind"], **saved_config(config["kind"], config["model_config"])}
    model = build_model(spec, config["image_size"], config["channels"])
    state = _read_safetensors(out)
    model.shape_state(state)  # data-sized state (a sampler's stored exemplars) takes the saved shape
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.startswith("discriminator.")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise GenfillError(f"{out}: weights do not match its config (missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]})")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise GenfillError(f"{out}: weight {k} is {tuple(v.shape)} but its config's model has "
                               f"{tuple(own[k].shape)} (config.json does not match model.safetensors)")
    model.load_state_dict(state, strict=False)
    return model.to(device).eval(), config


def init_from(model: nn.Module, path: str | Path) -> str:
    """Load the weights of a checkpoint, run directory or export into `model` (train.init_from): every
    key and shape must match, except that a missing discriminator stays freshly initialised. Returns what
    was loaded, for the log."""
    if is_export_dir(path):
        state = _read_safetensors(Path(path))
        kind = read_export_config(path)["kind"]
    else:
        ckpt = load_checkpoint(path)
        state, _ = _weights(model, ckpt, ckpt["model"])
        kind = ckpt["kind"]
    adapt = getattr(model, "adapt_state", None)  # a family that starts from another's weights (sampler <- unet)
    if adapt is not None:
        state = adapt(state, kind)
    own = model.state_dict()
    for k, v in state.items():
        if k not in own:
            raise GenfillError(f"train.init_from: {path} (a {kind} model) has weights {k!r} this "
                               f"{getattr(model, 'kind', '')} model does not")
        if own[k].shape != v.shape:
            raise GenfillError(f"train.init_from: {k} is {tuple(v.shape)} in {path} but {tuple(own[k].shape)} "
                               "here: the model config must match the one it was trained with")
    missing = [k for k in own if k not in state and not k.startswith("discriminator.")]
    if missing:
        raise GenfillError(f"train.init_from: {path} (a {kind} model) lacks {missing[0]!r} "
                           f"({len(missing)} tensors missing): the model config must match")
    model.load_state_dict(state, strict=False)
    return f"{kind} weights from {path}"


def is_export_dir(path: str | Path) -> bool:
    """A folder with either file of an export (a missing one is then named by `load_export`, not taken for a
    run directory without checkpoints)."""
    p = Path(path)
    return p.is_dir() and ((p / "config.json").is_file() or (p / "model.safetensors").is_file())


def _read_safetensors(out: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = out / "model.safetensors"
    if not path.is_file():
        raise GenfillError(f"{out} is not a complete genfill export: model.safetensors is missing")
    note_input(path)
    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise GenfillError(f"{path} is not readable ({why})") from exc


# ---------------------------------------------------------------- ONNX


class FillGraph(nn.Module):
    """(image, mask) -> the model's composited fill, and its learned scale when it has one: what model.onnx
    computes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        s, c = model.image_size, model.channels
        with torch.no_grad():
            self.with_scale = model.fill_scale(torch.zeros(1, c, s, s), torch.ones(1, 1, s, s)) is not None
        self.noise_channels = noise_channels(model)

    def forward(self, image: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor | None = None):
        if noise is not None:  # a sampler: one sampling pass with the caller's noise
            return composite(image, mask, self.model.run(image, mask, noise))
        if self.with_scale:
            return self.model.fill(image, mask), self.model.fill_scale(image, mask)
        return self.model.fill(image, mask)


def noise_channels(model: nn.Module) -> int:
    """The noise input's channels of a model whose ONNX graph takes one (a sampler), else 0."""
    return int(getattr(model.cfg, "noise_channels", 0)) if getattr(model, "kind", "") == "sampler" else 0



def noise_contract(model: nn.Module) -> str:
    """How to draw a sampler's ONNX `noise` input (what `Sampler.noise` draws), in words."""
    c, s = noise_channels(model), int(getattr(model.cfg, "noise_scale", 1))
    head = f"float32 (N,{c},H,W), one draw per fill (all zeros: the mean fill): "
    if s == 1:
        return head + "standard Gaussian, independent per value"
    return head + (f"standard Gaussian drawn at (N,{c},ceil(H/{s}),ceil(W/{s})), upsampled bilinearly to H x W "
                   "(half-pixel centres, align_corners=False) and divided at each position by the upsampling's "
                   "std (sqrt of the sum of squared bilinear weights; genfill.models.sampler.coherent_noise). "
                   "Per-pixel noise is out of distribution for this model")


def size_multiple(model: nn.Module) -> int | None:
    """The multiple H and W of the model's input must be for it to fill at any size (a fully convolutional
    family says so with a `size_multiple` attribute), or None: it fills its training size S x S only."""
    return getattr(model, "size_multiple", None)


def onnx_metadata(model: nn.Module, config: dict) -> dict[str, str]:
    """What model.onnx carries besides its graph (metadata_props; doc_string is `onnx_doc`): the contract an
    integrator needs without reading genfill's code."""
    multiple = size_multiple(model)
    s = model.image_size
    noise = {"noise": noise_contract(model)} if noise_channels(model) else {}
    return {
        **noise,
        "genfill.format": EXPORT_FORMAT, "genfill.kind": config["kind"],
        "genfill.model_config": json.dumps(config["model_config"], sort_keys=True),
        "genfill.weights": str(config.get("weights")), "genfill.step": str(config.get("step")),
        "image": f"float32 (N,{model.channels},H,W), RGB (or grey for 1 channel) in [-1, 1]: 2 * pixel / 255 - 1",
        "mask": "float32 (N,1,H,W), exactly 0 (known pixel) or 1 (hole); nothing else (0/255 is not a mask)",
        "filled": "float32 (N,C,H,W) in [-1, 1]: the prediction inside the hole, the image's own pixels outside",
        "size": (f"H and W any multiples of {multiple}; trained at {s}x{s}, where it fills best: fill bigger "
                 "photos in windows shrunk to that size (examples/onnx_fill.py)" if multiple else
                 f"H = W = {s} only; fill bigger photos in windows shrunk to that size (examples/onnx_fill.py)"),
        "training_size": str(s), "size_multiple": str(multiple or s),
        "channels": str(model.channels),
    }


def onnx_doc(meta: dict[str, str]) -> str:
    noise = f"; noise {meta['noise']}" if "noise" in meta else ""
    return (f"genfill {meta['genfill.kind']} inpainter. Inputs: image {meta['image']}; mask {meta['mask']}{noise}. "
            f"Output: filled {meta['filled']}. Size: {meta['size']}.")


def export_onnx(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Trace the model's fill into `path` with the TorchScript exporter (no onnxscript): dynamic batch, and
    dynamic H and W when the family fills any size (`size_multiple`). The prior's loops are TorchScript, so
    they stay ONNX `Loop`s. `metadata` (str -> str) goes into metadata_props, `onnx_doc` of it into the
    doc_string, and each input and output gets its own doc_string."""
    import warnings

    graph = FillGraph(model.cpu().float()).eval()
    s, c = model.image_size, model.channels
    x = torch.zeros(2, c, s, s)
    m = torch.zeros(2, 1, s, s)
    m[:, :, s // 4 : s // 2, s // 4 : s // 2] = 1
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    outputs = ["filled", "scale"] if graph.with_scale else ["filled"]
    axes = {0: "batch", 2: "height", 3: "width"} if size_multiple(model) else {0: "batch"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inputs = ["image", "mask"] + (["noise"] if graph.noise_channels else [])
            args = (x, m) + ((torch.randn(2, graph.noise_channels, s, s),) if graph.noise_channels else ())
            torch.onnx.export(graph, args, str(tmp), input_names=inputs, output_names=outputs,
                              dynamic_axes={name: axes for name in [*inputs, *outputs]},
                              opset_version=ONNX_OPSET, dynamo=False)
        atomic_write_bytes(path, _annotate(tmp, metadata) if metadata else tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)
        model.eval()  # the exporter restores the wrapper's (training) mode onto the model


def _annotate(path: Path, metadata: dict[str, str]) -> bytes:
    """The ONNX file at `path` with `metadata` and the doc strings in it (bytes: genfill.io writes them)."""
    import onnx

    proto = onnx.load(str(path))
    proto.doc_string = onnx_doc(metadata)
    proto.producer_name = "genfill"
    del proto.metadata_props[:]
    for k, v in metadata.items():
        proto.metadata_props.add(key=k, value=v)
    docs = {**metadata, "scale": "float32 (N,C,H,W): the learned Laplace scale b of the fill, [-1, 1] units"}
    for value in [*proto.graph.input, *proto.graph.output]:
        value.doc_string = docs.get(value.name, "")
    return proto.SerializeToString()


def onnx_session(path: str | Path):
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise GenfillError("onnxruntime is not installed: pip install 'genfill[export]'") from exc
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def onnx_sizes(model: nn.Module) -> list[tuple[int, int]]:
    """(H, W) sizes the parity check runs at: S x S, and for a model that fills any size also a non-square
    one, 1.5 S x 2 S rounded to the model's multiple (96x128 for S = 64)."""
    s, multiple = model.image_size, size_multiple(model)
    if not multiple:
        return [(s, s)]
    up = lambda v: -(-v // multiple) * multiple  # noqa: E731
    return [(s, s), (up(3 * s // 2), up(2 * s))]


def onnx_parity(model: nn.Module, path: str | Path, n: int = 3, seed: int = 0) -> float:
    """Max abs difference between onnxruntime and torch fills of `n` random images under fixed holes at every
    size of `onnx_sizes` (a batch size other than the one traced, so the dynamic axes are checked too)."""
    c = model.channels
    session = onnx_session(path)
    worst = 0.0
    for h, w in onnx_sizes(model):
        g = torch.Generator().manual_seed(seed)
        x = from_unit(torch.rand(n, c, h, w, generator=g))
        m = fixed_masks("mixed", n, h, w, seed=seed)
        feed = {"image": x.numpy(), "mask": m.numpy()}
        with torch.no_grad():
            model = model.cpu().eval()
            if noise_channels(model):  # a sampler's pass with this noise
                z = model.noise(n, x, g)  # the noise the model draws (coherent_noise at its noise_scale)
                feed["noise"] = z.numpy()
                refs = [composite(x, m, model.run(x, m, z)).numpy()]
            else:
                scale = model.fill_scale(x, m)
                refs = [model.fill(x, m).numpy(), *([] if scale is None else [scale.numpy()])]
        got = session.run(None, feed)
        if len(got) != len(refs):
            raise GenfillError(f"{path} has {len(got)} outputs, the model gives {len(refs)}")
        worst = max(worst, *(float(abs(g - r).max()) for g, r in zip(got, refs)))
    return worst
