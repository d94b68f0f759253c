"""How well a guess of the sampler's mean-fill error size tracks that error in the thin parts of the hole (where the
hybrid blend reads its guess): Pearson r of the guess and |mean pass - truth| over the hole values whose hybrid
width is below 1, on the first 300 faces64 test images under their thin and medium eval holes (mask seed 1234),
and for thin holes the Pearson r, over images, of each image's RMS error and the RMS of the rule's spread size.
The guess: the detail energy of the known pixels (3 px window, the shipped rule); for thin holes also the mean
|c - mean(c)| of the k nearest stored faces (blend_variants' `nbrsize`), alone and times the energy; for a run with an error-size head
(the `model.scale_width` of the commit that added this script, since taken out again), the head's prediction too.

    PYTHONPATH=src python benchmarks/error_size_r.py runs/sampler-faces64

Results: benchmarks/results/blend_variants_oracle.md."""
from __future__ import annotations

import argparse

import torch

from genfill.models.exemplars import detail_energy
from genfill.models.sampler import HYBRID_GAIN, HYBRID_WINDOW, thin_part


def thin_part_r(guess: torch.Tensor, err: torch.Tensor, m: torch.Tensor) -> tuple[float, int]:
    """Pearson r of `guess` (broadcast to err's shape) and |err| over the hole values of m (N,1,H,W) whose hybrid
    width is below 1, and how many values that is."""
    thin = thin_part(m).expand_as(err).bool()
    a, b = guess.expand_as(err)[thin].double(), err.abs()[thin].double()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1]), int(thin.sum())


@torch.no_grad()
def main(argv=None) -> None:
    from genfill.config import DataConfig, from_dict
    from genfill.data.cache import load_cache
    from genfill.masks import masks_at
    from genfill.resolve import resolve

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a sampler run")
    ap.add_argument("-n", type=int, default=300)
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    filler = resolve(a.run, "cpu")
    model = filler.model.eval()
    data = load_cache(from_dict(DataConfig, filler.data, prefix="data"), verbose=False)
    te = data.split("test")[:a.n]
    x = data.batch(te, "cpu")
    for kind in ("thin", "medium"):
        m = torch.cat([masks_at(kind, [i], x.shape[-2], x.shape[-1], seed=1234) for i in range(len(te))]).float()
        mean = model.mean_pass(x, m)
        err = mean - x
        r, count = thin_part_r(detail_energy(x, 1 - m, HYBRID_WINDOW), err, m)
        line = f"{kind}: {count} thin-part values, r energy {r:.3f}"
        if kind == "thin":  # how much each image's fill is off, against how much the rule spreads it
            energy = HYBRID_GAIN * detail_energy(x, 1 - m, HYBRID_WINDOW)
            per_image = [((v ** 2) * m).sum((1, 2, 3)).sqrt() for v in (err, energy.expand_as(err))]
            line += f"; per image, RMS error against RMS size: r {float(torch.corrcoef(torch.stack(per_image))[0, 1]):.2f}"
        if kind == "thin" and getattr(model, "exemplars", None) is not None and len(model.exemplars):
            from blend_variants import neighbour_error_size  # a sibling script (benchmarks/ is on sys.path)

            size = neighbour_error_size(model, x, m)  # the look-alikes' own errors: blend_variants' nbrsize
            energy = detail_energy(x, 1 - m, HYBRID_WINDOW)
            line += (f"; nearest faces' errors: r {thin_part_r(size, err, m)[0]:.3f}, "
                     f"times the energy {thin_part_r(size * energy, err, m)[0]:.3f}")
        head = getattr(model, "error_scale", None)
        if head is not None:
            line += f", r head {thin_part_r(head(x, m, mean), err, m)[0]:.3f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
