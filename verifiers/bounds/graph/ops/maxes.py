"""MaxPool, Max and Min: each output is the max (min) of a few candidates, which are
entries of the variable inputs or a constant.

Relaxation of y = max_k x_k over boxes [L_k, U_k] (DeepPoly / CROWN for max):
- lower: y >= x_a for any candidate a (exact); a is the one of largest midpoint;
- upper: with b the candidate of largest upper bound and U' the largest upper bound of the
  others, y <= max(x_b, U') (the others never exceed U'), convex in x_b, so below its
  chord over [L_b, U_b]: y = x_b exactly when U' <= L_b, y <= U' when U' >= U_b, else the
  chord, its intercept pushed up until it is above both endpoints.
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

    @property
    def width(self) -> int:
        """K: candidates per output."""
        return sum(i.shape[1] for i in self.index) + (self.const is not None)

    def interval(self, boxes: list[Box], allowed: np.ndarray | None = None) -> Box:
        lows, highs = self._candidate_boxes(boxes, allowed)
        low, high = lows.max(axis=-1), highs.max(axis=-1)
        return (-high, -low) if self.negate else (low, high)

    def _candidate_boxes(
        self, boxes: list[Box], allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Candidate bounds (batch, n_out, K); a case split (`allowed`, same shape: the
        candidates the max is taken over on the region) hides the others."""
        if self.negate:
            boxes = [(-hi, -lo) for lo, hi in boxes]
        lows = self._candidates([lo for lo, _ in boxes], -np.inf)
        highs = self._candidates([hi for _, hi in boxes], -np.inf)
        if allowed is not None:
            lows, highs = np.where(allowed, lows, -np.inf), np.where(allowed, highs, -np.inf)
        return lows, highs

    def relax(self, boxes: list[Box], allowed: np.ndarray | None = None) -> MaxRelaxed:
        """`allowed`: on a region where the max is known to be taken over these candidates
        (branch and bound's case splits), the lines use them only."""
        lows, highs = self._candidate_boxes(boxes, allowed)
        n_var = sum(i.shape[1] for i in self.index)
        # Lower line y >= x_a: any candidate is valid; the one of largest midpoint bounds best.
        with np.errstate(invalid="ignore"):
            a = np.argmax(np.where(lows > -np.inf, 0.5 * lows + 0.5 * highs, -np.inf), axis=-1)
        a = np.where(lows.max(axis=-1) > -np.inf, a, np.argmax(lows, axis=-1))
        const_a = a >= n_var
        const_value = self.const[None, :] if self.const is not None else 0.0
        low_slope = np.where(const_a, 0.0, 1.0)
        low_icpt = np.where(const_a, const_value, 0.0)
        # Upper line: the chord of max(x_b, U') over [L_b, U_b], b of largest upper bound.
        b = np.argmax(highs, axis=-1)[..., None]
        low_b = np.take_along_axis(lows, b, axis=-1)[..., 0]
        high_b = np.take_along_axis(highs, b, axis=-1)[..., 0]
        others = highs.copy()
        np.put_along_axis(others, b, -np.inf, axis=-1)
        rest = others.max(axis=-1)  # U'
        exact, flat = rest <= low_b, rest >= high_b
        width = np.where(exact | flat, 1.0, high_b - low_b)
        with np.errstate(invalid="ignore"):
            chord = np.where(exact, 1.0, np.where(flat, 0.0, (high_b - rest) / width))
            icpt = np.maximum(rest - chord * low_b, high_b - chord * high_b)
            size = np.abs(rest) + np.abs(chord * low_b) + np.abs(high_b) + np.abs(chord * high_b)
        icpt = np.where(exact, 0.0, np.where(flat, rest, push_up(icpt, size)))
        b = b[..., 0]
        const_b = b >= n_var  # the constant has the largest upper bound: y <= it
        chord = np.where(const_b, 0.0, chord)
        icpt = np.where(const_b, high_b, icpt)
        take = lambda arr, j: np.take_along_axis(arr, j[..., None], axis=-1)[..., 0]  # noqa: E731
        magnitude = np.maximum(
            np.maximum(np.abs(take(lows, a)), np.abs(take(highs, a))),
            np.maximum(np.abs(low_b), np.abs(high_b)),
        )
        gap = chord * (0.5 * low_b + 0.5 * high_b) + icpt - 0.5 * (take(lows, a) + take(highs, a))
        return MaxRelaxed(self, a, b, low_slope, low_icpt, chord, icpt, magnitude, gap)

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
    a: np.ndarray  # (batch, n_out) the candidate of the lower line
    b: np.ndarray  # (batch, n_out) the candidate of the upper line
    low_slope: np.ndarray
    low_icpt: np.ndarray
    high_slope: np.ndarray
    high_icpt: np.ndarray
    magnitude: np.ndarray  # of the candidates' boxes
    gap: np.ndarray  # (batch, n_out) how loose the lines are, roughly (a branching score)

    def back(self, coeffs: np.ndarray) -> Back:
        if self.op.negate:  # C . min(x) = (-C) . max(-x)
            coeffs = -coeffs
        pos, neg = np.maximum(coeffs, 0.0), np.minimum(coeffs, 0.0)
        on_a = pos * self.low_slope[:, None, :]
        on_b = neg * self.high_slope[:, None, :]
        const = np.einsum("bmn,bn->bm", pos, self.low_icpt) + np.einsum(
            "bmn,bn->bm", neg, self.high_icpt
        )
        sizes = list(self.op.sizes)
        parts = [
            p + q
            for p, q in zip(
                self.op._scatter(on_a, self.a, sizes),
                self.op._scatter(on_b, self.b, sizes),
                strict=True,
            )
        ]
        if self.op.negate:
            parts = [-p for p in parts]
        steep = np.maximum(np.abs(self.low_slope), np.abs(self.high_slope)) * self.magnitude
        icpt = np.maximum(np.abs(self.low_icpt), np.abs(self.high_icpt))
        # Products round once, the scatter sums over at most 2 x multiplicity terms.
        per_unit = (gamma(2 * self.op.multiplicity) + 2 * UNIT_ROUNDOFF) * steep
        per_unit = per_unit + gamma(coeffs.shape[-1]) * icpt
        slack = np.einsum("bmn,bn->bm", np.abs(coeffs), per_unit)
        return parts, const, slack
