"""Curated mutation testing: plant one realistic bug at a time and check that the tests notice (`make mutate`).

Each mutation is an exact text substitution in one module of `src/genfill` (the kind of slip a person makes:
a setting not passed on, a sign, an off-by-one, a swapped pair, a step left out). The tree is copied to a
temporary folder (src, tests, configs, benchmarks' scripts, pyproject.toml); the working tree is never
touched. For each mutation the module's file in the copy is replaced by the mutated text, the tests that
cover that module run (`pytest -x -q`, one thread, a time limit), and the pristine file is put back. A
mutation is *killed* when a test fails, *survives* when every test passes, and is *stale* (left out of the
score, and reported) when its text no longer occurs exactly once, i.e. the code changed under it.

    python tools/mutate.py                 # all mutations, 2 workers (one thread each)
    python tools/mutate.py --jobs 1        # on a busy machine
    python tools/mutate.py --only gan-w-adv,vae-beta   # some of them
    python tools/mutate.py --list          # what would run, and with which tests
    python tools/mutate.py --baseline      # first check the unmutated tree passes every selected test

Which tests run: `MODULE_TESTS` maps a module to the test files that cover it; a mutation may name a
narrower selection (`tests=`: files or test ids) when its module's files are slow and the behaviour is
pinned by a few tests, so the whole run stays at a few minutes on two quiet cores. Results (score, every
mutation with its status, the test that killed it and its time) go to benchmarks/results/mutate.json.
Not part of `make test`.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
COPY = ("src", "tests", "configs", "pyproject.toml")

# module (under src/genfill) -> the test files that cover it
MODULE_TESTS: dict[str, list[str]] = {
    "masks/kinds.py": ["tests/masks/test_kinds.py"],
    "masks/raster.py": ["tests/masks/test_kinds.py"],
    "masks/shapes.py": ["tests/masks/test_kinds.py"],
    "masks/files.py": ["tests/masks/test_files.py", "tests/masks/test_kinds.py"],
    "metrics/basic.py": ["tests/metrics/test_basic.py", "tests/test_evaluate_invariants.py"],
    "evaluate.py": ["tests/test_evaluate_invariants.py", "tests/test_evaluate.py"],
    "peers.py": ["tests/test_peers.py"],
    "losses.py": ["tests/test_losses.py", "tests/models/test_gan.py", "tests/models/test_vqvae.py"],
    "models/blocks.py": ["tests/test_losses.py", "tests/models/test_vae.py"],
    "models/vae.py": ["tests/test_losses.py", "tests/models/test_vae.py"],
    "models/vqvae.py": ["tests/test_losses.py", "tests/models/test_vqvae.py"],
    "models/pixelcnn.py": ["tests/models/test_vqvae.py"],
    "models/treevi.py": ["tests/models/test_treevi.py"],
    "models/avae.py": ["tests/test_losses.py", "tests/models/test_avae.py"],
    "models/gan.py": ["tests/test_losses.py", "tests/models/test_gan.py"],
    "models/unet.py": ["tests/test_losses.py", "tests/models/test_unet.py"],
    "ema.py": ["tests/train/test_options.py"],
    "train.py": ["tests/train/test_loop.py", "tests/train/test_run.py", "tests/train/test_options.py"],
    "runs.py": ["tests/train/test_options.py", "tests/train/test_run.py", "tests/test_pretrain.py"],
    "io.py": ["tests/train/test_loop.py", "tests/train/test_run.py"],
    "cli.py": ["tests/test_cli.py"],
    "api.py": ["tests/test_api.py"],
    "resolve.py": ["tests/test_resolve.py"],
    "filejobs.py": ["tests/test_filejobs.py"],
    "metrics/fid_eval.py": ["tests/metrics/test_fid_cache.py", "tests/test_evaluate.py"],
    "verdict.py": ["tests/test_verdict.py", "tests/test_report.py"],
}


@dataclass
class Mutation:
    id: str
    module: str  # path under src/genfill
    old: str | tuple[str, ...]  # exact text, occurring exactly once (a tuple: several edits, one mutation)
    new: str | tuple[str, ...]
    why: str  # the bug a user would hit
    tests: list[str] = field(default_factory=list)  # narrower than MODULE_TESTS[module] when given
    issue17: bool = False  # one of the 16 bugs of issue 17

    def edits(self) -> list[tuple[str, str]]:
        olds = (self.old,) if isinstance(self.old, str) else self.old
        news = (self.new,) if isinstance(self.new, str) else self.new
        return list(zip(olds, news, strict=True))

    def selection(self) -> list[str]:
        return self.tests or MODULE_TESTS[self.module]


T_LOSS = "tests/test_losses.py"
T_LOOP = "tests/train/test_loop.py"
T_BLEND = "tests/models/test_exemplars.py"
T_PLURAL = "tests/metrics/test_plural_eval.py"

MUTATIONS: list[Mutation] = [
    # ---- masks
    Mutation("mask-stroke-scale", "masks/kinds.py", "        return min(height, width) / REFERENCE_SIDE",
             "        return 1.0", "stroke sizes not scaled with the image size", issue17=True),
    Mutation("mask-square-margin", "masks/shapes.py",
             "top = _randint(g, my, height - size - my, (n, 1), device)",
             "top = _randint(g, 0, height - size - my, (n, 1), device)", "square ignores its top margin"),
    Mutation("mask-fixed-seed", "masks/kinds.py", "g.manual_seed(_index_seed(kind, seed, int(index)))",
             "g.manual_seed(_index_seed(kind, seed, 0))", "every test image gets the same hole"),
    Mutation("mask-file-threshold", "masks/files.py", "    return (data > 127).to(torch.float32)",
             "    return (data > 0).to(torch.float32)", "dark grey in a mask file counts as hole"),
    Mutation("mask-cap-area", "masks/raster.py", "        over = (hole_ratio(masks) > max_area).nonzero().flatten()",
             "        over = (hole_ratio(masks) > 2 * max_area).nonzero().flatten()", "masks over max_area kept"),
    # ---- metrics and evaluation
    Mutation("metric-psnr-20", "metrics/basic.py", "return -10.0 * torch.log10(e.clamp_min(floor))",
             "return -20.0 * torch.log10(e.clamp_min(floor))", "PSNR off by a factor of two"),
    Mutation("metric-mse-scale", "metrics/basic.py",
             "return _per_image_mean((to_unit(pred) - to_unit(target)) ** 2, mask)",
             "return _per_image_mean((pred - target) ** 2, mask)", "MSE on the [-1, 1] scale"),
    Mutation("eval-hole-is-whole", "evaluate.py", 'out[f"{name}_hole"] = fn(filled, x, mask=m)',
             'out[f"{name}_hole"] = fn(filled, x)', "every *_hole metric computed over the whole image",
             issue17=True),
    Mutation("eval-bucket-edge", "evaluate.py", "math.floor((float(ratio) + _EDGE_TOL) * 10)",
             "math.floor((float(ratio) - _EDGE_TOL) * 10)", "a ratio on a bucket edge drops a bucket"),
    # ---- classical peers
    Mutation("peer-swap", "peers.py", '{"telea": telea, "ns": navier_stokes, "biharmonic": biharmonic,',
             '{"telea": biharmonic, "ns": navier_stokes, "biharmonic": telea,', "Telea and biharmonic swapped",
             issue17=True),
    Mutation("peer-telea-radius", "peers.py", "res = cv2.inpaint(u8, mask, radius, flag)",
             "res = cv2.inpaint(u8, mask, 3, flag)", "Telea's radius ignored", issue17=True),
    Mutation("peer-mean-unknown", "peers.py", "mean = (x * known).sum(dim=(2, 3), keepdim=True) / count.clamp_min(1)",
             "mean = x.mean(dim=(2, 3), keepdim=True)", "mean fill averages the hole's own pixels"),
    # ---- resolving names, the fill command's files, FID's feature cache, the verdict
    Mutation("resolve-path-is-peer", "resolve.py", "if isinstance(spec, str) and spec in PEERS:",
             "if str(spec) in PEERS:", "a path named like a peer (./telea) resolves to the peer"),
    Mutation("filejobs-one-seed", "filejobs.py", "painter.samples_decoded(d, hole, samples, seed + i)",
             "painter.samples_decoded(d, hole, samples, seed)", "every image's K fills drawn with the first seed"),
    Mutation("fid-cache-key-seed", "metrics/fid_eval.py", '"params": self.mask_kinds[kind], "seed": self.seed}',
             '"params": self.mask_kinds[kind]}', "a peer's cached features reused under another mask seed",
             tests=["tests/metrics/test_fid_cache.py"]),
    Mutation("verdict-best-is-max", "verdict.py", 'pick = max if how == "max" else min', "pick = max",
             "lower-is-better metrics (LPIPS, FID) crown the worst method"),
    # ---- VAE, beta-VAE, shared blocks
    Mutation("vae-beta", "models/vae.py", "loss = recon + self.cfg.beta * kl_scale * kl", "loss = recon + kl_scale * kl",
             "VAE beta ignored", tests=[T_LOSS], issue17=True),
    Mutation("vae-hole-weight", "models/vae.py", "err = err * ((1 - m) + self.cfg.hole_weight * m)",
             "err = err * ((1 - m) + m)", "VAE hole_weight ignored"),
    Mutation("vae-mean-reduction", "models/vae.py", "recon, kl = recon / pixels, kl / pixels",
             "recon = recon / pixels", "reduction: mean leaves the KL summed"),
    Mutation("beta-vae-default", "models/vae.py", "        beta: float = 4.0", "        beta: float = 1.0",
             "beta_vae's default beta is 1"),
    Mutation("reparam-variance", "models/blocks.py", "return mu + randn_like(mu) * (0.5 * logvar).exp()",
             "return mu + randn_like(mu) * logvar.exp()", "reparameterisation uses the variance",
             issue17=True),
    Mutation("kl-constant", "models/blocks.py", "0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)",
             "0.5 * (mu.pow(2) + logvar.exp() - logvar)", "KL off by a constant per unit"),
    # ---- VQ-VAE and its prior
    Mutation("vq-commitment", "models/vqvae.py",
             "VectorQuantizer(cfg.codebook_size, cfg.code_dim, cfg.commitment, cfg.ema, cfg.decay,",
             "VectorQuantizer(cfg.codebook_size, cfg.code_dim, 0.25, cfg.ema, cfg.decay,",
             "VQ-VAE commitment not passed to the quantiser", issue17=True),
    Mutation("vq-ema-decay-swap", "models/vqvae.py",
             ("self.cluster_size.mul_(d).add_(counts, alpha=1 - d)", "self.embed_sum.mul_(d).add_(sums, alpha=1 - d)"),
             ("self.cluster_size.mul_(1 - d).add_(counts, alpha=d)", "self.embed_sum.mul_(1 - d).add_(sums, alpha=d)"),
             "VQ EMA decay d and 1 - d swapped", issue17=True),
    Mutation("vq-codebook-loss", "models/vqvae.py", "                loss = loss + codebook", "                loss = loss",
             "codebook loss left out (ema: false never trains the codebook)"),
    Mutation("vq-hole-weight", "losses.py", "err = err * ((1 - mask) + hole_weight * mask)",
             "err = err * ((1 - mask) + mask)", "VQ-VAE hole_weight ignored",
             tests=[T_LOSS, "tests/models/test_vqvae.py"]),
    Mutation("prior-mask-a", "models/pixelcnn.py", '"A" if i == 0 else "B"', '"B"',
             "PixelCNN's first layer sees the code it predicts", tests=["tests/models/test_vqvae.py"]),
    # ---- TreeVI
    Mutation("treevi-edge-kl-sign", "models/treevi.py", "edge_term = -0.5 * torch.log1p(-gamma.float().pow(2)).sum(1)",
             "edge_term = 0.5 * torch.log1p(-gamma.float().pow(2)).sum(1)", "TreeVI's edge KL has the wrong sign"),
    Mutation("treevi-sample-variance", "models/treevi.py", "return mu + (0.5 * logvar).exp() * u",
             "return mu + logvar.exp() * u", "TreeVI draws with the variance"),
    # ---- AVAE
    Mutation("avae-latent-weight", "models/avae.py", "loss=loss + self.cfg.latent_weight * lat", "loss=loss + lat",
             "AVAE latent_weight ignored", tests=[T_LOSS], issue17=True),
    Mutation("avae-lat-confidence", "models/avae.py", "w = torch.softmax(-logvar.clamp(-30.0, 20.0), dim=1).detach()",
             "w = torch.softmax(logvar.clamp(-30.0, 20.0), dim=1).detach()", "lat weighs unconfident dims most"),
    Mutation("avae-gan-loss", "models/avae.py",
             'adv = (-logit).mean() if self.cfg.gan_loss == "logit" else F.softplus(-logit).mean()',
             "adv = F.softplus(-logit).mean()", "gan_loss: logit ignored"),
    # ---- GAN
    Mutation("gan-hole-weight", "models/gan.py", "l1 = l1_loss(out32, target32, mv.float(), c.hole_weight)",
             "l1 = l1_loss(out32, target32, mv.float())", "GAN hole_weight ignored", tests=[T_LOSS], issue17=True),
    Mutation("gan-w-adv", "models/gan.py", "return self.cfg.w_adv * adv, {\"adv\": adv.detach()}",
             "return adv, {\"adv\": adv.detach()}", "GAN w_adv ignored", tests=[T_LOSS], issue17=True),
    Mutation("gan-context-ring", "models/gan.py", "return first - context, last + 1 + context",
             "return first - context, last + context", "GAN context ring one pixel off", issue17=True),
    Mutation("gan-w-ssim", "models/gan.py", "loss = c.w_l1 * l1 + c.w_edge * edge + c.w_ssim * ssim",
             "loss = c.w_l1 * l1 + c.w_edge * edge + ssim", "GAN w_ssim ignored", tests=[T_LOSS]),
    Mutation("hinge-d-sign", "losses.py", "F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()",
             "F.relu(1 - real_logits).mean() + F.relu(1 - fake_logits).mean()", "hinge D loss rewards fakes"),
    Mutation("bce-g-target", "losses.py",
             "return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))",
             "return F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))",
             "generator trained to look fake"),
    # ---- U-Net
    Mutation("unet-hole-weight", "models/unet.py", "l1 = hole_weighted_l1(p32, x32, m32, c.hole_weight)",
             "l1 = hole_weighted_l1(p32, x32, m32)", "unet hole_weight ignored", tests=[T_LOSS]),
    Mutation("unet-w-perceptual", "models/unet.py", "loss = loss + self.adv_gate() * c.w_perceptual * perc",
             "loss = loss + self.adv_gate() * perc", "unet w_perceptual ignored", tests=[T_LOSS]),
    Mutation("unet-warmup-off", "models/unet.py", "return (self.steps >= self.cfg.loss_warmup_steps).float()",
             "return (self.steps >= 0).float()", "unet warm-up switched off", tests=[T_LOSS]),
    Mutation("unet-steps-frozen", "models/unet.py", "            self.steps += 1", "            pass",
             "unet warm-up never ends", tests=[T_LOSS]),
    Mutation("unet-w-adv", "models/unet.py", "return self.adv_gate() * self.cfg.w_adv * adv,",
             "return self.adv_gate() * adv,", "unet w_adv ignored", tests=[T_LOSS]),
    Mutation("unet-no-composite", "models/unet.py", "return composite(x, m, self.predict(x, m).to(x.dtype))",
             "return self.predict(x, m).to(x.dtype)", "unet fill changes known pixels"),
    # ---- training
    Mutation("train-kl-warmup-off", "train.py",
             "return min(1.0, (step + 1) / tc.kl_warmup_steps) if tc.kl_warmup_steps > 0 else 1.0",
             "return 1.0", "KL warm-up switched off", tests=[T_LOOP], issue17=True),
    Mutation("train-best-always", "train.py", 'if last_val["loss"] < s.best_val:', "if True:",
             "best.pt written when validation got worse", tests=[T_LOOP], issue17=True),
    Mutation("train-val-on-test", "train.py", "last_val = validate(s.shown, data, cfg, dev)",
             'last_val = validate(s.shown, data, cfg, dev, "test")', "validation reads the test split",
             tests=[T_LOOP], issue17=True),
    Mutation("train-lr-warmup", "runs.py", "warm = min(1.0, (step + 1) / w) if w > 0 else 1.0",
             "warm = min(1.0, step / w) if w > 0 else 1.0", "lr warm-up starts at 0 (first step wasted)",
             tests=["tests/train/test_options.py"]),
    Mutation("train-cosine-sign", "runs.py", "return warm * 0.5 * (1.0 + math.cos(",
             "return warm * 0.5 * (1.0 - math.cos(", "cosine schedule runs backwards",
             tests=["tests/train/test_options.py"]),
    Mutation("train-resume-rng", "runs.py", '            g.set_state(ckpt[key].cpu())', "            pass",
             "resume reshuffles the data", tests=["tests/train/test_options.py", "tests/train/test_run.py"]),
    Mutation("train-resume-optim", "train.py", '        s.opt.load_state_dict(ckpt["optim"])', "        pass",
             "resume restarts Adam's moments", tests=["tests/train/test_options.py", "tests/train/test_run.py"]),
    Mutation("train-accumulate-scale", "train.py", "            (out.loss / k).backward()",
             "            out.loss.backward()", "accumulation sums k gradients instead of averaging",
             tests=["tests/train/test_options.py"]),
    Mutation("ema-decay-swap", "ema.py", "list(live), 1.0 - ema_decay(self.decay, step))",
             "list(live), ema_decay(self.decay, step))", "EMA keeps the live weights' share as the average's"),
    Mutation("ema-warmup", "ema.py", "return min(decay, (1 + step) / (10 + step))", "return decay",
             "EMA without warm-up: short runs keep the random init"),
    # ---- checkpoints
    Mutation("ckpt-weights-only", "io.py", "torch.load(path, map_location=device, weights_only=True)",
             "torch.load(path, map_location=device, weights_only=False)", "load_checkpoint unpickles anything",
             tests=[T_LOOP + "::test_checkpoint_holding_a_pickled_object_is_refused"], issue17=True),
    Mutation("ckpt-last-first", "io.py", 'for name in ("best.pt", "last.pt"):', 'for name in ("last.pt", "best.pt"):',
             "a run directory loads last.pt instead of best.pt", tests=[T_LOOP]),
    # ---- CLI
    Mutation("cli-exit-code", "cli.py", "        return 2", "        return 1", "user errors exit 1, not 2"),
    Mutation("cli-fill-method", "cli.py", 'options = {"method": args.method} if args.method and not peer else {}',
             "options = {}", "genfill fill --method ignored", tests=["tests/test_cli.py::test_fill_methods"]),
    Mutation("cli-resume", "cli.py", "res = train(cfg, resume=args.resume, device=args.device, verbose=not args.quiet)",
             "res = train(cfg, resume=False, device=args.device, verbose=not args.quiet)", "--resume ignored",
             tests=["tests/test_cli.py::test_train_command"]),
    # ---- several fills and uncertainty
    Mutation("plural-interval-level", "metrics/uncertainty.py", "q = torch.tensor([(1 - level) / 2, (1 + level) / 2]",
             "q = torch.tensor([(1 - level), (1 + level) / 2]", "the sampled interval is an 85 % one, not 90 %",
             tests=[f"{T_PLURAL}::test_sampled_intervals_cover_what_a_calibrated_sampler_covers_at_that_k"]),
    Mutation("plural-laplace-width", "metrics/uncertainty.py", "        return -math.log(1.0 - level)",
             "        return math.sqrt(2.0) * torch.erfinv(torch.tensor(level)).item()",
             "a Laplace scale is read as a Gaussian sigma", tests=[f"{T_PLURAL}::test_a_calibrated_predictor_covers_90_percent_and_a_halved_scale_clearly_less"]),
    Mutation("plural-pearson-centre", "metrics/uncertainty.py",
             "cov = self.sue / n - (self.su / n) * (self.se / n)", "cov = self.sue / n",
             "the correlation is not centred", tests=[f"{T_PLURAL}::test_correlation_is_one_when_the_scale_is_the_error_and_near_zero_when_unrelated"]),
    Mutation("plural-codes-kept", "models/pixelcnn.py",
             "codes[:, i, j] = torch.where(redraw[:, i, j], drawn, codes[:, i, j])", "codes[:, i, j] = drawn",
             "the prior redraws the codes of known cells too", tests=[f"{T_PLURAL}::test_vqvae_prior_keeps_the_codes_of_known_cells"]),
    Mutation("plural-same-noise", "models/vae.py",
             "z = gaussian_draw(mu.repeat(k, 1), logvar.repeat(k, 1), generator)",
             "z = gaussian_draw(mu, logvar, generator).repeat(k, 1)", "the K fills are one fill K times",
             tests=["tests/models/test_contract.py::test_fill_samples_draw_k_different_seeded_fills_that_keep_known_pixels"]),
    Mutation("blend-name-only", "resolve.py", "    model.use_blend(blend)\n", "",
             "--blend names the row NAME-BLEND but the sampler draws with its run's own blend",
             tests=[f"{T_BLEND}::test_eval_and_serve_take_the_blend_for_every_sampler_and_say_so"]),
    Mutation("blend-pictures-forget", "resolve.py", 'if e.get("blend"):', "if False:",
             "pictures redrawn from eval.json draw with the checkpoint's blend, not the evaluated one",
             tests=[f"{T_BLEND}::test_eval_and_serve_take_the_blend_for_every_sampler_and_say_so"]),
    Mutation("hybrid-no-reach", "models/sampler.py", "F.max_pool2d(hole_depth(m, hi), 5, 1, 2)",
             "hole_depth(m, hi)", "the hybrid blend's width test reads each pixel's own depth: the border rings "
             "of a wide hole get the brightness shift instead of the residual detail",
             tests=[f"{T_BLEND}::test_hybrid_samples_are_residual_in_wide_holes_and_a_detail_scaled_shift_in_thin_strokes"]),
    Mutation("hybrid-shift-per-pixel", "models/sampler.py", "z = torch.randn(len(mr), 1, 1, 1,",
             "z = torch.randn(len(mr), 1, *x.shape[-2:],", "the hybrid's thin-stroke shift is drawn per pixel "
             "(specks) instead of once per sample",
             tests=[f"{T_BLEND}::test_hybrid_samples_are_residual_in_wide_holes_and_a_detail_scaled_shift_in_thin_strokes"]),
    Mutation("hybrid-strata-shift-per-pixel", "models/sampler.py",
             "strata[1].reshape(-1, 1, 1, 1)", "torch.rand(len(mr), 1, *x.shape[-2:])",
             "fill_samples' hybrid shift is drawn per pixel (specks) instead of once per sample",
             tests=[f"{T_BLEND}::test_hybrid_samples_are_residual_in_wide_holes_and_a_detail_scaled_shift_in_thin_strokes"]),
    Mutation("latin-unused", "models/sampler.py", "self.draw(x, m, base, 1, g, mean, (u[j:j + 1], v[j:j + 1]))",
             "self.draw(x, m, base, 1, g, mean)", "fill_samples draws its K faces independently: repeated fills",
             tests=[f"{T_BLEND}::test_k_fills_draw_k_different_faces_each_drawn_as_one_fill_is"]),
    Mutation("latin-strata-k", "models/sampler.py", "faces = max(self.cfg.exemplar_k, 1)", "faces = k",
             "the face picks are stratified over K, not the faces: K < exemplar_k fills still repeat a face",
             tests=[f"{T_BLEND}::test_k_fills_draw_k_different_faces_each_drawn_as_one_fill_is"]),
    Mutation("native-thin-unshifted", "api.py", "if thin is not None and thin.any():", "if False:",
             "fill --samples at a photo's size leaves the thin part the same in every fill (uncertainty 0 there)",
             tests=[f"{T_BLEND}::test_samples_of_a_big_photo_spread_its_thin_strokes_as_hybrid_spreads_strokes"]),
    Mutation("native-thin-one-z", "api.py", "shift_thin(arrays, d.pixels, hole, thin, gain * z, colour)",
             "shift_thin(arrays, d.pixels, hole, thin, gain * z[:1], colour)",
             "every fill's thin part moves by the same shift: no spread",
             tests=[f"{T_BLEND}::test_samples_of_a_big_photo_spread_its_thin_strokes_as_hybrid_spreads_strokes"]),
]


# ---------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------


def make_copy(dest: Path) -> None:
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"))
        else:
            shutil.copy2(src, dest / name)
    (dest / "benchmarks").mkdir()
    for script in (ROOT / "benchmarks").glob("*.py"):
        shutil.copy2(script, dest / "benchmarks" / script.name)


def mutated_text(m: Mutation) -> str | None:
    """The module's text with the mutation applied, or None when an edit's text is not there exactly once."""
    text = (ROOT / "src" / "genfill" / m.module).read_text()
    for old, new in m.edits():
        if text.count(old) != 1:
            return None
        text = text.replace(old, new)
    return text


def pytest_cmd(selection: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
            "-W", "ignore", *selection]


def env() -> dict:
    e = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    e.pop("PYTHONPATH", None)  # pyproject's pythonpath = src puts the copy's src first
    return e


def run_one(m: Mutation, tree: Path, timeout: float) -> dict:
    row = {"id": m.id, "module": m.module, "why": m.why, "tests": m.selection(), "issue17": m.issue17}
    text = mutated_text(m)
    if text is None:
        return {**row, "status": "stale", "seconds": 0.0}
    target = tree / "src" / "genfill" / m.module
    pristine = target.read_text()
    target.write_text(text)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(pytest_cmd(m.selection()), cwd=tree, env=env(), capture_output=True, text=True,
                              timeout=timeout)
        out = proc.stdout + proc.stderr
        if proc.returncode == 0:
            status, killed_by = "survived", None
        else:
            status = "killed"
            hit = re.search(r"^(?:FAILED|ERROR) (\S+)", out, re.M)
            killed_by = hit.group(1) if hit else f"pytest exit {proc.returncode}: " + out.strip()[-200:]
    except subprocess.TimeoutExpired:
        status, killed_by = "timeout", f"over {timeout:.0f}s"
    finally:
        target.write_text(pristine)
    return {**row, "status": status, "killed_by": killed_by, "seconds": round(time.perf_counter() - t0, 1)}


def baseline(tree: Path, selection: list[str], timeout: float) -> None:
    files = sorted({s.split("::")[0] for s in selection})
    print(f"baseline: the unmutated tree on {len(files)} test files ...", flush=True)
    proc = subprocess.run(pytest_cmd(files), cwd=tree, env=env(), capture_output=True, text=True, timeout=timeout * 4)
    if proc.returncode != 0:
        sys.exit("baseline fails, so mutation results would mean nothing:\n" + (proc.stdout + proc.stderr)[-3000:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated mutation ids")
    ap.add_argument("--jobs", type=int, default=2, help="mutations run at once, one thread each (default 2)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per mutation; over it counts as killed")
    ap.add_argument("--list", action="store_true", help="list the mutations and their tests, run nothing")
    ap.add_argument("--baseline", action="store_true", help="first run the selected tests on the unmutated tree")
    ap.add_argument("-o", "--out", default=str(RESULTS / "mutate.json"))
    args = ap.parse_args(argv)

    ids = [m.id for m in MUTATIONS]
    assert len(ids) == len(set(ids)), "mutation ids must be unique"
    chosen = MUTATIONS
    if args.only:
        want = args.only.split(",")
        unknown = sorted(set(want) - set(ids))
        if unknown:
            sys.exit(f"unknown mutation ids: {', '.join(unknown)}")
        chosen = [m for m in MUTATIONS if m.id in want]
    if args.list:
        for m in chosen:
            print(f"{m.id:24s} {m.module:18s} {'(issue 17) ' if m.issue17 else ''}{m.why}\n{'':43s}{' '.join(m.selection())}")
        return 0

    t0 = time.perf_counter()
    jobs = max(1, args.jobs)
    with tempfile.TemporaryDirectory(prefix="genfill-mutate-") as tmp:
        trees = [Path(tmp) / f"tree{i}" for i in range(jobs)]
        for t in trees:
            t.mkdir()
            make_copy(t)
        if args.baseline:
            baseline(trees[0], [s for m in chosen for s in m.selection()], args.timeout)
        free = list(trees)
        rows: dict[str, dict] = {}
        with cf.ThreadPoolExecutor(jobs) as pool:
            pending = {}
            queue = list(chosen)
            while queue or pending:
                while queue and free:
                    m, tree = queue.pop(0), free.pop()
                    pending[pool.submit(run_one, m, tree, args.timeout)] = tree
                done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    free.append(pending.pop(fut))
                    r = fut.result()
                    rows[r["id"]] = r
                    mark = {"killed": "killed  ", "survived": "SURVIVED", "timeout": "timeout ", "stale": "STALE   "}
                    print(f"{mark[r['status']]} {r['id']:24s} {r['seconds']:6.1f}s  {r.get('killed_by') or ''}",
                          flush=True)
    ordered = [rows[m.id] for m in chosen]
    scored = [r for r in ordered if r["status"] != "stale"]
    killed = [r for r in scored if r["status"] in ("killed", "timeout")]
    survivors = [r for r in scored if r["status"] == "survived"]
    stale = [r for r in ordered if r["status"] == "stale"]
    score = len(killed) / len(scored) if scored else 0.0
    result = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python tools/mutate.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "score": round(score, 4), "mutations": len(scored), "killed": len(killed), "survived": len(survivors),
        "timeouts": sum(r["status"] == "timeout" for r in scored), "stale": [r["id"] for r in stale],
        "seconds": round(time.perf_counter() - t0, 1), "results": ordered,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp_out, out)
    print(f"\nmutation score {100 * score:.1f}%: {len(killed)} of {len(scored)} killed "
          f"({result['timeouts']} by timeout), {result['seconds']:.0f}s -> {out}")
    for r in survivors:
        print(f"  survived: {r['id']} ({r['module']}): {r['why']}")
    for r in stale:
        print(f"  stale (text not found once; update the mutation): {r['id']} ({r['module']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
