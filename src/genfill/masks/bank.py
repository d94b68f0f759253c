"""The training mask bank: masks drawn once (cached on disk per kind, parameters, size, seed and count), kept
on the device as packed bits, and sampled with random symmetries: no host work per step."""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from genfill.errors import GenfillError
from genfill.io import atomic_torch_save
from genfill.masks.kinds import _as_device, _check_size, _get_kind, _resolve, _same_device
from genfill.masks.mixed import _mixed_draw
from genfill.progress import Progress, say
from genfill.usercache import mark

# Kinds whose masks may be rolled (shifted with wrap-around): strokes with no margin and no box shape to
# keep. A rolled stroke that leaves one edge comes back at the other, still a stroke; a rolled square
# would break its margin and a rolled box would split into corner pieces, so those are never rolled.
ROLL_KINDS = ("thin", "freeform")
# Masks drawn per call while building: enough to amortise the per-call overhead (on a GPU, its launch
# latency), few enough that the rasteriser's working set stays in cache on a CPU.
_BANK_CHUNK = {"cpu": 1024, "cuda": 8192}
_BANK_FORMAT = 1
_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)  # pixel 0 of a byte in its most significant bit


def _pack_bits(masks: torch.Tensor) -> torch.Tensor:
    """(n,1,H,W) binary -> (n,H,ceil(W/8)) uint8, 8 pixels a byte, pixel j in bit 7 - j % 8 of byte j // 8."""
    n, _, h, w = masks.shape
    bits = torch.nn.functional.pad(masks[:, 0] > 0.5, (0, -w % 8)).view(n, h, -1, 8).to(torch.uint8)
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=masks.device)
    return (bits * weights).sum(-1, dtype=torch.uint8)


