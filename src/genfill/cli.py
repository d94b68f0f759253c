"""`genfill` command line: parse, call one function, print. Errors a user can cause print one line and
exit with code 2 (`--debug` shows the traceback)."""

from __future__ import annotations

import argparse
import json
import sys

# What the parser itself needs (the protocol's defaults, the number checks) and the light leaves. Modules that
# bring torch, data or models with them are imported by the command that needs them, so that --help stays
# as cheap as genfill.config is (today config's augment and io import torch; a lighter config speeds it up).
from genfill.config import (EVAL_MASKS, EVAL_SEED, PEER_NAMES, DataConfig, from_dict, list_configs,
                            resolve_config)
from genfill.errors import GenfillError
from genfill.progress import is_quiet, set_quiet
from genfill.typed import load_yaml
from genfill.validate import SEED_MAX, arg_float, arg_int, check_tree


def _params(items: list[str] | None) -> dict:
    """KEY=VALUE pairs (values parsed as YAML by the bounded loader, numbers checked) for mask keywords."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise GenfillError(f"expected KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k] = check_tree(f"--mask-param {k}", load_yaml(v, f"--mask-param {k}"))
    return out


def _load(args, expect_kind: str | None = None):
    from genfill.device import pick_device
    from genfill.models import load_model

    model, ckpt = load_model(args.checkpoint, pick_device(args.device), expect_kind)
    return model, ckpt


def cmd_train(args) -> None:
    from genfill.loadconfig import load_config
    from genfill.train import train

    cfg = load_config(resolve_config(args.config), args.set)
    if args.dry_run:
        from genfill.trainplan import plan

        for k, v in plan(cfg, device=args.device).items():
            print(f"{k:16s} {v}")
        return
    res = train(cfg, resume=args.resume, device=args.device, verbose=not args.quiet)
    if not res.last_val:
        limit = f", max_steps {cfg.train.max_steps}" if cfg.train.max_steps is not None else ""
        print(f"nothing to do: {res.run_dir} is finished at epoch {res.epoch} of {cfg.train.epochs}, step "
              f"{res.step}{limit}; raise train.epochs or train.max_steps to continue")
        return
    val = " ".join(f"{k} {v:.4g}" for k, v in res.last_val.items())
    print(f"trained {res.step} steps in {res.seconds:.0f}s -> {res.run_dir} ({val})")


def cmd_pretrain(args) -> None:
    from genfill.loadconfig import load_pretrain_config
    from genfill.pretrain import pretrain

    cfg = load_pretrain_config(resolve_config(args.config), args.set)
    res = pretrain(cfg, resume=args.resume, device=args.device, verbose=not args.quiet)
    if not res.last:
        print(f"nothing to do: {res.run_dir} is finished at step {res.step}; raise train.epochs or "
              "train.max_steps to continue")
        return
    vals = " ".join(f"{k} {v:.4g}" for k, v in res.last.items())
    print(f"pretrained {res.step} steps in {res.seconds:.0f}s -> {res.run_dir} ({vals}); fine-tune with "
          f"--set train.init_encoder_from={res.run_dir}")


def cmd_fill(args) -> None:
    from genfill.api import load
    from genfill.filejobs import fill_files
    from genfill.peers import PEERS

    peer = args.method if args.method in PEERS else None
    source = peer or args.checkpoint
    if not source:
        raise GenfillError("give -c CHECKPOINT (a run, a .pt file or an export) or --method "
                           + "|".join(sorted(PEERS)))
    if peer and args.checkpoint:
        raise GenfillError(f"--method {peer} is a classical peer: it takes no -c checkpoint")
    options = {"method": args.method} if args.method and not peer else {}
    if args.mean:
        if peer:
            raise GenfillError(f"--mean is a sampler's option; the {peer} peer draws one fill already")
        options["mean"] = True
    if args.blend:
        if peer:
            raise GenfillError(f"--blend is a sampler's option; the {peer} peer draws one fill already")
        options["blend"] = args.blend
    if args.samples is not None:
        from genfill.metrics.uncertainty import check_samples

        check_samples(args.samples)  # before a model is loaded
    painter = load(source, device=args.device, **options)
    jobs = fill_files(painter, args.images, args.output, mask=args.mask, mask_kind=args.mask_kind,
                      mask_params=_params(args.mask_param), seed=args.seed, mask_resize=args.mask_resize,
                      dilate=args.dilate, progress=not args.quiet, samples=args.samples)
    for j in jobs:
        extra = f"; {args.samples} fills + uncertainty -> {j.samples}" if j.samples else ""
        print(f"{j.source} -> {j.output} (hole {100 * j.hole_ratio:.1f}%{extra})")


def cmd_export(args) -> None:
    from genfill.export import export_model

    res = export_model(args.run, args.output, half=args.half, onnx=args.onnx)
    for name, size in res.sizes.items():
        print(f"{name:20s} {size / 1e6:8.2f} MB")
    if res.onnx_max_abs is not None:
        print(f"onnx max abs difference vs torch: {res.onnx_max_abs:.2e}")
    print(f"export -> {res.out_dir}")


def cmd_sample(args) -> None:
    from genfill.sample import sample_grid

    model, _ = _load(args)
    path = sample_grid(model, args.n, args.output, seed=args.seed, nrow=args.nrow)
    print(f"{args.n} samples -> {path}")


def cmd_interpolate(args) -> None:
    from genfill.sample import interpolate, morph_rows

    model, ckpt = _load(args)
    pool = None
    if not args.images and not args.random:
        pool = _test_pool(ckpt, 64)
    path = interpolate(model, args.output, rows=args.rows, steps=args.steps, images=args.images, pool=pool,
                       seed=args.seed)
    source = "image files" if args.images else ("test images" if pool is not None else "random latents")
    print(f"{morph_rows(args.rows, args.images, pool)} morph rows of {args.steps} between {source} -> {path}")


def _test_pool(ckpt: dict, n: int):
    """Up to n test images of the checkpoint's own dataset, if its cache is on this machine."""
    from genfill.data.cache import cache_dir, load_cache

    try:
        data_cfg = from_dict(DataConfig, ckpt["run_config"]["data"])
        if not (cache_dir(data_cfg) / "meta.json").is_file():
            return None
        data = load_cache(data_cfg, verbose=False)
        return data.batch(data.split("test")[:n])
    except (GenfillError, KeyError, OSError):
        return None


