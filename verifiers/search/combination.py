"""Refuting a region by convex combinations of linear bounds (bounds/combine.py).

Every unsafe conjunction must be refuted on the region: by one half-space whose bound
clears it, or by a convex combination of its half-spaces' linear bounds. The ReLU phases of
a split region join each conjunction as rows that are <= 0 on the region (a lower bound of
-z for a ReLU split active, of z for one split inactive): the LP may weigh them in too, as
the Lagrange multipliers of beta-CROWN do, which is what proves a region once its ReLUs are
all stable. The LP only proposes the weights; the combination is re-evaluated soundly.
"""

from __future__ import annotations

import numpy as np

from verifiers.bounds.combine import box_constants, combination_lower_bound
from verifiers.bounds.linear import LinearBounds, layer_row_bounds
from verifiers.bounds.rounding import proves
from verifiers.model.network import PiecewiseLinearNetwork
from verifiers.search.region import Phase


def refuted_by_combination(
    network: PiecewiseLinearNetwork,
    bounds: LinearBounds,
    i: int,
    box: tuple[np.ndarray, np.ndarray],
    phases: tuple[Phase, ...],
    rhs: np.ndarray,
    groups: np.ndarray,
    n_groups: int,
) -> bool:
    """Box i of the batch `bounds`, with its region's phases; `groups` maps each objective
    row (a.y - b, b in `rhs`) to its conjunction, of `n_groups` (one may have no row)."""
    lower, upper = box
    coeffs = bounds.objective_coeffs[i]
    # Constants of the linear lower bounds of (a.y - b) per row, slack included.
    consts = box_constants(bounds.objective_lower[i], coeffs, lower, upper, rhs)
    clearance = bounds.objective_lower[i] - rhs
    rows_of_phases = None
    for g in range(n_groups):
        rows = groups == g
        if np.any(proves(clearance[rows])):
            continue
        group_coeffs, group_consts = coeffs[rows], consts[rows]
        if phases:
            if rows_of_phases is None:
                rows_of_phases = phase_rows(network, bounds, i, box, phases)
            group_coeffs = np.concatenate([group_coeffs, rows_of_phases[0]])
            group_consts = np.concatenate([group_consts, rows_of_phases[1]])
        if len(group_consts) < 2:
            return False
        if not proves(combination_lower_bound(group_coeffs, group_consts, lower, upper)):
            return False
    return True


def phase_rows(network, bounds: LinearBounds, i: int, box, phases: tuple[Phase, ...]):
    """Linear lower bounds (coeffs, consts) over the box of -z for each ReLU split active
    (z >= 0) and of z for each split inactive: all are <= 0 on the region."""
    lower, upper = box
    coeffs, values = [], []
    for k in sorted({k for k, _, _ in phases}):
        layer_phases = [(j, active) for layer, j, active in phases if layer == k]
        rows = np.zeros((len(layer_phases), network.affine_layers[k].n_out))
        for row, (j, active) in zip(rows, layer_phases, strict=True):
            row[j] = -1.0 if active else 1.0
        value, c = layer_row_bounds(network, bounds, i, box, k, rows)
        coeffs.append(c)
        values.append(value)
    coeffs = np.concatenate(coeffs)
    return coeffs, box_constants(np.concatenate(values), coeffs, lower, upper)
