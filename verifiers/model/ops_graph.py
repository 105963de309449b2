"""IR ops beyond the Affine/ReLU chain: Clip, PRelu, Max, Min, Pad, Softmax.

Only the graph engine (verifiers/bounds/graph) bounds the non-linear ones; Pad is linear and
joins the chain normal form too. Conventions as in ``ops.py``: constants are float64 copies
of the float32 values, evaluation is batched over a prepended axis.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from verifiers.model.ir import OpKind
from verifiers.model.ops import _Linear, lift


@dataclass(frozen=True, eq=False)
class Clip:
    """min(max(x, low), high); an absent bound is None."""

    kind: ClassVar[OpKind] = OpKind.NONLINEAR
    low: float | None
    high: float | None

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        if self.low is not None:
            x = np.maximum(x, self.low)
        return x if self.high is None else np.minimum(x, self.high)


@dataclass(frozen=True, eq=False)
class PRelu:
    """x for x >= 0, slope * x otherwise; the slope broadcasts against x (ONNX rules)."""

    kind: ClassVar[OpKind] = OpKind.NONLINEAR
    rank: int
    slope: np.ndarray

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        x = lift(x, self.rank)
        return np.where(x >= 0, x, self.slope * x)


@dataclass(frozen=True, eq=False)
class Max:
    """Elementwise max of the variable inputs (broadcast) and an optional constant."""

    kind: ClassVar[OpKind] = OpKind.NONLINEAR
    rank: int
    const: np.ndarray | None = None

    def evaluate(self, *xs: np.ndarray) -> np.ndarray:
        arrays = [lift(x, self.rank) for x in xs]
        if self.const is not None:
            arrays.append(self.const)
        return np.maximum.reduce(np.broadcast_arrays(*arrays))


@dataclass(frozen=True, eq=False)
class Min(Max):
    def evaluate(self, *xs: np.ndarray) -> np.ndarray:
        arrays = [lift(x, self.rank) for x in xs]
        if self.const is not None:
            arrays.append(self.const)
        return np.minimum.reduce(np.broadcast_arrays(*arrays))


@dataclass(frozen=True)
class Pad(_Linear):
    """Constant padding; ``pads`` in ONNX order (all begins, then all ends), non-negative."""

    pads: tuple[int, ...]
    value: float = 0.0

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        rank = len(self.pads) // 2
        widths = [(0, 0)] + [(self.pads[i], self.pads[i + rank]) for i in range(rank)]
        return np.pad(x, widths, constant_values=self.value)

    def without_bias(self) -> Pad:
        return replace(self, value=0.0)

    def magnitude(self) -> Pad:
        return replace(self, value=abs(self.value))


@dataclass(frozen=True)
class Softmax:
    """Bounded nowhere: the graph engine strips a final Softmax when the property compares
    outputs pairwise (softmax preserves their order), and rejects it otherwise."""

    kind: ClassVar[OpKind] = OpKind.NONLINEAR
    axis: int  # non-negative ONNX axis

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        shifted = x - x.max(axis=self.axis + 1, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=self.axis + 1, keepdims=True)