def cmd_demo(args) -> None:
    from genfill.demo import run_demo

    report = run_demo(out_dir=args.out_dir, minutes=args.minutes, count=args.count, device=args.device,
                      verbose=not args.quiet, config=args.config, overrides=args.set)
    print(f"demo report -> {report}")


def cmd_eval(args) -> None:
    from genfill.evaljob import evaluate_specs, load_eval
    from genfill.verdict import md_table, plural_notes, plural_table, terminal_summary

    path = evaluate_specs(args.checkpoint, args.output, data=args.data, masks=args.masks, n=args.n, fid=args.fid,
                          seed=args.seed, device=args.device, lpips=not args.no_lpips, verbose=not args.quiet,
                          samples=args.samples, blend=args.blend)
    doc, _ = load_eval(path)
    print(terminal_summary(doc))
    plural = plural_table(doc)
    if plural is not None:
        print(md_table(plural[1], plural[2]))
    for note in plural_notes(doc):
        print(note)
    for name, e in doc["methods"].items():
        if e.get("test_loss"):
            parts = {k: round(v, 4) for k, v in e["test_loss"].items() if k != "by_mask"}
            print(f"{name} test loss parts: {json.dumps(parts)}")
    extra = ", plural.csv" if plural is not None else ""
    print(f"evaluation -> {path.parent / 'report.html'} (+ eval.json, records.csv, summary.csv{extra})")


