"""A region refuted by a convex combination of linear lower bounds (bounds/combine.py).

When no single unsafe half-space's bound clears its right-hand side, a convex combination
of the half-spaces' bounds may still be positive on the region's box. A region split on
ReLU phases adds one row per phase, a linear lower bound of -z (active) or z (inactive),
both <= 0 on the region: the LP may weigh them in as beta-CROWN's Lagrange multipliers do,
which is what proves a region once its ReLUs are all stable. The LP only proposes the
weights; combine.py re-evaluates them with outward rounding.
"""

from __future__ import annotations

import numpy as np

from verifiers.bounds.combine import box_constants, combination_weights
from verifiers.bounds.linear import LinearBounds, layer_row_bounds
from verifiers.bounds.rounding import gamma, proves
from verifiers.model.network import PiecewiseLinearNetwork
from verifiers.search.region import Region


def phase_rows(
    network: PiecewiseLinearNetwork, region: Region, bounds: LinearBounds, i: int, lower, upper
):
    """Linear lower bounds (coeffs, consts) over the box of -z for each ReLU split active
    (z >= 0) and of z for each split inactive, and their phases in order; None without
    phases."""
    if not region.phases:
        return None
    coeffs, values, order = [], [], []
    for k in sorted({k for k, _, _ in region.phases}):
        phases = [(j, active) for layer, j, active in region.phases if layer == k]
        order += [(k, j, active) for j, active in phases]
        rows = np.zeros((len(phases), network.affine_layers[k].n_out))
        for row, (j, active) in zip(rows, phases, strict=True):
            row[j] = -1.0 if active else 1.0
        value, c = layer_row_bounds(network, bounds, i, (lower, upper), k, rows)
        coeffs.append(c)
        values.append(value)
    coeffs = np.concatenate(coeffs)
    return coeffs, box_constants(np.concatenate(values), coeffs, lower, upper), order


def worth_trying(
    bounds: LinearBounds, i: int, rhs: np.ndarray, groups: np.ndarray, few_unstable: int
) -> bool:
    """Whether the combination LP (about 10 ms, more than bounding the region) may prove
    region i of a ReLU-splitting search whose split multipliers are optimised: not while
    more than `few_unstable` ReLUs are unstable and every open conjunction is a single
    half-space, where the LP could only weigh in the phase rows, as the optimised
    multipliers already do (on the 784-256x4 digits network it was tried on ~1,000 regions
    with over 200 unstable ReLUs in 30 s, and proved none)."""
    proved = proves(bounds.objective_lower[i] - rhs)
    for g in np.unique(groups):
        rows = groups == g
        if rows.sum() > 1 and not proved[rows].any():  # an open conjunction of several rows
            return True
    unstable = sum(int(np.sum((lo[i] < 0.0) & (hi[i] > 0.0))) for lo, hi in bounds.layers[:-1])
    return unstable <= few_unstable


def combination_proofs(
    bounds: LinearBounds,
    i: int,
    lower,
    upper,
    rhs: np.ndarray,
    groups: np.ndarray,
    n_groups: int,
    phases=None,
) -> list[dict] | None:
    """Region i of `bounds` refuted in every unsafe conjunction (conjunction g: the rows
    where `groups` is g, right-hand sides `rhs`): per conjunction, the row or the weights that refute it;
    None when one is not refuted. `phases`: the region's phase_rows."""
    coeffs = bounds.objective_coeffs[i]
    # Constants of the linear lower bounds of (a.y - b) per row, slack included.
    consts = box_constants(bounds.objective_lower[i], coeffs, lower, upper, rhs)
    clearance = bounds.objective_lower[i] - rhs
    proofs = []
    for g in range(n_groups):
        rows = groups == g
        if np.any(proves(clearance[rows])):
            proofs.append({"row": int(np.argmax(clearance[rows]))})
            continue
        group_coeffs, group_consts = coeffs[rows], consts[rows]
        if phases is not None:
            group_coeffs = np.concatenate([group_coeffs, phases[0]])
            group_consts = np.concatenate([group_consts, phases[1]])
        if len(group_consts) < 2 or negative_somewhere(group_coeffs, group_consts, lower, upper):
            return None
        value, mu = combination_weights(group_coeffs, group_consts, lower, upper)
        if not proves(value):
            return None
        n_rows = int(rows.sum())
        proof = {"mu": [float(w) for w in mu[:n_rows]]}
        if phases is not None:
            proof["phase_mu"] = [
                [int(k), int(j), bool(active), float(w)]
                for (k, j, active), w in zip(phases[2], mu[n_rows:], strict=True)
            ]
        proofs.append(proof)
    return proofs


def negative_somewhere(coeffs: np.ndarray, consts: np.ndarray, lower, upper) -> bool:
    """A point of the box where every row's bound coeffs_i . x + consts_i is negative (with
    every rounding to spare): there, every convex combination of them is negative too, so
    no combination can prove the conjunction empty and its LP need not be solved (on ACAS
    Xu property 2, net 4_2, 9,993 of 10,000 such LPs, 10% of the run; none proved). The
    points tried: each row's minimising corner of the box, and its centre."""
    corners = np.where(coeffs >= 0.0, lower[None, :], upper[None, :])
    points = np.concatenate([corners, 0.5 * (lower + upper)[None, :]])
    values = points @ coeffs.T + consts
    rounding = gamma(coeffs.shape[1] + 1) * (np.abs(points) @ np.abs(coeffs).T + np.abs(consts))
    with np.errstate(invalid="ignore"):  # NaN (from overflow) compares False: no point
        return bool(np.any(np.all(values + rounding < 0.0, axis=1)))
