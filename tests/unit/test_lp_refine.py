"""Hidden-layer bounds tightened by per-neuron LPs (bounds/lp_refine.py).

The refined bounds must enclose every sampled pre-activation and the exact extremes of each
neuron (activation-pattern enumeration); the certified LP bound must never exceed the LP's
optimum (scipy's HiGHS, a second call) yet come close to it; and weak duality must hold for
arbitrary multipliers, not just the solver's.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.oracle import exact_maximum, random_instance
from tests.unit.test_search_oracle import to_network
from verifiers.bounds import lp_refine
from verifiers.bounds.linear import linear_bounds


def instance(seed: int):
    weights, biases, lower, upper, rng = random_instance(seed)
    return weights, biases, to_network(weights, biases), lower, upper, rng


def refined(network, lower, upper):
    crown = linear_bounds(network, lower[None], upper[None])
    bounds = [(lo[0], hi[0]) for lo, hi in crown.layers]
    layers = list(range(1, len(bounds)))
    return bounds, lp_refine.refine(network, lower, upper, bounds, layers, time.monotonic() + 60)


@pytest.mark.parametrize("seed", range(8))
def test_refined_bounds_enclose_sampled_and_exact_values(seed: int) -> None:
    weights, biases, network, lower, upper, rng = instance(seed)
    assert lp_refine.applies(network)
    before, after = refined(network, lower, upper)
    x = rng.uniform(lower, upper, size=(20000, lower.size))
    x = np.concatenate([x, np.where(rng.random((2000, lower.size)) < 0.5, lower, upper)])
    values, out = [], x
    for layer in network.layers:
        out = layer.apply(out)
        if hasattr(layer, "weight"):
            values.append(out)
    for (lo, hi), (old_lo, old_hi), v in zip(after, before, values, strict=True):
        assert np.all(v >= lo) and np.all(v <= hi)
        assert np.all(lo >= old_lo) and np.all(hi <= old_hi)  # never looser
    for k in range(1, len(after)):
        for j in range(len(biases[k])):
            unit = np.eye(len(biases[k]))[j]
            top, _ = exact_maximum(weights[: k + 1], biases[: k + 1], unit, lower, upper)
            bottom, _ = exact_maximum(weights[: k + 1], biases[: k + 1], -unit, lower, upper)
            assert after[k][0][j] <= -bottom and after[k][1][j] >= top


@pytest.mark.parametrize("seed", range(8))
def test_certified_bound_is_at_most_the_lp_optimum_and_close_to_it(seed: int) -> None:
    from scipy.optimize import linprog

    _, _, network, lower, upper, rng = instance(seed)
    crown = linear_bounds(network, lower[None], upper[None])
    bounds = [(lo[0], hi[0]) for lo, hi in crown.layers]
    k = len(bounds) - 1
    model = lp_refine.TriangleLp(network, lower, upper, bounds, k)
    weight = rng.normal(size=network.affine_layers[k].n_in)
    certified = model.lower_bound(weight, 0.5)
    cost = np.zeros(model.n)
    cost[model.prev] = weight
    lo_rows, hi_rows = np.isfinite(model.row_lo), np.isfinite(model.row_hi)
    answer = linprog(
        cost,
        A_ub=np.concatenate([model.a[hi_rows], -model.a[lo_rows]]),
        b_ub=np.concatenate([model.row_hi[hi_rows], -model.row_lo[lo_rows]]),
        bounds=list(zip(model.col_lo, model.col_hi, strict=True)),
        method="highs",
    )
    assert answer.status == 0
    assert certified <= answer.fun + 0.5 + 1e-9
    assert certified >= answer.fun + 0.5 - 1e-6 * (1.0 + abs(answer.fun))


@pytest.mark.parametrize("seed", range(8))
def test_weak_duality_holds_for_any_multipliers(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n, m = 5, 6
    a = rng.normal(size=(m, n))
    point = rng.uniform(-1.0, 1.0, size=(4000, n))
    values = point @ a.T
    row_lo = np.where(rng.random(m) < 0.7, np.quantile(values, 0.2, axis=0), -np.inf)
    row_hi = np.where(rng.random(m) < 0.7, np.quantile(values, 0.8, axis=0), np.inf)
    feasible = point[np.all((values >= row_lo) & (values <= row_hi), axis=1)]
    assert len(feasible) > 0
    cost = rng.normal(size=n)
    for _ in range(20):
        duals = rng.normal(size=m) * 3.0
        bound = lp_refine.certified_lower(
            cost, 0.25, a, row_lo, row_hi, -np.ones(n), np.ones(n), duals
        )
        assert bound <= np.min(feasible @ cost + 0.25)


def test_a_multiplier_on_a_missing_side_of_a_row_is_dropped() -> None:
    # min -v over v in [-1, 1] with v >= -1 (no upper side): the minimum is -1. A multiplier
    # -1 would claim v <= (the missing side) and, read as 0, "prove" a minimum of 0.
    a, cost = np.array([[1.0]]), np.array([-1.0])
    for dual in (-1.0, -3.0, 0.5, 2.0):
        bound = lp_refine.certified_lower(
            cost,
            0.0,
            a,
            np.array([-1.0]),
            np.array([np.inf]),
            -np.ones(1),
            np.ones(1),
            np.array([dual]),
        )
        assert bound <= -1.0