def cmd_compare(args) -> None:
    from genfill.compare import run_compare

    page = run_compare(args.inputs, args.output, peers=args.peers, data=args.data, masks=args.masks, n=args.n,
                       seed=args.seed, fid=args.fid, device=args.device, verbose=not args.quiet)
    print((page.parent / "comparison.md").read_text())
    print(f"comparison -> {page} (+ comparison.md, compare.json, quality_speed.png)")


def cmd_reproduce(args) -> None:
    from genfill.reproduce import plan_reproduce, run_reproduce

    if args.dry_run:
        for k, v in plan_reproduce(args.preset, out_dir=args.out_dir).items():
            print(f"{k:24s} {v}")
        return

    report = run_reproduce(args.preset, out_dir=args.out_dir, device=args.device, verbose=not args.quiet)
    md = report.parent / "compare" / "comparison.md"
    if md.is_file():
        print(md.read_text())
    print(f"reproduce report -> {report}")


def cmd_configs(args) -> None:
    infos = list_configs()
    if not infos:
        raise GenfillError("no configs found (neither ./configs/ nor genfill's own)")
    width = max(len(c.name) for c in infos)
    for section, how in (("train", "genfill train -c NAME"), ("pretrain", "genfill pretrain -c NAME"),
                         ("reproduce", "genfill reproduce --preset NAME")):
        group = [c for c in infos if c.section == section]
        if group:
            print(f"{how}:")
            for c in group:
                print(f"  {c.name:{width}s}  {c.summary}")
    folders = sorted({str(c.path.parent.parent if c.section == "reproduce" else c.path.parent) for c in infos})
    print(f"(from {', '.join(folders)}; a YAML path works too)")


def cmd_cache(args) -> None:
    from genfill.usercache import ENV, cache_root, clear, entries, human

    root = cache_root()
    if args.clear:
        n, freed = clear(root)
        print(f"cleared {root}: {n} item(s), {human(freed)}")
        return
    items = entries(root)
    total = sum(e.bytes for e in items)
    print(f"genfill cache: {root} ({human(total)}; ${ENV} moves it, a config's data.cache_dir overrides it)")
    if not items:
        print("  empty")
    for e in items:
        print(f"  {human(e.bytes):>9s}  {e.path.name}{'/' if e.path.is_dir() else ''}  ({e.files} file(s))")


def cmd_serve(args) -> None:
    from genfill.serve.app import Limits, serve

    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_pixels=int(args.max_pixels),
                    timeout_s=args.timeout)
    serve(args.checkpoint or [], peers=args.peers, host=args.host, port=args.port, device=args.device, limits=limits,
          blend=args.blend)


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (exit code 2, like every other error a user causes)."""

    def error(self, message: str):
        if message.startswith("argument ") and ": " in message:  # "argument -n: must be ..." -> "-n must be ..."
            name, _, why = message[len("argument "):].partition(": ")
            message = f"{name.split('/')[-1]} {why}"
        self.exit(2, f"genfill: error: {message} (see {self.prog} --help)\n")


# Every number the CLI takes is checked by its argparse type: finite, in range, integers that fit (genfill.validate).
SEED = arg_int(0, SEED_MAX)
COUNT = arg_int(1, 1_000_000)
QUIET_HELP = "no progress output"


def _quiet(sp, help: str = QUIET_HELP) -> None:
    """`genfill CMD --quiet` as well as `genfill --quiet CMD` (the global flag's value unless given here)."""
    sp.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help=help)


def _config_args(sp, config_help: str, set_example: str) -> None:
    """What `train` and `pretrain` share: a config, overrides, --resume, a device."""
    sp.add_argument("--config", "-c", required=True, help=config_help)
    sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=f"override, e.g. {set_example}")
    sp.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    sp.add_argument("--device", default=None, help="force auto | cpu | cuda | mps (default: train.device)")
    _quiet(sp)


BLENDS = ("seam", "residual", "hybrid")  # genfill.models.sampler.BLENDS (not imported: the CLI parses without torch)


