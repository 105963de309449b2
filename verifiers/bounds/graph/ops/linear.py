"""Linear ops as dense matrices, one per variable input: y = sum_i W_i x_i + b.

Any IR op of kind LINEAR (Gemm, MatMul, Conv, BatchNormalization, AveragePool, Add, Sub,
Concat, Transpose, Pad, Mul/Div by constants, ...) becomes one `Linear`: W_i is the bias-free
op evaluated on the identity basis of input i (the others zero), b the op on zeros, with the
same rigorous composition-error bound as the chain normal form (model/normalize.py):
|W_i(exact) - W_i| <= W_err_i and |b(exact) - b| <= b_err. Ops that only reshape (Flatten,
Reshape, Squeeze, Unsqueeze, Identity) keep the flat order: they are `Alias`es.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from verifiers.bounds.graph.ops.base import Back, Box, magnitude
from verifiers.bounds.rounding import UNIT_ROUNDOFF, gamma, widen_down, widen_up
from verifiers.errors import UnsupportedError
from verifiers.model.ir import LinearOp

BASIS_CHUNK = 256


@dataclass(frozen=True)
class Alias:
    """The identity on flat tensors (a reshape)."""

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return x

    def interval(self, boxes: list[Box]) -> Box:
        return boxes[0]

    def relax(self, boxes: list[Box]) -> Alias:
        return self

    def back(self, coeffs: np.ndarray) -> Back:
        zero = np.zeros(coeffs.shape[:2])
        return [coeffs], zero, zero

    def vjp(self, xs: list[np.ndarray], grad: np.ndarray) -> list[np.ndarray]:
        return [grad]


@dataclass(frozen=True, eq=False)
class Linear:
    weights: tuple[np.ndarray, ...]  # (n_out, n_in_i)
    bias: np.ndarray  # (n_out,)
    weight_errs: tuple[np.ndarray, ...]
    bias_err: np.ndarray

    @classmethod
    def of(cls, op: LinearOp, in_shapes: list[tuple[int, ...]]) -> Linear:
        sizes = [int(np.prod(s, dtype=np.int64)) for s in in_shapes]

        def run(transform: Callable[[LinearOp], LinearOp], i: int, x: np.ndarray) -> np.ndarray:
            parts = [
                x.reshape(len(x), *s) if j == i else np.zeros((len(x), *s))
                for j, s in enumerate(in_shapes)
            ]
            return transform(op).evaluate(*parts).reshape(len(x), -1)

        def columns(transform, i: int) -> np.ndarray:
            blocks = [
                run(transform, i, np.eye(min(BASIS_CHUNK, sizes[i] - s), sizes[i], k=s))
                for s in range(0, sizes[i], BASIS_CHUNK)
            ]
            return np.concatenate(blocks, axis=0).T.copy()

        weights = [columns(lambda o: o.without_bias(), i) for i in range(len(sizes))]
        mags = [columns(lambda o: o.without_bias().magnitude(), i) for i in range(len(sizes))]
        bias = run(lambda o: o, 0, np.zeros((1, sizes[0])))[0]
        bias_mag = run(lambda o: o.magnitude(), 0, np.zeros((1, sizes[0])))[0]
        factor = 2.0 * _gamma(op.rounding_depth())
        return cls(tuple(weights), bias, tuple(factor * m for m in mags), factor * np.abs(bias_mag))

    def evaluate(self, *xs: np.ndarray) -> np.ndarray:
        return sum((x @ w.T for x, w in zip(xs, self.weights, strict=True)), self.bias)

    def interval(self, boxes: list[Box]) -> Box:
        low = high = self.bias
        # One long sum of every product and the bias: within gamma(its length) of its terms.
        depth = sum(w.shape[1] for w in self.weights) + 1
        slack = np.abs(self.bias) * gamma(depth) + self.bias_err
        for (lo, hi), w, err in zip(boxes, self.weights, self.weight_errs, strict=True):
            pos, neg = np.maximum(w, 0.0), np.minimum(w, 0.0)
            low = low + lo @ pos.T + hi @ neg.T
            high = high + hi @ pos.T + lo @ neg.T
            mag = magnitude((lo, hi))
            slack = slack + gamma(depth) * (mag @ np.abs(w).T) + mag @ err.T
        return widen_down(low, slack), widen_up(high, slack)

    def relax(self, boxes: list[Box]) -> LinearRelaxed:
        return LinearRelaxed(self, [magnitude(b) for b in boxes])

    def vjp(self, xs: list[np.ndarray], grad: np.ndarray) -> list[np.ndarray]:
        return [grad @ w for w in self.weights]


@dataclass(frozen=True)
class LinearRelaxed:
    op: Linear
    magnitudes: list[np.ndarray]  # of each input box (batch, n_in_i)

    def back(self, coeffs: np.ndarray) -> Back:
        op = self.op
        abs_c = np.abs(coeffs)
        n_out = op.bias.shape[0]
        const = coeffs @ op.bias
        per_out = gamma(n_out) * np.abs(op.bias) + op.bias_err
        per_out = np.broadcast_to(per_out, (coeffs.shape[0], n_out))
        new = []
        for w, err, mag in zip(op.weights, op.weight_errs, self.magnitudes, strict=True):
            # fl(C @ W) is within gamma(n_out) |C| |W|, and W itself within err of exact.
            per_out = per_out + gamma(n_out) * (mag @ np.abs(w).T) + mag @ err.T
            new.append(coeffs @ w)
        slack = np.einsum("bmn,bn->bm", abs_c, per_out)
        return new, const, slack


def _gamma(k: int) -> float:
    if k * UNIT_ROUNDOFF >= 0.5:
        raise UnsupportedError(f"a linear op of rounding depth {k} is too deep to bound")
    return k * UNIT_ROUNDOFF / (1.0 - k * UNIT_ROUNDOFF)
