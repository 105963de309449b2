"""Domain cuts: bounds over a box intersected with half-spaces  G x + h <= 0.

A sound lower bound L(x) = c.x + d of an unsafe row a.y - b over a domain P proves the row
where L > 0, so only P' = P n {c.x + d <= 0} is left; bounding again over P' (intermediate
bounds included: every concretisation minimises over P', not the box) gives tighter
relaxations and a new L' valid on P', and so on (search/graph_cuts.py drives it). Here:
minimising a linear form over a box and such cuts.

min_{x in B, G x + h <= 0} c.x  >=  min_{x in B} (c + G^T lam).x + lam.h  for every lam >= 0
(Lagrangian duality; equality at the best lam, the LP's value). The multipliers are only a
proposal (coordinate ascent, each coordinate by the exact line search of the piecewise-
linear concave dual: the fractional knapsack's sorted breakpoints); whatever they are, the
bound is evaluated in float64 with the combination's rounding added to the slack. If the
domain is empty, the dual is unbounded and any value is valid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verifiers.bounds.rounding import UNIT_ROUNDOFF, gamma

Box = tuple[np.ndarray, np.ndarray]

# Coordinate-ascent sweeps over the cuts for the multipliers (a proposal only).
SWEEPS = 2
# Past the last breakpoint the dual still rises: the domain is empty; a multiplier this far
# beyond the breakpoints gives a large (valid) bound.
BEYOND = 1e3


@dataclass(frozen=True)
class Cuts:
    """Per box (batch): the half-spaces  normals . x + offsets <= 0  that bound the domain,
    (batch, k, n) and (batch, k), in exact arithmetic on these float64 numbers."""

    normals: np.ndarray
    offsets: np.ndarray

    @classmethod
    def none(cls, batch: int, n: int) -> Cuts:
        return cls(np.zeros((batch, 0, n)), np.zeros((batch, 0)))

    def add(self, normals: np.ndarray, offsets: np.ndarray) -> Cuts:
        """One more cut per box: (batch, n) and (batch,); a non-finite one becomes
        0.x - 1 <= 0 (no cut: every point meets it)."""
        bad = ~(np.isfinite(offsets) & np.all(np.isfinite(normals), axis=1))
        normals = np.where(bad[:, None], 0.0, normals)
        offsets = np.where(bad, -1.0, offsets)
        return Cuts(
            np.concatenate([self.normals, normals[:, None, :]], axis=1),
            np.concatenate([self.offsets, offsets[:, None]], axis=1),
        )


def cut_offset(const: np.ndarray, slack: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """d such that  c.x + const - slack - rhs <= 0  implies  c.x + d <= 0: the float64
    difference rounded down (two roundings, each within u of a partial sum)."""
    d = (const - slack) - rhs
    return d - 4.0 * UNIT_ROUNDOFF * (np.abs(const) + np.abs(slack) + np.abs(rhs)) - 1e-300


def line_search(a, g, h, lo, hi) -> np.ndarray:
    """lam >= 0 maximising  min_{lo <= x <= hi} (a + lam g).x + lam h  per row: a (batch, m,
    n), g (batch, 1, n), h (batch, 1), lo/hi (batch, 1, n). The dual's slope starts at
    h + g.x(0+) and drops by |g_i| (hi_i - lo_i) at each breakpoint -a_i / g_i > 0."""
    direction = np.where(a != 0, a, g)
    s0 = h + np.sum(g * np.where(direction > 0, lo, hi), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(g != 0, -a / g, np.inf)
    t = np.where(t > 0, t, np.inf)
    order = np.argsort(t, axis=-1)
    ts = np.take_along_axis(t, order, axis=-1)
    drop = np.take_along_axis(np.broadcast_to(np.abs(g) * (hi - lo), a.shape), order, axis=-1)
    reached = s0[..., None] - np.cumsum(np.where(np.isfinite(ts), drop, 0.0), axis=-1) <= 0
    at = np.take_along_axis(ts, np.argmax(reached, axis=-1)[..., None], axis=-1)[..., 0]
    last = np.max(np.where(np.isfinite(ts), ts, 0.0), axis=-1)
    lam = np.where(reached.any(axis=-1), at, 2.0 * last + BEYOND)
    lam = np.where(s0 <= 0, 0.0, lam)
    return np.nan_to_num(lam, nan=0.0, posinf=0.0, neginf=0.0)


def multipliers(c: np.ndarray, cuts: Cuts, box: Box, sweeps: int = SWEEPS) -> np.ndarray:
    """lam (batch, m, k) >= 0 for rows c (batch, m, n): coordinate ascent on the dual."""
    batch, m, _ = c.shape
    k = cuts.normals.shape[1]
    lam = np.zeros((batch, m, k))
    lo, hi = box[0][:, None, :], box[1][:, None, :]
    a = c.copy()
    for _ in range(sweeps):
        for i in range(k - 1, -1, -1):  # the newest cut first: it bites most
            g = cuts.normals[:, i : i + 1, :]
            without = a - lam[:, :, i : i + 1] * g
            lam[:, :, i] = line_search(without, g, cuts.offsets[:, i : i + 1], lo, hi)
            a = without + lam[:, :, i : i + 1] * g
    return lam


def combine(
    c: np.ndarray, const: np.ndarray, slack: np.ndarray, box: Box, cuts: Cuts
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(c', const', slack') with  c.x + const - slack >= c'.x + const' - slack'  for every
    exact x in the box that meets the cuts: c' = c + G^T lam, const' = const + lam.h, and
    slack' adds what rounding may have changed in both (lam >= 0, float64)."""
    lam = np.maximum(np.nan_to_num(multipliers(c, cuts, box), nan=0.0), 0.0)
    k = cuts.normals.shape[1]
    combined = c + np.einsum("bmk,bkn->bmn", lam, cuts.normals)
    error = gamma(k + 1) * (np.abs(c) + np.einsum("bmk,bkn->bmn", lam, np.abs(cuts.normals)))
    shifted = const + np.einsum("bmk,bk->bm", lam, cuts.offsets)
    const_error = gamma(k + 2) * (
        np.abs(const) + np.einsum("bmk,bk->bm", lam, np.abs(cuts.offsets))
    )
    magnitude = np.maximum(np.abs(box[0]), np.abs(box[1]))
    extra = np.einsum("bmn,bn->bm", error, magnitude) + const_error
    return combined, shifted, slack + extra