def _blend_arg(sp, who: str = "a sampler", then: str = "") -> None:
    sp.add_argument("--blend", choices=BLENDS,
                    help=f"how {who} with stored faces draws: seam (thin strokes smooth), residual (calibrated "
                         f"spread) or hybrid (calibrated, thin strokes smoother); default: the run's "
                         f"model.exemplar_blend{then}")


def _checkpoint_args(sp) -> None:
    sp.add_argument("-c", "--checkpoint", required=True, help="checkpoint file or run directory")
    sp.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    sp.add_argument("--seed", type=SEED, default=0)


def _eval_args(sp) -> None:
    """The evaluation protocol's options (`eval` and `compare`)."""
    sp.add_argument("--data", help="YAML file or config name whose data: section to use, faces64, or a "
                    "folder of your images (all scored) (default: the checkpoint's own data, else faces64)")
    sp.add_argument("--masks", default=",".join(EVAL_MASKS), help="comma-separated mask kinds")
    sp.add_argument("-n", type=COUNT, default=500, help="test images (each under every mask kind)")
    sp.add_argument("--seed", type=SEED, default=EVAL_SEED, help="mask seed (the same holes for every method)")
    sp.add_argument("--fid", action=argparse.BooleanOptionalAction, default=None,
                    help="FID and KID per mask kind (default: on from 200 test images; Inception features "
                         "of the test images and the classical peers' fills are cached per protocol)")
    sp.add_argument("--device", default="auto")
    _quiet(sp)


def _add_train(sub) -> None:
    sp = sub.add_parser("train", help="train a model from a YAML config")
    _config_args(sp, "YAML file or preset name (see configs/)", "train.lr=1e-3")
    sp.add_argument("--dry-run", action="store_true",
                    help="print the resolved plan (devices, world size, batches, steps, cache) and exit")
    sp.set_defaults(func=cmd_train)


def _add_pretrain(sub) -> None:
    sp = sub.add_parser("pretrain", help="self-supervised pretraining of an inpainter's encoder (SimCLR, BYOL, "
                        "Barlow Twins) for train.init_encoder_from")
    _config_args(sp, "YAML file or preset name (ssl-simclr-faces64, ssl-byol-faces64, ssl-barlow-faces64)",
                 "ssl.temperature=0.2")
    sp.set_defaults(func=cmd_pretrain)


def _add_fill(sub) -> None:
    sp = sub.add_parser("fill", help="fill holes in image files or folders, each at its own size")
    sp.add_argument("images", nargs="+", help="image files and/or folders (searched recursively; "
                    "<stem>_mask.png next to <stem>.png is its mask)")
    sp.add_argument("-c", "--checkpoint", help="run directory, checkpoint, exported folder, or a peer name")
    sp.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    sp.add_argument("--seed", type=SEED, default=0)
    sp.add_argument("--mask", help="one mask image for all inputs: brighter than mid-grey = hole")
    sp.add_argument("--mask-kind", help="generate a mask at each image's size: square, box, center, freeform, "
                    "thin, medium, thick, mixed")
    sp.add_argument("--mask-param", action="append", metavar="KEY=VALUE", help="mask keyword, e.g. size=24")
    sp.add_argument("--mask-resize", action="store_true", help="scale a mask of another size (nearest)")
    sp.add_argument("--dilate", type=arg_int(0, 4096), default=0, metavar="N", help="grow every hole by N pixels")
    sp.add_argument("--method", help="telea | ns | biharmonic | patchmatch | mean (a classical peer, no -c), or the model's "
                                     "fill method (VAE: auto | encode | optimize; AVAE: auto | generator | decoder)")
    sp.add_argument("-o", "--output", required=True, help="output image (one input) or folder (mirrors the "
                    "input tree, PNG files)")
    sp.add_argument("--mean", action="store_true", help="a sampler's mean fill (best PSNR, blurry) instead of "
                    "one sample (sharp; --seed picks it)")
    _blend_arg(sp)
    sp.add_argument("--samples", type=COUNT, default=None, metavar="K",
                    help="also draw K different fills of each hole (sampler, vae, beta_vae, avae, vqvae_prior) into "
                         "<output>_samples.png with a heat map of their per-pixel spread (--seed seeds them)")
    _quiet(sp, "no progress bar")
    sp.set_defaults(func=cmd_fill)


