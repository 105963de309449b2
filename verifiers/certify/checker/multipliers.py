"""The Lagrange multipliers of an `lp-phases` piece, read into per-layer overrides.

Two encodings (docs/certificate.md): version 3 lists the ReLUs once per LP tree
(`"relus"`: per ReLU layer, ascending neurons) and each piece's `"lambda"` is a flat list
of numbers in that order; versions 1 and 2 give each piece `[layer, neuron, value]`
triples. Either way a ReLU given no multiplier keeps CROWN's. Any multiplier gives a valid
bound, so the values are only checked to be finite numbers; what is checked strictly is
the shape: every neuron in range, no neuron twice, one value per listed ReLU.
"""

from __future__ import annotations

import math

import numpy as np

from verifiers.certify.checker import exact


class BadMultipliers(Exception):
    """The multipliers are malformed; the message names what (the caller adds where)."""


Overrides = dict[int, tuple[np.ndarray, np.ndarray]]  # ReLU layer -> (neurons, multipliers)


class Relus:
    """The ReLUs an LP tree's pieces give multipliers for: per layer (neurons, offset)."""

    def __init__(self, layers: list[tuple[int, np.ndarray, int]], total: int) -> None:
        self.layers = layers  # (layer, neurons, offset into a piece's flat list)
        self.total = total

    @classmethod
    def read(cls, listed, sizes: list[int]) -> Relus:
        if not (isinstance(listed, list) and len(listed) == len(sizes)):
            raise BadMultipliers("relus must list the neurons of each ReLU layer")
        layers, offset = [], 0
        for k, neurons in enumerate(listed):
            if not isinstance(neurons, list):
                raise BadMultipliers(f"relus of layer {k} is not a list")
            if not all(isinstance(j, int) and not isinstance(j, bool) for j in neurons):
                raise BadMultipliers(f"a neuron of layer {k} is not an integer")
            if any(not 0 <= j < sizes[k] for j in neurons):
                raise BadMultipliers(f"no neuron {neurons!r} in layer {k}")
            if any(a >= b for a, b in zip(neurons, neurons[1:], strict=False)):
                raise BadMultipliers(f"the neurons of layer {k} are not strictly ascending")
            if neurons:
                layers.append((k, np.array(neurons, dtype=np.int64), offset))
                offset += len(neurons)
        return cls(layers, offset)

    def overrides(self, values, scale: float) -> Overrides:
        """A piece's flat multipliers, times `scale`, per layer."""
        if not (isinstance(values, list) and len(values) == self.total):
            raise BadMultipliers(f"lambda needs one multiplier per listed ReLU ({self.total})")
        if not all(exact.is_number(v) for v in values):
            raise BadMultipliers("a multiplier is not a finite number")
        flat = np.array(values, dtype=np.float64) * scale
        return {
            k: (neurons, flat[offset : offset + len(neurons)]) for k, neurons, offset in self.layers
        }


def triples(entries, sizes: list[int], scale: float) -> Overrides:
    """Versions 1 and 2: `[layer, neuron, value]` per multiplier."""
    if not isinstance(entries, list):
        raise BadMultipliers("lambda is not a list")
    by_layer: dict[int, tuple[list[int], list[float]]] = {}
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 3):
            raise BadMultipliers("a multiplier is not [layer, neuron, value]")
        k, j, value = entry
        if not (isinstance(k, int) and 0 <= k < len(sizes)):
            raise BadMultipliers(f"a multiplier on no ReLU layer ({k!r})")
        if not (isinstance(j, int) and 0 <= j < sizes[k]):
            raise BadMultipliers(f"a multiplier on no neuron ({j!r})")
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise BadMultipliers("a multiplier is not a finite number")
        by_layer.setdefault(k, ([], []))
        by_layer[k][0].append(j)
        by_layer[k][1].append(float(value) * scale)
    return {k: (np.array(js), np.array(vs)) for k, (js, vs) in by_layer.items()}
