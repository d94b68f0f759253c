"""The `mixed` kind: per mask, one member kind drawn uniformly from a list (the default training kind)."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from genfill.errors import GenfillError
from genfill.masks.kinds import MASK_KINDS, _randint, _register, _resolve

_MIXED_DEFAULT = ("thin", "medium", "thick", "box", "square", "freeform")


def _mixed_members(p: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    kinds = p["kinds"]
    if isinstance(kinds, str) or not kinds:
        raise GenfillError(f"mixed: kinds must be a non-empty list of mask kinds, got {kinds!r}")
    per_kind = p["kind_params"] or {}
    if not isinstance(per_kind, Mapping):
        raise GenfillError(f"mixed: kind_params must map a kind to its parameters, got {per_kind!r}")
    for name in per_kind:
        if name not in kinds:
            raise GenfillError(f"mixed: kind_params names {name!r}, which is not in kinds {list(kinds)}")
    members = []
    for name in kinds:
        if name in ("mixed", "file"):
            raise GenfillError(f"mixed: {name!r} cannot be a member of mixed")
        members.append((name, _resolve(name, per_kind.get(name, {}))))
    return members


def _mixed_bounds(height: int, width: int, p: Mapping[str, Any]) -> tuple[float, float]:
    bounds = [MASK_KINDS[k].bounds_fn(height, width, q) for k, q in _mixed_members(p)]
    return min(b[0] for b in bounds), max(b[1] for b in bounds)


@_register("mixed", {"kinds": _MIXED_DEFAULT, "kind_params": None}, _mixed_bounds)
def _mixed(n, height, width, g, device, *, kinds, kind_params):
    """Per mask, one kind drawn uniformly from ``kinds``.

    Parameters: ``kinds`` (list of kind names, default thin, medium, thick, box, square, freeform; a name may
    repeat to weight it), ``kind_params`` (optional {kind: {param: value}} for the members). Every member's
    limits apply: with the default square (32 px) the image must be at least 32x32.
    Hole ratio: within the union of the members' bounds; measured 1st..99th percentile 0.015..0.465 at 64x64.
    """
    return _mixed_draw(n, height, width, g, device, {"kinds": kinds, "kind_params": kind_params})[0]


def _mixed_draw(n, height, width, g, device, p: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """mixed's masks and, per mask, the index of the member kind that drew it (the bank needs to know)."""
    members = _mixed_members(p)
    for name, q in members:  # fail before drawing anything, e.g. a square too large for the image
        MASK_KINDS[name].bounds_fn(height, width, q)
    choice = _randint(g, 0, len(members) - 1, (n,), device)
    out = torch.empty(n, 1, height, width, device=device)
    for i, (name, q) in enumerate(members):
        idx = (choice == i).nonzero().flatten()
        if idx.numel() > 0:
            out[idx] = MASK_KINDS[name].generate(idx.numel(), height, width, g, device, **q)
    return out, choice
