"""The probe behind the sampler's stroke refiner (genfill.models.strokes): a small full-resolution network trained
apart from a finished sampler, on that sampler's mean fills under LaMa thin strokes, to correct them and to say
per pixel how far off they are. Does a local network learn where a thin-stroke fill is wrong, better than the
detail-energy rule (r 0.42) and the learnt error-size head (0.46, benchmarks/results/blend_variants_oracle.md)?

    PYTHONPATH=src python benchmarks/stroke_probe.py train runs/sampler-faces64 --seconds 480 --lr 2e-3 \
        --out /tmp/stroke_probe.pt
    PYTHONPATH=src python benchmarks/stroke_probe.py fid /tmp/stroke_probe.pt -c runs/sampler-faces64 -n 300 \
        --kinds thin --samples 8 --boot 20 --work /tmp/bvr --out /tmp/bvr/out --variant mean \
        --variant band:3:0:0.5 --variant refine:0 --variant refine:1 --variant refine:1.3 --variant oracle:1

`train`: 6,000 training faces under thin strokes (mask seed 77), batch 32, Adam, until --seconds or --steps;
prints the thin-part PSNR of the mean fill and of the corrected one on the first 300 test faces under their eval
thin holes (mask seed 1234) and r of the scale b against both fills' absolute errors (`error_size_r.thin_part_r`).
`fid`: benchmarks/blend_variants.py with one more variant, `refine:G`: the corrected mean fill plus G b z over the
hole, z one normal per sample. The network is the probe's own (default init, the correction added over the whole
hole); the shipped refiner starts at zero and corrects the thin part only. Results:
benchmarks/results/stroke_refiner.md."""
from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from error_size_r import thin_part_r
from genfill.models.exemplars import detail_energy
from genfill.models.sampler import HYBRID_WINDOW, thin_part


class Net(nn.Module):
    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.inp = nn.Conv2d(8, width, 3, padding=1)
        self.body = nn.ModuleList([nn.Conv2d(width, width, 3, padding=d, dilation=d) for d in (1, 2, 4, 2, 1)])
        self.out = nn.Conv2d(width, 6, 3, padding=1)

    def forward(self, x, m, mean):
        e = detail_energy(x, 1 - m, HYBRID_WINDOW)
        h = F.silu(self.inp(torch.cat([x * (1 - m), m, mean, e * 10], 1)))
        for conv in self.body:
            h = h + F.silu(conv(h))
        o = self.out(h)
        return mean + o[:, :3] * m, torch.exp(o[:, 3:].clamp(-12, 3)) * 0.05


def train(a) -> None:
    from genfill.config import DataConfig, from_dict
    from genfill.data.cache import load_cache
    from genfill.masks import masks_at
    from genfill.resolve import resolve

    torch.set_num_threads(2)
    torch.manual_seed(0)
    filler = resolve(a.run, "cpu")
    model = filler.model.eval()
    data = load_cache(from_dict(DataConfig, filler.data, prefix="data"), verbose=False)

    def prep(ids, seed):
        x = data.batch(ids, "cpu")
        m = torch.cat([masks_at("thin", [i], 64, 64, seed=seed) for i in range(len(ids))]).float()
        with torch.no_grad():
            mean = torch.cat([model.mean_pass(u, v) for u, v in zip(x.split(250), m.split(250))])
        return x, m, mean

    tr, te = prep(data.split("train")[:6000], 77), prep(data.split("test")[:300], 1234)
    net = Net()
    opt = torch.optim.Adam(net.parameters(), a.lr)
    thin = lambda m: thin_part(m).expand(-1, 3, -1, -1)  # noqa: E731
    step, t0 = 0, time.time()
    while time.time() - t0 < a.seconds and step < a.steps:
        idx = torch.randint(0, len(tr[0]), (32,))
        x, m, mean = (t[idx] for t in tr)
        if step % 2:
            x, m, mean = x.flip(-1), m.flip(-1), mean.flip(-1)
        pred, b = net(x, m, mean)
        w, err = thin(m), (pred - x).abs()
        l1 = (err * w).sum() / w.sum()
        nll = ((err.detach() / b + b.log()) * w).sum() / w.sum()
        opt.zero_grad()
        (l1 + 0.1 * nll).backward()
        opt.step()
        step += 1
    with torch.no_grad():
        x, m, mean = te
        pred, b = net(x, m, mean)
    w = thin(m).bool()
    psnr = lambda p: float(10 * torch.log10(4 / ((p - x)[w] ** 2).mean()))  # noqa: E731
    print(f"steps {step} in {time.time() - t0:.0f} s; thin-part PSNR mean {psnr(mean):.2f} corrected {psnr(pred):.2f}; "
          f"r(b, |corrected - x|) {thin_part_r(b, pred - x, m)[0]:.3f}, r(b, |mean - x|) {thin_part_r(b, mean - x, m)[0]:.3f}")
    torch.save(net.state_dict(), a.out)


def fid(weights: str, argv: list[str]) -> None:
    import blend_variants as bv

    net = Net()
    net.load_state_dict(torch.load(weights))
    net.eval()
    own = bv.variant_fn

    def variant_fn(name):
        kind, _, arg = name.partition(":")
        if kind != "refine":
            return own(name)
        gain = float(arg)

        def refine(self, x, m, mean, reps, g):
            with torch.no_grad():
                y, b = net(x, m.to(x.dtype), mean)
            mr = m.repeat(reps, 1, 1, 1).to(x.dtype)
            z = torch.randn(len(mr), 1, 1, 1, generator=g, device=x.device, dtype=x.dtype)
            return (y.repeat(reps, 1, 1, 1) + gain * b.repeat(reps, 1, 1, 1) * z * mr).clamp(-1, 1)
        return refine
    bv.variant_fn = variant_fn
    bv.main(argv)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "fid":
        return fid(sys.argv[2], sys.argv[3:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["train"])
    ap.add_argument("run")
    ap.add_argument("--seconds", type=float, default=480)
    ap.add_argument("--steps", type=int, default=10 ** 9)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--out", default="/tmp/stroke_probe.pt")
    train(ap.parse_args())


if __name__ == "__main__":
    main()
