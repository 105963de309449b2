"""Elementwise piecewise-linear ops: Relu, LeakyRelu (any slope), PRelu, Clip.

Each is a list of breakpoints and, per piece, an exact line (slope, intercept): the op's
real semantics is that line on its piece. Bounds over [l, u]:
- interval: f - s*x is piecewise linear, so its extremes over [l, u] are at l, u or a
  breakpoint inside; with s = 0 that is the interval bound.
- relaxation: if no breakpoint lies strictly inside, f is its piece's line (exact). Otherwise
  each candidate slope s (the chord, and every piece's slope) gets the tightest intercepts
  min/max over those points of f(p) - s*p, pushed outward by their rounding; the lower line
  keeps the candidate of largest area under it (for ReLU: CROWN's adaptive 0/1 slope), the
  upper line the candidate of least area (for ReLU: the chord).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verifiers.bounds.graph.ops.base import Box, Lines, guard, magnitude, push_down, push_up
from verifiers.bounds.rounding import UNIT_ROUNDOFF


@dataclass(frozen=True, eq=False)
class PiecewiseLinear:
    breakpoints: np.ndarray  # (K,) increasing
    slopes: np.ndarray  # (K + 1, n) or (K + 1, 1)
    icpts: np.ndarray  # (K + 1, n) or (K + 1, 1)

    def __post_init__(self) -> None:
        # evaluate, piece and the relaxations read the pieces in this order: unsorted
        # breakpoints would bound some other function.
        assert np.all(np.diff(self.breakpoints) >= 0), "breakpoints must be increasing"

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        y = self.slopes[0] * x + self.icpts[0]
        for k, point in enumerate(self.breakpoints):
            y = np.where(x > point, self.slopes[k + 1] * x + self.icpts[k + 1], y)
        return y

    def _points(self, box: Box) -> np.ndarray:
        """(batch, n, K + 2): l, u and the breakpoints clipped into [l, u]."""
        lo, hi = box
        inner = np.clip(self.breakpoints[None, None, :], lo[..., None], hi[..., None])
        return np.concatenate([lo[..., None], hi[..., None], inner], axis=-1)

    def interval(self, boxes: list[Box]) -> Box:
        values = self._eval_points(self._points(boxes[0]))
        low, high = values.min(axis=-1), values.max(axis=-1)
        return push_down(low, np.abs(low)), push_up(high, np.abs(high))

    def _eval_points(self, points: np.ndarray) -> np.ndarray:
        moved = np.moveaxis(points, -1, 0)
        return np.moveaxis(np.stack([self.evaluate(p) for p in moved]), 0, -1)

    def piece(self, x: np.ndarray) -> np.ndarray:
        """The index of the piece holding x (the left one at a breakpoint)."""
        return (x[..., None] > self.breakpoints).sum(axis=-1)

    def unstable(self, box: Box) -> np.ndarray:
        lo, hi = box
        inside = (lo[..., None] < self.breakpoints) & (self.breakpoints < hi[..., None])
        return inside.any(axis=-1)

    def _piece_lines(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        index = self.piece(x)
        slopes = np.broadcast_to(self.slopes, (len(self.slopes), x.shape[-1]))
        icpts = np.broadcast_to(self.icpts, (len(self.icpts), x.shape[-1]))
        columns = np.arange(x.shape[-1])
        return slopes[index, columns], icpts[index, columns]

    def relax(self, boxes: list[Box]) -> Lines:
        lo, hi = boxes[0]
        slope, icpt = self._piece_lines(0.5 * lo + 0.5 * hi)
        unstable = self.unstable(boxes[0])
        lines = Lines(slope, icpt, slope, icpt, magnitude(boxes[0]))
        if not unstable.any():
            return lines
        low, high = self._lines_over(boxes[0])
        lines = Lines(
            np.where(unstable, low[0], slope),
            np.where(unstable, low[1], icpt),
            np.where(unstable, high[0], slope),
            np.where(unstable, high[1], icpt),
            lines.magnitude,
        )
        floor, ceiling = self.interval(boxes)
        return guard(lines, floor, ceiling)

    def _lines_over(self, box: Box):
        lo, hi = box
        points = self._points(box)  # (b, n, P)
        values = self._eval_points(points)
        width = hi - lo
        chord = np.where(
            width > 0, (values[..., 1] - values[..., 0]) / np.where(width > 0, width, 1), 0
        )
        pieces = np.broadcast_to(self.slopes.T, (*lo.shape, len(self.slopes)))
        slopes = np.concatenate([chord[..., None], pieces], axis=-1)  # (b, n, S)
        terms = values[..., None, :] - slopes[..., None] * points[..., None, :]  # (b, n, S, P)
        size = np.abs(values[..., None, :]) + np.abs(slopes[..., None] * points[..., None, :])
        size = size.max(axis=-1)
        low_icpt = push_down(terms.min(axis=-1), size)
        high_icpt = push_up(terms.max(axis=-1), size)
        middle = (0.5 * lo + 0.5 * hi)[..., None]
        best_low = np.argmax(slopes * middle + low_icpt, axis=-1)[..., None]
        best_high = np.argmin(slopes * middle + high_icpt, axis=-1)[..., None]
        pick = lambda a, i: np.take_along_axis(a, i, axis=-1)[..., 0]  # noqa: E731
        return (
            (pick(slopes, best_low), pick(low_icpt, best_low)),
            (pick(slopes, best_high), pick(high_icpt, best_high)),
        )

    def vjp(self, xs: list[np.ndarray], grad: np.ndarray) -> list[np.ndarray]:
        slope, _ = self._piece_lines(xs[0])
        return [grad * slope]


def relu(n: int, alpha: float = 0.0) -> PiecewiseLinear:
    return PiecewiseLinear(np.array([0.0]), np.array([[alpha], [1.0]]), np.zeros((2, 1)))


def prelu(slope: np.ndarray) -> PiecewiseLinear:
    """slope: (n,) per element."""
    return PiecewiseLinear(
        np.array([0.0]), np.stack([slope, np.ones_like(slope)]), np.zeros((2, 1))
    )


def clip(low: float | None, high: float | None) -> PiecewiseLinear:
    """min(max(x, low), high), in ONNX's order: with low > high that is high everywhere (a
    constant, no breakpoint), not a function with breakpoints out of order."""
    if low is not None and high is not None and low > high:
        return PiecewiseLinear(np.zeros(0), np.zeros((1, 1)), np.full((1, 1), float(high)))
    points, slopes, icpts = [], [1.0], [0.0]
    if low is not None:
        points, slopes, icpts = [low], [0.0, 1.0], [low, 0.0]
    if high is not None:
        points, slopes, icpts = [*points, high], [*slopes, 0.0], [*icpts, high]
    return PiecewiseLinear(
        np.array(points, dtype=np.float64),
        np.array(slopes)[:, None],
        np.array(icpts)[:, None],
    )


# Products by a slope in evaluate round once: bounds above cover them (push_* terms).
_ = UNIT_ROUNDOFF