def _add_export(sub) -> None:
    sp = sub.add_parser("export", help="weights-only safetensors + config.json (and ONNX) from a run")
    sp.add_argument("run", help="run directory or checkpoint")
    sp.add_argument("-o", "--output", required=True, help="output folder")
    sp.add_argument("--half", action="store_true", help="store the weights as fp16 (half the size)")
    sp.add_argument("--onnx", action="store_true", help="also model.onnx (image + mask in, fill out), "
                    "checked against torch with onnxruntime")
    sp.set_defaults(func=cmd_export)


def _add_sample_and_interpolate(sub) -> None:
    sp = sub.add_parser("sample", help="draw new images from a generative model")
    _checkpoint_args(sp)
    sp.add_argument("-n", type=COUNT, default=100)
    sp.add_argument("--nrow", type=COUNT, default=None)
    sp.add_argument("-o", "--output", default="samples.png")
    sp.set_defaults(func=cmd_sample)

    sp = sub.add_parser("interpolate", help="rows of morphs between encoded or random faces")
    _checkpoint_args(sp)
    sp.add_argument("images", nargs="*", help="pairs of images to morph between (default: test faces)")
    sp.add_argument("--random", action="store_true", help="morph between random prior draws")
    sp.add_argument("--rows", type=COUNT, default=None, help="morph rows (default 4; with image files: one per pair)")
    sp.add_argument("--steps", type=COUNT, default=8)
    sp.add_argument("-o", "--output", default="morph.png")
    sp.set_defaults(func=cmd_interpolate)


def _add_demo(sub) -> None:
    sp = sub.add_parser("demo", help="the whole journey on built-in faces: train, fill, sample, morph, report")
    sp.add_argument("--out-dir", default="runs", help="parent of runs/demo")
    sp.add_argument("--minutes", type=arg_float(0, 10_000, low_open=True), default=4.0, help="training budget")
    sp.add_argument("--count", type=arg_int(3, 2**31 - 1), default=20000, help="faces to draw for the built-in dataset")
    sp.add_argument("--config", default=None, help="config to train (default: unet-faces64, the best filler "
                    "in the budget; vae-faces64 also samples and morphs)")
    sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value of the trained model, e.g. masks.bank_size=4096")
    sp.add_argument("--device", default="auto")
    _quiet(sp)
    sp.set_defaults(func=cmd_demo)


def _add_eval_and_compare(sub) -> None:
    sp = sub.add_parser("eval", help="score a checkpoint or a classical peer on fixed test holes")
    sp.add_argument("-c", "--checkpoint", action="append", required=True, metavar="CKPT|PEER",
                    help=f"checkpoint, run directory, or peer ({', '.join(PEER_NAMES)}); repeatable")
    _eval_args(sp)
    sp.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    sp.add_argument("--samples", type=COUNT, default=None, metavar="K",
                    help="also draw K fills per image from models that can: diversity, best-of-K and "
                         "mean-over-K quality, calibration of their spread")
    _blend_arg(sp, "every sampler", "; its row is named NAME-BLEND")
    sp.add_argument("-o", "--output", help="output folder (default: RUN/eval, or runs/eval-PEER)")
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser("compare", help="one table, plot and failure gallery for several evaluations")
    sp.add_argument("inputs", nargs="*", metavar="RUN_OR_EVAL", help="eval.json files/folders or run directories")
    sp.add_argument("--peers", action="store_true", help="add the classical peers, evaluated the same way")
    _eval_args(sp)
    sp.add_argument("-o", "--output", default="runs/compare", help="output folder")
    sp.set_defaults(func=cmd_compare)


