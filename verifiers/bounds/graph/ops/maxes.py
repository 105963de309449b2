"""MaxPool, Max and Min: each output is the max (min) of a few candidates, which are
entries of the variable inputs or a constant.

Relaxation of y = max_k x_k over boxes [L_k, U_k] (the triangle relaxation of DeepPoly /
CROWN for max): with j the candidate of largest lower bound and U' the largest upper bound
of the others,
- lower: y >= x_j (exact);
- upper: y <= max(x_j, U') (the others never exceed U'), and max(x_j, U') is convex in x_j,
  so below its chord over [L_j, U_j]: y = x_j exactly when U' <= L_j, y <= U' when
  U' >= U_j, else the chord, its intercept pushed up until it is above both endpoints.
Min(x) = -Max(-x): the same on negated boxes. Branch and bound splits the input box here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verifiers.bounds.graph.ops.base import Back, Box, push_up
from verifiers.bounds.rounding import UNIT_ROUNDOFF, gamma


@dataclass(frozen=True, eq=False)
class MaxOf:
    index: tuple[np.ndarray, ...]  # per variable input: (n_out, k_i) flat indices, -1 = none
    sizes: tuple[int, ...]  # per variable input: its flat size
    const: np.ndarray | None  # (n_out,) a constant candidate (already negated for Min)
    negate: bool = False  # Min

    @property
    def multiplicity(self) -> int:
        """How many outputs may read one input entry at most (rounding of scatter sums)."""
        counts = [np.bincount(i[i >= 0].ravel()).max(initial=1) for i in self.index]
        return int(max(counts, default=1))

    def _candidates(self, tensors: list[np.ndarray], missing: float) -> np.ndarray:
        """(batch, n_out, K): the candidates' values (the constant last)."""
        columns = []
        for x, index in zip(tensors, self.index, strict=True):
            gathered = x[:, np.maximum(index, 0)]
            columns.append(np.where(index >= 0, gathered, missing))
        if self.const is not None:
            columns.append(np.broadcast_to(self.const[None, :, None], (*columns[0].shape[:2], 1)))
        return np.concatenate(columns, axis=-1)

    def _sign(self, x: np.ndarray) -> np.ndarray:
        return -x if self.negate else x

    def evaluate(self, *xs: np.ndarray) -> np.ndarray:
        values = self._candidates([self._sign(x) for x in xs], -np.inf)
        return self._sign(values.max(axis=-1))

    def interval(self, boxes: list[Box]) -> Box:
        low, high = self._max_box(boxes)
        return (-high, -low) if self.negate else (low, high)

    def _max_box(self, boxes: list[Box]) -> tuple[np.ndarray, np.ndarray]:
        lows, highs = self._candidate_boxes(boxes)
        return lows.max(axis=-1), highs.max(axis=-1)

    def _candidate_boxes(self, boxes: list[Box]) -> tuple[np.ndarray, np.ndarray]:
        if self.negate:
            boxes = [(-hi, -lo) for lo, hi in boxes]
        lows = self._candidates([lo for lo, _ in boxes], -np.inf)
        highs = self._candidates([hi for _, hi in boxes], -np.inf)
        return lows, highs

    def relax(self, boxes: list[Box]) -> MaxRelaxed:
        lows, highs = self._candidate_boxes(boxes)
        j = np.argmax(lows, axis=-1)[..., None]
        low_j = np.take_along_axis(lows, j, axis=-1)[..., 0]
        high_j = np.take_along_axis(highs, j, axis=-1)[..., 0]
        others = highs.copy()
        np.put_along_axis(others, j, -np.inf, axis=-1)
        rest = others.max(axis=-1)  # U'
        exact, flat = rest <= low_j, rest >= high_j
        width = np.where(exact | flat, 1.0, high_j - low_j)
        chord = np.where(exact, 1.0, np.where(flat, 0.0, (high_j - rest) / width))
        icpt = np.maximum(rest - chord * low_j, high_j - chord * high_j)
        size = np.abs(rest) + np.abs(chord * low_j) + np.abs(high_j) + np.abs(chord * high_j)
        icpt = np.where(exact, 0.0, np.where(flat, rest, push_up(icpt, size)))
        n_var = sum(i.shape[1] for i in self.index)
        is_const = j[..., 0] >= n_var
        # A constant candidate j: y >= c (slope 0) and y <= max of all upper bounds.
        const_value = self.const[None, :] if self.const is not None else 0.0
        low_slope = np.where(is_const, 0.0, 1.0)
        low_icpt = np.where(is_const, const_value, 0.0)
        top = highs.max(axis=-1)
        chord = np.where(is_const, 0.0, chord)
        icpt = np.where(is_const, top, icpt)
        magnitude = np.maximum(np.abs(low_j), np.abs(high_j))
        return MaxRelaxed(self, j[..., 0], low_slope, low_icpt, chord, icpt, magnitude)

    def vjp(self, xs: list[np.ndarray], grad: np.ndarray) -> list[np.ndarray]:
        values = self._candidates([self._sign(x) for x in xs], -np.inf)
        j = np.argmax(values, axis=-1)
        # d(-max(-x))/dx_j = 1 too: the gradient goes to the selected candidate unchanged.
        return [g[:, 0, :] for g in self._scatter(grad[:, None, :], j, list(self.sizes))]

    def _scatter(self, coeffs: np.ndarray, j: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
        """coeffs (batch, m, n_out) on candidate j (batch, n_out) -> per input (batch, m, n_i)."""
        batch, m, n_out = coeffs.shape
        out, start = [], 0
        rows = np.arange(batch)[:, None]
        for index, size in zip(self.index, sizes, strict=True):
            k = index.shape[1]
            mine = (j >= start) & (j < start + k)
            column = np.clip(j - start, 0, k - 1)
            position = index[np.arange(n_out)[None, :], column]
            mine &= position >= 0
            values = np.where(mine[..., None], np.moveaxis(coeffs, 1, 2), 0.0)
            target = np.zeros((batch, size, m))
            np.add.at(target, (np.broadcast_to(rows, j.shape), np.maximum(position, 0)), values)
            out.append(np.moveaxis(target, 2, 1))
            start += k
        return out


@dataclass(frozen=True, eq=False)
class MaxRelaxed:
    op: MaxOf
    j: np.ndarray  # (batch, n_out) the candidate both lines use
    low_slope: np.ndarray
    low_icpt: np.ndarray
    high_slope: np.ndarray
    high_icpt: np.ndarray
    magnitude: np.ndarray  # of candidate j's box

    def back(self, coeffs: np.ndarray) -> Back:
        if self.op.negate:  # C . min(x) = (-C) . max(-x)
            coeffs = -coeffs
        pos, neg = np.maximum(coeffs, 0.0), np.minimum(coeffs, 0.0)
        on_j = pos * self.low_slope[:, None, :] + neg * self.high_slope[:, None, :]
        const = np.einsum("bmn,bn->bm", pos, self.low_icpt) + np.einsum(
            "bmn,bn->bm", neg, self.high_icpt
        )
        parts = self.op._scatter(on_j, self.j, list(self.op.sizes))
        if self.op.negate:
            parts = [-p for p in parts]
        steep = np.maximum(np.abs(self.low_slope), np.abs(self.high_slope)) * self.magnitude
        icpt = np.maximum(np.abs(self.low_icpt), np.abs(self.high_icpt))
        per_unit = (gamma(self.op.multiplicity) + 2 * UNIT_ROUNDOFF) * steep
        per_unit = per_unit + gamma(coeffs.shape[-1]) * icpt
        slack = np.einsum("bmn,bn->bm", np.abs(coeffs), per_unit)
        return parts, const, slack