class MaskBank:
    """A fixed set of training masks resident on the device as packed bits, sampled with random symmetries.

    ``sample(n, generator)`` returns (n,1,H,W) float32 on the bank's device, 1 = hole: n masks picked
    uniformly from the bank, each under a random dihedral transform (flip rows, flip columns, and on a
    square size a transpose: 8 symmetries, every one of which maps a mask of any registered kind to a
    mask the kind could have drawn) and, for masks of ``ROLL_KINDS``, a random roll. Every transform
    permutes pixels, so a sampled mask has exactly its bank mask's hole ratio. One gather and a few
    elementwise ops on the device, with the generator on the device: no host work, no host sync.
    """

    def __init__(self, packed: torch.Tensor, rollable: torch.Tensor, height: int, width: int,
                 info: dict | None = None) -> None:
        if packed.dim() != 3 or packed.dtype != torch.uint8 or packed.shape[1:] != (height, (width + 7) // 8):
            raise GenfillError(f"a mask bank is (n,{height},{(width + 7) // 8}) uint8, got {tuple(packed.shape)} "
                               f"{packed.dtype}")
        if len(packed) == 0:
            raise GenfillError("a mask bank needs at least one mask")
        self.packed, self.rollable = packed, rollable.to(device=packed.device, dtype=torch.bool)
        self.height, self.width, self.info = height, width, dict(info or {})
        self._rows = torch.arange(height, device=packed.device).view(1, height, 1)
        self._cols = torch.arange(width, device=packed.device).view(1, 1, width)

    def __len__(self) -> int:
        return self.packed.shape[0]

    @property
    def device(self) -> torch.device:
        return self.packed.device

    def to(self, device: torch.device | str) -> "MaskBank":
        return MaskBank(self.packed.to(device), self.rollable.to(device), self.height, self.width, self.info)

    def masks(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """The bank's own masks `idx` (all when None), untransformed: (k,1,H,W) float32."""
        packed = self.packed if idx is None else self.packed[idx]
        return self._unpack(packed[:, self._rows.expand(1, self.height, self.width)[0], self._cols[0] >> 3],
                            self._cols[0])

    @staticmethod
    def _unpack(byte: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        return ((byte >> (7 - (col & 7)).to(torch.uint8)) & 1).unsqueeze(1).float()

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n random masks (n,1,H,W) float32 on the bank's device; `generator` must live there too."""
        dev, h, w = self.device, self.height, self.width
        if not _same_device(generator.device, dev):
            raise GenfillError(f"the mask generator is on {generator.device} but the bank is on {dev}")
        idx = torch.randint(0, len(self), (n,), generator=generator, device=dev)
        flips = torch.randint(0, 2, (n, 3, 1, 1), generator=generator, device=dev).bool()
        shift = torch.stack([torch.randint(0, h, (n,), generator=generator, device=dev),
                             torch.randint(0, w, (n,), generator=generator, device=dev)], 1)
        shift = shift * self.rollable[idx, None]  # (n,2): zero where the mask's kind is not rolled
        # Output pixel (i, j) reads bank pixel (r, c): transpose, flips, then roll, all as index maps.
        r, c = self._rows.expand(n, h, w), self._cols.expand(n, h, w)
        if h == w:
            r, c = torch.where(flips[:, 2], c, r), torch.where(flips[:, 2], r, c)
        r = torch.where(flips[:, 0], h - 1 - r, r)
        c = torch.where(flips[:, 1], w - 1 - c, c)
        r = (r + shift[:, 0, None, None]) % h
        c = (c + shift[:, 1, None, None]) % w
        return self._unpack(self.packed[idx[:, None, None], r, c >> 3], c)


def _bank_key(kind: str, full: Mapping[str, Any], height: int, width: int, seed: int, count: int,
              device: torch.device) -> tuple[str, dict]:
    # The drawing device is part of the key: CPU and CUDA generators give different streams for one seed.
    meta = {"format": _BANK_FORMAT, "kind": kind, "params": {k: full[k] for k in sorted(full)},
            "height": height, "width": width, "seed": seed, "count": count, "drawn_on": device.type}
    text = json.dumps(meta, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20], json.loads(text)


def draw_bank(kind: str, count: int, height: int, width: int, *, seed: int = 0,
              device: torch.device | str = "cpu", progress=None, **params: Any) -> MaskBank:
    """Draw `count` masks of `kind` with one generator seeded by `seed`, in chunks, on `device`;
    `progress(k)` is called after each chunk of k masks."""
    spec = _get_kind(kind)
    full = _resolve(kind, params)
    _check_size(count, height, width)
    if count < 1:
        raise GenfillError(f"a mask bank needs at least one mask, got count {count}")
    device = _as_device(device)
    g = torch.Generator(device=device).manual_seed(int(seed))
    packed, rollable = [], []
    chunk = _BANK_CHUNK.get(device.type, 1024)
    for start in range(0, count, chunk):
        k = min(chunk, count - start)
        if kind == "mixed":
            masks, choice = _mixed_draw(k, height, width, g, device, full)
            members = [name in ROLL_KINDS for name in full["kinds"]]
            roll = torch.tensor(members, device=device)[choice]
        else:
            masks = spec.generate(k, height, width, g, device, **full)
            roll = torch.full((k,), kind in ROLL_KINDS, device=device)
        packed.append(_pack_bits(masks))
        rollable.append(roll)
        if progress is not None:
            progress(k)
    key, meta = _bank_key(kind, full, height, width, int(seed), count, device)
    return MaskBank(torch.cat(packed), torch.cat(rollable), height, width, {**meta, "key": key})


def mask_bank(kind: str, count: int, height: int, width: int, *, seed: int = 0,
              device: torch.device | str = "cpu", cache_dir: str | Path | None = None, verbose: bool = False,
              **params: Any) -> MaskBank:
    """The bank of `draw_bank`, read from `cache_dir/masks/` when it was drawn before, else drawn and
    written there atomically (keyed by kind, resolved parameters, size, seed, count and the drawing
    device's type). Resident on `device`."""
    device = _as_device(device)
    full = _resolve(kind, params)
    _check_size(count, height, width)
    key, meta = _bank_key(kind, full, height, width, int(seed), count, device)
    path = Path(cache_dir) / "masks" / f"{kind}-{height}x{width}-{count}-{key}.pt" if cache_dir else None
    if path is not None and path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("meta") == meta:
                return MaskBank(saved["packed"], saved["rollable"], height, width,
                                {**meta, "key": key, "path": str(path)}).to(device)
        except (OSError, RuntimeError, KeyError, AttributeError, EOFError, ValueError, pickle.UnpicklingError):
            pass  # a damaged or foreign file: draw again and replace it
    t0 = time.perf_counter()
    with Progress(count, f"drawing a bank of {kind} masks", "masks", enabled=verbose) as bar:
        bank = draw_bank(kind, count, height, width, seed=seed, device=device, progress=bar.update, **params)
    if verbose:
        say(f"genfill: drew a bank of {count} {kind} masks at {height}x{width} in "
            f"{time.perf_counter() - t0:.1f} s" + (f" -> {path}" if path else ""))
    if path is not None:
        mark(Path(cache_dir))
        atomic_torch_save({"meta": meta, "packed": bank.packed.cpu(), "rollable": bank.rollable.cpu()}, path)
        bank.info["path"] = str(path)
    return bank
