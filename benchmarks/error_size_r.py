"""How well a sampler's guess of its mean fill's error size tracks the error, in the thin parts of the hole (where
the hybrid blend reads it): Pearson r of the guess and |mean pass - truth| over the hole values whose hybrid width
is below 1, the first 300 faces64 test images under their thin and medium eval holes (mask seed 1234). The guesses:
the detail energy of the known pixels (3 px window, the shipped rule) and, for a run with an error-size head
(model.scale_width > 0), the head's prediction.

    PYTHONPATH=src python benchmarks/error_size_r.py runs/sampler-head2

Results: benchmarks/results/blend_variants_oracle.md."""
import torch, sys
from genfill.resolve import resolve
from genfill.config import DataConfig, from_dict
from genfill.data.cache import load_cache
from genfill.masks import masks_at
from genfill.models.exemplars import detail_energy
from genfill.models.sampler import hybrid_width
torch.set_num_threads(2)
filler = resolve(sys.argv[1], "cpu"); model = filler.model.eval()
data = load_cache(from_dict(DataConfig, filler.data, prefix="data"), verbose=False)
te = data.split("test")[:300]
x = data.batch(te, "cpu")
for kind in ("thin", "medium"):
    m = torch.cat([masks_at(kind, [i], 64, 64, seed=1234) for i in range(len(te))]).float()
    with torch.no_grad():
        mean = model.mean_pass(x, m)
        err = (mean - x).abs()
        e = detail_energy(x, 1 - m, 3.0).expand_as(err)
        h = model.error_scale(x, m, mean) if model.error_scale is not None else e
    thin = (m * (1 - hybrid_width(m))).expand_as(err).bool()
    def r(a): return float(torch.corrcoef(torch.stack([a[thin], err[thin]]))[0, 1])
    print(kind, "thin-part values", int(thin.sum()), "r energy", round(r(e), 3), "r head", round(r(h), 3),
          "mean|err|", round(float(err[thin].mean()), 4), "mean head", round(float(h[thin].mean()), 4))