def _add_reproduce(sub) -> None:
    sp = sub.add_parser("reproduce", help="build data, train every preset model, evaluate with peers, report")
    sp.add_argument("--preset", default="quick", help="quick | full | a preset YAML (configs/reproduce/)")
    sp.add_argument("--out-dir", default=None, help="parent of the run folder (default: the preset's out_dir)")
    sp.add_argument("--device", default="auto")
    _quiet(sp)
    sp.add_argument("--dry-run", action="store_true", help="resolve the preset and every model config, print "
                    "the plan, build and train nothing")
    sp.set_defaults(func=cmd_reproduce)


def _add_configs_and_cache(sub) -> None:
    sp = sub.add_parser("configs", help="list the configs and reproduce presets a name reaches, one line each")
    sp.set_defaults(func=cmd_configs)

    sp = sub.add_parser("cache", help="where built data and mask banks are cached, what is there and its size")
    sp.add_argument("--clear", action="store_true", help="empty genfill's cache folder")
    sp.set_defaults(func=cmd_cache)


def _add_serve(sub) -> None:
    sp = sub.add_parser("serve", help="a web page to paint a hole on a photo and compare fills (genfill[serve])")
    sp.add_argument("-c", "--checkpoint", action="append", metavar="RUN_OR_EXPORT",
                    help="run directory, checkpoint, exported folder or peer name; repeatable")
    sp.add_argument("--peers", action="store_true", help=f"also the classical peers ({', '.join(PEER_NAMES)})")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this computer only)")
    sp.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    sp.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (for the models)")
    _blend_arg(sp, "every sampler")
    positive = arg_float(0, 1e12, low_open=True)
    sp.add_argument("--max-upload-mb", type=positive, default=20.0, help="largest request (photo + mask)")
    sp.add_argument("--max-pixels", type=positive, default=40e6, help="largest image, width x height")
    sp.add_argument("--timeout", type=positive, default=120.0, help="seconds one fill may take, queue included")
    sp.set_defaults(func=cmd_serve)


SUBCOMMANDS = (_add_train, _add_pretrain, _add_fill, _add_export, _add_sample_and_interpolate, _add_demo,
               _add_eval_and_compare, _add_reproduce, _add_configs_and_cache, _add_serve)  # --help lists them so


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="genfill", description="Train, compare and run image inpainting and "
                                "generation models.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or progress lines (any command)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help=THREADS_HELP)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    for sp in sub.choices.values():  # `genfill --threads N CMD` and `genfill CMD --threads N` alike
        sp.add_argument("--threads", type=int, default=argparse.SUPPRESS, metavar="N", help=THREADS_HELP)
    return p


THREADS_HELP = ("CPU threads for torch and OpenCV (default: $GENFILL_THREADS, else OMP_NUM_THREADS when set, else "
                "the idle cores: usable cores minus the busy ones now, 1 to 4)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (2) or --help (0): a code for in-process callers too
        return exc.code if isinstance(exc.code, int) else 2
    was_quiet = is_quiet()
    set_quiet(args.quiet)  # `genfill --quiet CMD` and `genfill CMD --quiet` both silence every bar
    from genfill.io import guard_inputs

    try:
        if args.func not in (cmd_configs, cmd_cache):  # those two run no torch work: no threads to set
            from genfill.device import set_threads

            set_threads(args.threads)
        with guard_inputs():  # no command writes onto a file it reads (genfill.io)
            args.func(args)
    except GenfillError as exc:
        if args.debug:
            raise
        # One line, whatever the message quotes (a file name or a config key may hold a newline).
        print("genfill: error: " + " ".join(str(exc).replace("\r", "\n").split("\n")), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genfill: interrupted", file=sys.stderr)
        return 130
    finally:
        set_quiet(was_quiet)  # an in-process caller (a test, a notebook) gets its setting back
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
