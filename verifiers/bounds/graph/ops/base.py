"""What every bound op provides, and the elementwise two-line relaxation most of them use.

A bound op works on flat tensors (batch, n). Its semantics, one method each:
  evaluate(*xs)            float64 forward evaluation
  interval(boxes)          sound bounds of the exact output over input boxes
  relax(boxes)             a Relaxed: linear lower/upper bounds for back-substitution
  vjp(xs, grad)            gradient of grad . output with respect to each input (falsification)
A `Relaxed` turns objective coefficients C (batch, m, n_out) on the op's output into
coefficients on each input, a constant (batch, m) and the rounding slack (batch, m) such
that  C . y >= sum_i C_i . x_i + const - slack  for every exact input in the boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from verifiers.bounds.rounding import UNIT_ROUNDOFF, gamma, widen_down, widen_up

Box = tuple[np.ndarray, np.ndarray]  # (lower, upper), each (batch, n)
Back = tuple[list[np.ndarray], np.ndarray, np.ndarray]  # input coeffs, const, slack


class Relaxed(Protocol):
    def back(self, coeffs: np.ndarray) -> Back: ...


class BoundOp(Protocol):
    def evaluate(self, *xs: np.ndarray) -> np.ndarray: ...

    def interval(self, boxes: list[Box]) -> Box: ...

    def relax(self, boxes: list[Box]) -> Relaxed: ...

    def vjp(self, xs: list[np.ndarray], grad: np.ndarray) -> list[np.ndarray]: ...


class NoRule(Exception):
    """An analysis an op does not support (the message names the op and the analysis)."""


def magnitude(box: Box) -> np.ndarray:
    return np.maximum(np.abs(box[0]), np.abs(box[1]))


def push_down(value: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """value minus a bound on the rounding of a few operations on terms of size `terms`;
    not finite becomes -inf (no bound: it fails closed)."""
    return widen_down(value, 8.0 * UNIT_ROUNDOFF * terms)


def push_up(value: np.ndarray, terms: np.ndarray) -> np.ndarray:
    return widen_up(value, 8.0 * UNIT_ROUNDOFF * terms)


@dataclass(frozen=True)
class Lines:
    """Elementwise  lower_slope*x + lower_icpt <= f(x) <= upper_slope*x + upper_icpt  on the
    input box (exact arithmetic with these float64 numbers); all (batch, n)."""

    lower_slope: np.ndarray
    lower_icpt: np.ndarray
    upper_slope: np.ndarray
    upper_icpt: np.ndarray
    magnitude: np.ndarray  # of the input box

    def back(self, coeffs: np.ndarray) -> Back:
        pos, neg = np.maximum(coeffs, 0.0), np.minimum(coeffs, 0.0)
        # Where one of pos and neg is zero the sum below is exact; each product rounds once.
        new = pos * self.lower_slope[:, None, :] + neg * self.upper_slope[:, None, :]
        const = np.einsum("bmn,bn->bm", pos, self.lower_icpt) + np.einsum(
            "bmn,bn->bm", neg, self.upper_icpt
        )
        steep = np.maximum(np.abs(self.lower_slope), np.abs(self.upper_slope)) * self.magnitude
        icpt = np.maximum(np.abs(self.lower_icpt), np.abs(self.upper_icpt))
        per_unit = 2.0 * UNIT_ROUNDOFF * steep + gamma(coeffs.shape[-1]) * icpt
        slack = np.einsum("bmn,bn->bm", np.abs(coeffs), per_unit)
        return [new], const, slack


def guard(lines: Lines, floor: np.ndarray, ceiling: np.ndarray) -> Lines:
    """Lines with every non-finite entry replaced by the constant lines floor / ceiling
    (valid bounds of f on the box): a NaN never reaches a bound."""
    bad = ~(
        np.isfinite(lines.lower_slope)
        & np.isfinite(lines.lower_icpt)
        & np.isfinite(lines.upper_slope)
        & np.isfinite(lines.upper_icpt)
    )
    if not bad.any():
        return lines
    return Lines(
        np.where(bad, 0.0, lines.lower_slope),
        np.where(bad, floor, lines.lower_icpt),
        np.where(bad, 0.0, lines.upper_slope),
        np.where(bad, ceiling, lines.upper_icpt),
        np.where(bad, 0.0, lines.magnitude),
    )
