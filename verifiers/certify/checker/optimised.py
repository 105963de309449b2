"""A row proof's optimised slopes and split multipliers (format v2), read and range-checked.

alpha-CROWN's lower slopes and beta-CROWN's split multipliers are only numbers the checker
plugs into its own exact bound (lagrangian.lower_linear): any lower slope in [alpha, 1] of
a ReLU (alpha: its LeakyRelu slope) gives a valid lower line, and a multiplier beta >= 0 of a
split z >= 0 (or z <= 0) adds beta * (-z) (or beta * z), which is <= 0 on the region, to
the objective. So a certificate's numbers can make a bound looser, never wrong; the ranges
are checked all the same, and a multiplier on a ReLU the region does not split is refused.
"""

from __future__ import annotations

import numpy as np

from verifiers.certify.checker import exact
from verifiers.certify.checker.lagrangian import Optimised


class BadNumbers(ValueError):
    """Slopes or multipliers out of range or malformed; the message says which."""


def read(proof: dict, sizes: list[int], alphas: list[float], phases) -> Optimised | None:
    """The proof's Optimised, or None when it has neither slopes nor betas."""
    if "slopes" not in proof and "betas" not in proof:
        return None
    return Optimised(_slopes(proof.get("slopes"), sizes, alphas), _betas(proof, sizes, phases))


def scaled(numbers: Optimised | None, factor: int) -> Optimised | None:
    """The numbers for the row times `factor` (the checker's dyadic form of a half-space,
    rows.scale): the split multipliers scale with the row, the slopes do not."""
    if numbers is None or factor == 1:
        return numbers
    betas = {k: (js, vs * float(factor)) for k, (js, vs) in numbers.betas.items()}
    return Optimised(numbers.slopes, betas)


def _slopes(layers, sizes, alphas) -> dict[int, np.ndarray]:
    if layers is None:
        return {}
    if not isinstance(layers, list) or len(layers) != len(sizes):
        raise BadNumbers(f"slopes: expected one list per ReLU layer ({len(sizes)})")
    out = {}
    for k, (values, size, alpha) in enumerate(zip(layers, sizes, alphas, strict=True)):
        if not isinstance(values, list) or len(values) != size:
            raise BadNumbers(f"slopes of layer {k}: expected {size} numbers")
        if not all(exact.is_number(v) for v in values):
            raise BadNumbers(f"slopes of layer {k}: not all finite numbers")
        array = np.array(values, dtype=np.float64)
        low, high = min(alpha, 1.0), max(alpha, 1.0)
        if np.any(array < low) or np.any(array > high):
            raise BadNumbers(f"slopes of layer {k}: a lower slope outside [{low}, {high}]")
        out[k] = array
    return out


def _betas(proof, sizes, phases) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    entries = proof.get("betas", [])
    if not isinstance(entries, list):
        raise BadNumbers("betas: not a list")
    signs = {(k, j): (-1.0 if active else 1.0) for k, j, active in phases}
    by_layer: dict[int, tuple[list[int], list[float]]] = {}
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 3):
            raise BadNumbers("betas: an entry is not [layer, neuron, beta]")
        k, j, beta = entry
        if not (_index(k, len(sizes)) and _index(j, sizes[k])):
            raise BadNumbers(f"betas: no ReLU ({k!r}, {j!r})")
        if not exact.is_number(beta) or beta < 0:
            raise BadNumbers(f"betas: ({k}, {j}) has no finite multiplier >= 0")
        if (k, j) not in signs:
            raise BadNumbers(f"betas: ({k}, {j}) is not split in this region")
        by_layer.setdefault(k, ([], []))
        by_layer[k][0].append(j)
        by_layer[k][1].append(float(beta) * signs[(k, j)])
    return {k: (np.array(js), np.array(vs)) for k, (js, vs) in by_layer.items()}


def _index(v, size: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < size
