"""The mask-kind registry (`MASK_KINDS`, `MaskKind` with guaranteed hole-ratio bounds), the checks of a kind's
parameters, and the public draws: `make_masks` (random), `fixed_masks` / `masks_at` (fixed per (kind, seed,
index)), `hole_ratio`. The kinds themselves register from `shapes`, `lama`, `mixed` and `files`."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from genfill.errors import GenfillError, did_you_mean

# LaMa's and DeepFill's pixel parameters were tuned for 256x256 crops; we scale them by min(H, W) / 256.
REFERENCE_SIDE = 256

Generate = Callable[..., torch.Tensor]  # (n, height, width, generator, device, **params) -> (n,1,H,W)
Bounds = Callable[[int, int, Mapping[str, Any]], "tuple[float, float]"]


@dataclass(frozen=True)
class MaskKind:
    """One registered mask kind.

    ``generate(n, height, width, generator, device, **params)`` returns (n,1,H,W) float32 masks on ``device``;
    it receives every parameter (defaults filled in). ``bounds(height, width, **params)`` returns the
    (low, high) hole ratio that every mask of that size obeys. ``random`` is False for kinds whose output
    does not depend on the generator (center, file).
    """

    name: str
    generate: Generate
    defaults: Mapping[str, Any]
    bounds_fn: Bounds
    random: bool = True
    summary: str = field(default="", compare=False)

    def bounds(self, height: int = REFERENCE_SIDE, width: int = REFERENCE_SIDE, **params: Any) -> tuple[float, float]:
        """Guaranteed (low, high) hole ratio of every mask of this kind at ``height`` x ``width``."""
        full = _resolve(self.name, params)
        _check_size(1, height, width)
        return self.bounds_fn(height, width, full)

    @property
    def ratio_range(self) -> tuple[float, float]:
        """Guaranteed (low, high) hole ratio at the reference size 256x256 with default parameters."""
        return self.bounds(REFERENCE_SIDE, REFERENCE_SIDE)


MASK_KINDS: dict[str, MaskKind] = {}


def _register(name: str, defaults: Mapping[str, Any], bounds: Bounds, random: bool = True):
    def wrap(fn: Generate) -> Generate:
        doc = (fn.__doc__ or "").strip().splitlines()
        MASK_KINDS[name] = MaskKind(name, fn, dict(defaults), bounds, random, doc[0] if doc else "")
        return fn

    return wrap


def mask_kinds() -> list[str]:
    """Names of the registered mask kinds, in registration order."""
    return list(MASK_KINDS)


def _get_kind(kind: str) -> MaskKind:
    if kind not in MASK_KINDS:
        raise GenfillError(f"unknown mask kind {kind!r}{did_you_mean(kind, MASK_KINDS)}; valid kinds: "
                           f"{', '.join(MASK_KINDS)}")
    return MASK_KINDS[kind]


def check_params(kind: str, params: Mapping[str, Any]) -> None:
    """Raise GenfillError if ``kind`` is not registered or ``params`` holds a key the kind does not take.

    Only the keys are checked here; values are checked by the generator when masks are drawn.
    """
    spec = _get_kind(kind)
    unknown = [k for k in params if k not in spec.defaults]
    if unknown:
        valid = ", ".join(spec.defaults) or "(none)"
        raise GenfillError(f"unknown parameter {unknown[0]!r} for mask kind {kind!r}; valid parameters: {valid}")


def check_mask(kind: str, params: Mapping[str, Any], height: int, width: int) -> None:
    """`check_params`, and the values too: the kind's geometry at height x width (its bounds), without
    drawing a mask, so a config is refused at load time as the run would refuse it."""
    _get_kind(kind).bounds(height, width, **params)


def _resolve(kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
    check_params(kind, params)
    return {**MASK_KINDS[kind].defaults, **params}


# ----------------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------------


def make_masks(
    kind: str,
    n: int,
    height: int,
    width: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    **params: Any,
) -> torch.Tensor:
    """Draw ``n`` random masks of ``kind``: (n,1,height,width) float32 on ``device``, 1 = hole.

    ``generator`` must live on ``device`` (torch draws random numbers where the tensor is made). When it is
    None a fresh generator is seeded from OS entropy (``torch.Generator(device).seed()``): the masks are
    then unpredictable, and torch's global RNG state is neither read nor advanced.
    """
    spec = _get_kind(kind)
    full = _resolve(kind, params)
    _check_size(n, height, width)
    device = _as_device(device)
    if generator is None:
        generator = torch.Generator(device=device)
        generator.seed()
    elif not _same_device(generator.device, device):
        raise GenfillError(f"the mask generator is on {generator.device} but masks were asked for on {device}")
    masks = spec.generate(n, height, width, generator, device, **full)
    return masks.to(dtype=torch.float32)


def fixed_masks(
    kind: str,
    n: int,
    height: int,
    width: int,
    *,
    seed: int = 0,
    start: int = 0,
    device: torch.device | str = "cpu",
    **params: Any,
) -> torch.Tensor:
    """Deterministic masks for indices ``start .. start+n-1``: (n,1,height,width) float32 on ``device``.

    Mask i depends only on (kind, params, seed, start+i, height, width): each index gets its own CPU
    generator seeded from a hash of (kind, seed, index), so ``fixed_masks(k, 10, ...)`` equals the first ten
    of ``fixed_masks(k, 100, ...)``, ``start=10`` continues where they stopped, and the result is the same
    on every device (drawn on CPU, then moved). One index at a time: use it for evaluation sets, not in a
    training loop.
    """
    _check_size(n, height, width)
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise GenfillError(f"start must be an integer >= 0, got {start!r}")
    return masks_at(kind, range(start, start + n), height, width, seed=seed, device=device, **params)


def masks_at(
    kind: str,
    indices: Sequence[int],
    height: int,
    width: int,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    **params: Any,
) -> torch.Tensor:
    """The fixed masks of `fixed_masks` for any indices (in any order): (len(indices),1,height,width)."""
    spec = _get_kind(kind)
    full = _resolve(kind, params)
    _check_size(len(indices), height, width)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise GenfillError(f"seed must be an integer, got {seed!r}")
    cpu = torch.device("cpu")
    out = torch.empty(len(indices), 1, height, width, dtype=torch.float32)
    for i, index in enumerate(indices):
        g = torch.Generator(device=cpu)
        g.manual_seed(_index_seed(kind, seed, int(index)))
        out[i] = spec.generate(1, height, width, g, cpu, **full)[0]
    return out.to(_as_device(device))


def hole_ratio(masks: torch.Tensor) -> torch.Tensor:
    """Fraction of hole pixels per mask: (N,1,H,W) -> (N,) float32."""
    if masks.dim() != 4 or masks.shape[1] != 1:
        raise GenfillError(f"masks must have shape (N,1,H,W), got {tuple(masks.shape)}")
    return masks.flatten(1).float().mean(dim=1)


# ----------------------------------------------------------------------------------------------------
# Validation and small helpers
# ----------------------------------------------------------------------------------------------------


def _check_size(n: int, height: int, width: int) -> None:
    for name, value, low in (("n", n, 0), ("height", height, 1), ("width", width, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise GenfillError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_hw(size: Any) -> tuple[int, int]:
    try:
        h, w = size
    except (TypeError, ValueError):
        raise GenfillError(f"size must be (height, width), got {size!r}") from None
    _check_size(1, h, w)
    return h, w


def _as_device(device: torch.device | str) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise GenfillError(f"bad device {device!r}: {err}") from None


def _same_device(a: torch.device, b: torch.device) -> bool:
    # "cuda" and "cuda:0" name the same device when the current device is 0.
    if a.type != b.type:
        return False
    if a.type == "cpu":
        return True
    current = torch.cuda.current_device() if a.type == "cuda" else 0
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)


def _index_seed(kind: str, seed: int, index: int) -> int:
    # A stable hash (Python's hash() of a str changes between processes); 63 bits fit manual_seed.
    digest = hashlib.sha256(f"genfill-mask|{kind}|{seed}|{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _int_param(kind: str, name: str, value: Any, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise GenfillError(f"{kind}: {name} must be an integer >= {low}, got {value!r}")
    return value


def _float_param(kind: str, name: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (isinstance(value, int) or math.isfinite(value))  # NaN and inf would draw nothing sensible
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise GenfillError(f"{kind}: {name} must be a number in {bracket}{low}, {high}], got {value!r}")
    return float(value)


def _scale(kind: str, scale: Any, height: int, width: int) -> float:
    if scale is None:
        return min(height, width) / REFERENCE_SIDE
    return _float_param(kind, "scale", scale, 0.0, math.inf, low_open=True)


def _rand(g: torch.Generator, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=g, device=device)


def _randint(g: torch.Generator, low: Any, high: Any, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Uniform integers in [low, high] inclusive; low/high may be tensors broadcastable to ``shape``."""
    low_t = torch.as_tensor(low, device=device, dtype=torch.float32)
    high_t = torch.as_tensor(high, device=device, dtype=torch.float32)
    draw = torch.floor(low_t + _rand(g, shape, device) * (high_t - low_t + 1))
    return torch.minimum(draw, high_t).long()  # rand < 1, but float rounding can still land on high + 1
