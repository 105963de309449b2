"""Hidden-layer pre-activation bounds tightened by one LP per unstable neuron, made sound.

alpha-CROWN's intermediate bounds come from a few gradient steps on the slopes; the best
they can reach is the LP of the triangle relaxation of the layers below. On deep networks
with many inputs (digits 784-256x4) the objective's root bound sits at that LP's limit given
the intermediate bounds, so the lever is the intermediate bounds themselves: here each
unstable neuron of the chosen layers gets min and max of its pre-activation over the
triangle relaxation of the layers below (with bounds already tightened), layer by layer.

HiGHS's optimum is only as exact as its tolerances, so it is never used as a bound: its row
duals are a Lagrangian multiplier vector, and for ANY multipliers of the right signs
    c.v >= sum_r min(y_r L_r, y_r U_r) + sum_i min(r_i lo_i, r_i hi_i),   r = c - A^T y
on every v with L <= A v <= U and lo <= v <= hi (weak duality). That right-hand side is
evaluated with outward rounding (bounds/rounding.py), so the bound holds in real arithmetic
whatever the solver returned; a bad answer only makes it loose.

Not used by the search: on the two digits 784-256x4 eps-0.02 unknowns it took 100-145 s
and moved the root bound by 0.01-0.03 (alpha-CROWN's intermediate bounds already sit near
this LP's limit), so branch and bound gained nothing. benchmarks/deep_gap.py --lp-refine
measures it; it stays as the sound, tested reference for that measurement.
"""

from __future__ import annotations

import time

import numpy as np

from verifiers.bounds.rounding import gamma, widen_down
from verifiers.model.network import PiecewiseLinearNetwork

LayerBounds = list[tuple[np.ndarray, np.ndarray]]


def applies(network: PiecewiseLinearNetwork) -> bool:
    """Plain ReLU networks whose affine layers are exact in float64 (the LP's rows are the
    weights themselves; a composition error or a LeakyRelu would need rows of their own)."""
    return all(r.alpha == 0.0 for r in network.relu_layers) and all(
        a.exact for a in network.affine_layers
    )


def refine(
    network: PiecewiseLinearNetwork,
    lower: np.ndarray,
    upper: np.ndarray,
    bounds: LayerBounds,
    layers: list[int],
    until: float,
) -> LayerBounds:
    """`bounds` (one (n,) pair per affine layer, sound on the box) with the unstable neurons
    of the affine `layers` (each >= 1, increasing) tightened, until time.monotonic() passes
    `until`; the neurons not reached keep their bounds."""
    result = [(lo.copy(), hi.copy()) for lo, hi in bounds]
    for k in layers:
        lo, hi = result[k]
        model = TriangleLp(network, lower, upper, result, k)
        for j in np.flatnonzero((lo < 0.0) & (hi > 0.0)):
            if time.monotonic() >= until:
                return result
            weight, bias = network.affine_layers[k].weight[j], network.affine_layers[k].bias[j]
            low = model.lower_bound(weight, bias)
            high = -model.lower_bound(-weight, -bias)
            lo[j], hi[j] = max(lo[j], low), min(hi[j], high)
    return result


class TriangleLp:
    """The triangle relaxation of the ReLU layers below affine layer k over the input box:
    columns are the inputs, then each ReLU layer's outputs; rows tie each layer to the one
    below (equalities for active ReLUs, the two triangle sides for unstable ones)."""

    def __init__(self, network, lower, upper, bounds: LayerBounds, k: int) -> None:
        import highspy

        col_lo, col_hi, offsets = [lower], [upper], [0, lower.size]
        for i in range(k):
            lo, hi = bounds[i]
            col_lo.append(np.where(lo >= 0.0, lo, 0.0))
            col_hi.append(np.maximum(hi, 0.0))
            offsets.append(offsets[-1] + lo.size)
        self.col_lo, self.col_hi = np.concatenate(col_lo), np.concatenate(col_hi)
        rows_a, rows_l, rows_u = [], [], []
        for i in range(k):
            a, row_l, row_u = _layer_rows(network.affine_layers[i], bounds[i], offsets, i)
            rows_a.append(a)
            rows_l.append(row_l)
            rows_u.append(row_u)
        self.a = np.concatenate(rows_a) if rows_a else np.zeros((0, offsets[-1]))
        self.row_lo, self.row_hi = np.concatenate(rows_l), np.concatenate(rows_u)
        self.prev = slice(offsets[k], offsets[k + 1])
        self.highs = highspy.Highs()
        self.highs.setOptionValue("output_flag", False)
        self.highs.setOptionValue("threads", 1)
        inf = highspy.kHighsInf
        n = self.col_lo.size
        self.highs.addVars(n, self.col_lo, self.col_hi)
        nonzero = self.a != 0.0
        starts = np.concatenate([[0], np.cumsum(nonzero.sum(axis=1))[:-1]]).astype(np.int32)
        self.highs.addRows(
            len(self.a),
            np.where(np.isfinite(self.row_lo), self.row_lo, -inf),
            np.where(np.isfinite(self.row_hi), self.row_hi, inf),
            int(nonzero.sum()),
            starts,
            np.nonzero(nonzero)[1].astype(np.int32),
            self.a[nonzero],
        )
        self.n = n

    def lower_bound(self, weight: np.ndarray, bias: float) -> float:
        """A sound lower bound of weight . (the previous layer's outputs) + bias."""
        import highspy

        cost = np.zeros(self.n)
        cost[self.prev] = weight
        self.highs.changeColsCost(self.n, np.arange(self.n, dtype=np.int32), cost)
        self.highs.run()
        if self.highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return -np.inf
        duals = np.array(self.highs.getSolution().row_dual)
        return certified_lower(
            cost, bias, self.a, self.row_lo, self.row_hi, self.col_lo, self.col_hi, duals
        )


