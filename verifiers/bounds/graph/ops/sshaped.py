"""Sigmoid and Tanh: S-shaped (convex for x <= 0, concave for x >= 0, increasing).

Error model: numpy's tanh (glibc or SIMD, documented within 4 ulp) and sigmoid computed as
0.5 * (1 + tanh(x / 2)) are within F_ERR (= 2**-48, over 30 ulps of 1) of the exact value
in absolute terms, and the derivatives 1/cosh(x)^2 (resp. 0.25/cosh(x/2)^2) within REL
relatively. Every line below is valid for the exact function with those margins:
- convex part (u <= 0): upper = chord; lower = tangent at the midpoint m, its intercept
  lowered by REL*f'(m)*(u - l) (g = f - a*x is convex with |g'(m)| <= REL*a, so
  g(x) >= g(m) - REL*a*|x - m|);
- concave part (l >= 0): the mirror image;
- mixed: the chord where it is valid (lower: f'(l) >= chord slope, upper: f'(u) >= chord
  slope, with room for REL), otherwise DeepPoly's lines of slope min(f'(l), f'(u)) (a lower
  bound of f' on [l, u], f' being unimodal) through (l, f(l)) and (u, f(u)).
Intercepts are then pushed outward by the rounding of their own computation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verifiers.bounds.graph.ops.base import Box, Lines, guard, magnitude, push_down, push_up

F_ERR = 2.0**-48
REL = 2.0**-40
CHORD_ROOM = 2.0**-30


@dataclass(frozen=True)
class SShaped:
    name: str  # "Sigmoid" or "Tanh"

    @property
    def range(self) -> tuple[float, float]:
        return (0.0, 1.0) if self.name == "Sigmoid" else (-1.0, 1.0)

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        if self.name == "Sigmoid":
            return 0.5 * (1.0 + np.tanh(0.5 * x))
        return np.tanh(x)

    def derivative(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            if self.name == "Sigmoid":
                return 0.25 / np.cosh(0.5 * x) ** 2
            return 1.0 / np.cosh(x) ** 2

    def interval(self, boxes: list[Box]) -> Box:
        lo, hi = boxes[0]
        floor, ceiling = self.range
        low = np.maximum(self.evaluate(lo) - F_ERR, floor)
        high = np.minimum(self.evaluate(hi) + F_ERR, ceiling)
        return low, high

    def relax(self, boxes: list[Box]) -> Lines:
        lo, hi = boxes[0]
        with np.errstate(invalid="ignore", over="ignore"):
            low, high = self._lines(lo, hi)
        floor, ceiling = self.interval(boxes)
        lines = Lines(low[0], low[1], high[0], high[1], magnitude(boxes[0]))
        return guard(lines, floor, ceiling)

    def _lines(self, lo: np.ndarray, hi: np.ndarray):
        width = hi - lo
        middle = np.clip(lo + 0.5 * width, lo, hi)
        f_lo, f_hi, f_mid = self.evaluate(lo), self.evaluate(hi), self.evaluate(middle)
        d_lo, d_hi, d_mid = self.derivative(lo), self.derivative(hi), self.derivative(middle)
        chord = np.where(width > 0, (f_hi - f_lo) / np.where(width > 0, width, 1.0), 0.0)
        least = np.minimum(d_lo, d_hi) * (1.0 - REL)
        convex, concave = hi <= 0.0, lo >= 0.0
        # Chord lines (valid as upper on the convex part, as lower on the concave part).
        chord_low = push_down(
            np.minimum(f_lo - F_ERR - chord * lo, f_hi - F_ERR - chord * hi),
            1.0 + np.abs(chord * lo) + np.abs(chord * hi),
        )
        chord_high = push_up(
            np.maximum(f_lo + F_ERR - chord * lo, f_hi + F_ERR - chord * hi),
            1.0 + np.abs(chord * lo) + np.abs(chord * hi),
        )
        # Tangent at the midpoint (lower on the convex part, upper on the concave part).
        slack = REL * d_mid * width
        size = 1.0 + np.abs(d_mid * middle) + slack
        tangent_low = push_down(f_mid - F_ERR - d_mid * middle - slack, size)
        tangent_high = push_up(f_mid + F_ERR - d_mid * middle + slack, size)
        # DeepPoly lines through the endpoints.
        through_lo = push_down(f_lo - F_ERR - least * lo, 1.0 + np.abs(least * lo))
        through_hi = push_up(f_hi + F_ERR - least * hi, 1.0 + np.abs(least * hi))
        chord_is_low = concave | (~convex & (d_lo >= chord * (1.0 + CHORD_ROOM)))
        chord_is_high = convex | (~concave & (d_hi >= chord * (1.0 + CHORD_ROOM)))
        # CROWN's tangent lines through the far endpoint, where tighter than DeepPoly's.
        (pin_low_slope, pin_low), (pin_high_slope, pin_high) = self._pinned(lo, hi)
        middle_x = 0.5 * lo + 0.5 * hi
        use_pin_low = pin_low_slope * middle_x + pin_low > least * middle_x + through_lo
        use_pin_high = pin_high_slope * middle_x + pin_high < least * middle_x + through_hi
        least_low = np.where(use_pin_low, pin_low_slope, least)
        through_lo = np.where(use_pin_low, pin_low, through_lo)
        least_high = np.where(use_pin_high, pin_high_slope, least)
        through_hi = np.where(use_pin_high, pin_high, through_hi)
        low_slope = np.where(convex, d_mid, np.where(chord_is_low, chord, least_low))
        low_icpt = np.where(convex, tangent_low, np.where(chord_is_low, chord_low, through_lo))
        high_slope = np.where(concave, d_mid, np.where(chord_is_high, chord, least_high))
        high_icpt = np.where(concave, tangent_high, np.where(chord_is_high, chord_high, through_hi))
        return (low_slope, low_icpt), (high_slope, high_icpt)

    def _pinned(self, lo: np.ndarray, hi: np.ndarray):
        """Mixed intervals (l < 0 < u): the lower line tangent at some d in [l, 0] (below f on
        the convex part) and at most f(u) at u (so below f on the concave part too, f - line
        being concave there and >= 0 at both ends); d is found by bisection so that the line
        nearly passes through (u, f(u)), but any d is sound: the intercept is the smaller of
        the tangent's (lowered by REL * f'(d) * (u - l)) and f(u) - slope * u. The upper line
        mirrors it, tangent at some d in [0, u] and at least f(l) at l."""
        low_d = self._bisect(np.minimum(lo, 0.0), np.zeros_like(lo), hi, lower=True)
        high_d = self._bisect(np.zeros_like(hi), np.maximum(hi, 0.0), lo, lower=False)
        return self.tangent_lines(lo, hi, low_d, high_d)

    def tangent_lines(self, lo, hi, low_d, high_d):
        """The lines of `_pinned` tangent at given points (any shapes that broadcast): the
        lower one sound for low_d in [l, min(u, 0)] (l < 0), the upper for high_d in
        [max(l, 0), u] (u > 0); on a convex (concave) interval f minus the tangent is
        >= 0 throughout, so taking the smaller (larger) intercept keeps it sound there too.
        The optimised slopes (bounds/graph/alpha.py) move these points."""
        width = np.maximum(hi - lo, 0.0)
        lines = []
        for d, far, sign in ((low_d, hi, -1.0), (high_d, lo, 1.0)):
            slope, f_d, f_far = self.derivative(d), self.evaluate(d), self.evaluate(far)
            slack = REL * slope * width
            tangent = f_d + sign * F_ERR - slope * d + sign * slack
            at_far = f_far + sign * F_ERR - slope * far
            size = 1.0 + np.abs(slope * d) + np.abs(slope * far) + slack
            if sign < 0:
                lines.append((slope, push_down(np.minimum(tangent, at_far), size)))
            else:
                lines.append((slope, push_up(np.maximum(tangent, at_far), size)))
        return lines[0], lines[1]

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """f'' (for the optimiser's gradient only: no bound rests on it)."""
        f, d = self.evaluate(x), self.derivative(x)
        return d * (1.0 - 2.0 * f) if self.name == "Sigmoid" else -2.0 * f * d

    def _bisect(self, a: np.ndarray, b: np.ndarray, far: np.ndarray, lower: bool) -> np.ndarray:
        """A tangent point in [a, b] whose tangent line passes near (far, f(far))."""
        f_far = self.evaluate(far)
        for _ in range(24):
            d = 0.5 * a + 0.5 * b
            line = self.evaluate(d) + self.derivative(d) * (far - d)
            # Either way the tangent's value at `far` rises as d moves right: keep the
            # largest d below f(far) for the lower line, the smallest above for the upper.
            too_high = line > f_far
            b, a = np.where(too_high, d, b), np.where(too_high, a, d)
        return a if lower else b

    def vjp(self, xs: list[np.ndarray], grad: np.ndarray) -> list[np.ndarray]:
        return [grad * self.derivative(xs[0])]