def _layer_rows(layer, bounds, offsets, i):
    """Rows (matrix, lower, upper) linking ReLU layer i's outputs y to its inputs v:
    active: y - W v = b; unstable: y - W v >= b and y - s W v <= s (b - l), s = u / (u - l).
    Inactive ReLUs need no row: their column is fixed at 0."""
    lo, hi = bounds
    active, unstable = lo >= 0.0, (lo < 0.0) & (hi > 0.0)
    n_cols = offsets[-1]
    w, b = layer.weight, layer.bias
    rows, row_l, row_u = [], [], []
    below, own = slice(offsets[i], offsets[i + 1]), offsets[i + 1]
    for j in np.flatnonzero(active):
        row = np.zeros(n_cols)
        row[below], row[own + j] = -w[j], 1.0
        rows.append(row)
        row_l.append(b[j])
        row_u.append(b[j])
    for j in np.flatnonzero(unstable):
        row = np.zeros(n_cols)
        row[below], row[own + j] = -w[j], 1.0
        rows.append(row)
        row_l.append(b[j])
        row_u.append(np.inf)
        # The chord y <= s (z - l), s = u / (u - l), written as t y - W v <= rhs with
        # t ~ 1 / s: W stays exact, and any float t > 0 gives a valid row (see _chord_rhs).
        t = (hi[j] - lo[j]) / hi[j]
        row = np.zeros(n_cols)
        row[below], row[own + j] = -w[j], t
        rows.append(row)
        row_l.append(-np.inf)
        row_u.append(_chord_rhs(t, b[j], lo[j], hi[j]))
    return np.array(rows).reshape(-1, n_cols), np.array(row_l), np.array(row_u)


def _chord_rhs(t: float, b: float, lo: float, hi: float) -> float:
    """A float rhs with t relu(z) - (z - b) <= rhs for every z in [lo, hi], t > 0: the left
    side is convex in z, so its maximum is at an end, max(b - lo, t hi - hi + b); padded for
    the rounding of these few operations."""
    value = b + max(-lo, t * hi - hi)
    return float(value + 8.0 * 2.0**-53 * (abs(b) + abs(lo) + 2.0 * abs(t * hi) + abs(hi)))


def certified_lower(cost, const, a, row_lo, row_hi, col_lo, col_hi, duals) -> float:
    """Weak duality, outward rounded: a lower bound of cost . v + const over
    {row_lo <= a v <= row_hi, col_lo <= v <= col_hi} valid for any `duals` (one per row;
    a multiplier whose side of the row is infinite is dropped)."""
    y = np.where((duals > 0) & np.isfinite(row_lo), duals, 0.0)
    y = y + np.where((duals < 0) & np.isfinite(row_hi), duals, 0.0)
    reduced = cost - a.T @ y
    reduced_err = gamma(len(y) + 1) * (np.abs(cost) + np.abs(a).T @ np.abs(y))
    row_terms = np.where(y > 0, y * np.where(np.isfinite(row_lo), row_lo, 0.0), 0.0)
    row_terms = row_terms + np.where(y < 0, y * np.where(np.isfinite(row_hi), row_hi, 0.0), 0.0)
    col_terms = np.minimum(reduced * col_lo, reduced * col_hi)
    col_err = reduced_err * np.maximum(np.abs(col_lo), np.abs(col_hi))
    terms = np.concatenate([row_terms, col_terms, [const]])
    total = float(np.sum(terms))
    slack = gamma(terms.size) * float(np.sum(np.abs(terms))) + float(np.sum(col_err))
    slack = slack * (1.0 + gamma(col_err.size + 2))
    value = widen_down(np.array(total), np.array(slack))
    return float(value)
