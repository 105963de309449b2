"""Domain cuts (bounds/graph/cuts.py, search/graph_cuts.py) against ground truth.

The dual bound over a box and half-spaces must lie below the LP's exact minimum (HiGHS)
and below every sampled point of the domain, and equal the LP for one cut (the line search
is exact there); bounds of every tensor over a cut box must enclose the values at sampled
points that meet the cuts (the lowest exactly, in rationals); an unsafe row that a sampled
point meets must never be proved by cuts.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from scipy.optimize import linprog

from tests.unit.test_graph_alpha import BUILDERS, ROWS, sampled_points, setup
from tests.unit.test_graph_beta import exact_values, wide_instance
from tests.unit.test_graph_verify import at_least
from verifiers.bounds.graph import graph_bounds
from verifiers.bounds.graph.backsub import _read_off
from verifiers.bounds.graph.cuts import Cuts, combine, cut_offset
from verifiers.components import OnnxComponent
from verifiers.options import Options
from verifiers.result import Verdict
from verifiers.search.graph_cuts import bounding_box, prove_by_cuts
from verifiers.verify import verify


def dual_bound(c: np.ndarray, lower, upper, normals, offsets) -> np.ndarray:
    cuts = Cuts(normals[None], offsets[None])
    zeros = np.zeros((1, len(c)))
    combined, const, slack = combine(c[None], zeros, zeros, (lower[None], upper[None]), cuts)
    return _read_off(combined, const, slack, (lower[None], upper[None]))[0][0]


def random_cuts(rng, lower, upper, k: int):
    """k half-spaces each through a random point of the box, keeping the centre inside."""
    n = len(lower)
    centre = 0.5 * (lower + upper)
    normals = rng.normal(size=(k, n))
    points = lower + (upper - lower) * rng.random((k, n))
    offsets = -np.einsum("kn,kn->k", normals, points)
    flip = normals @ centre + offsets > 0
    return np.where(flip[:, None], -normals, normals), np.where(flip, -offsets, offsets)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_dual_bound_is_below_the_lp_and_the_samples(k: int) -> None:
    rng = np.random.default_rng(k)
    for _ in range(20):
        n = int(rng.integers(2, 12))
        lower = rng.uniform(-2, 1, size=n)
        upper = lower + rng.uniform(0.1, 2, size=n)
        normals, offsets = random_cuts(rng, lower, upper, k)
        c = rng.normal(size=(6, n))
        bound = dual_bound(c, lower, upper, normals, offsets)
        x = lower + (upper - lower) * rng.random((20000, n))
        inside = x[np.all(x @ normals.T + offsets <= 0, axis=1)]
        for r in range(len(c)):
            lp = linprog(
                c[r], A_ub=normals, b_ub=-offsets, bounds=list(zip(lower, upper, strict=True))
            )
            assert lp.status == 0
            assert bound[r] <= lp.fun + 1e-12 * (1 + abs(lp.fun))
            if k == 1:  # one cut: the line search finds the exact dual optimum
                assert bound[r] >= lp.fun - 1e-9 * (1 + abs(lp.fun))
            if len(inside):
                assert bound[r] <= (inside @ c[r]).min()


def test_an_empty_domain_crosses_its_bounding_box() -> None:
    lower, upper = np.zeros((1, 3)), np.ones((1, 3))
    # x0 <= 0.2 and x0 >= 0.6: no point.
    cuts = Cuts(np.array([[[1.0, 0, 0], [-1.0, 0, 0]]]), np.array([[-0.2, 0.6]]))
    low, high = bounding_box(lower, upper, cuts)
    assert low[0, 0] > high[0, 0]
    # And a consistent pair shrinks the box to it.
    cuts = Cuts(np.array([[[1.0, 0, 0], [-1.0, 0, 0]]]), np.array([[-0.6, 0.2]]))
    low, high = bounding_box(lower, upper, cuts)
    assert 0.2 - 1e-12 <= low[0, 0] <= 0.2 and 0.6 <= high[0, 0] <= 0.6 + 1e-12
    assert np.all(low[0, 1:] == 0.0) and np.all(high[0, 1:] == 1.0)


def test_cut_offsets_round_down() -> None:
    rng = np.random.default_rng(0)
    const, slack, rhs = rng.normal(size=1000) * 1e3, rng.random(1000), rng.normal(size=1000)
    d = cut_offset(const, slack, rhs)
    for i in range(1000):
        exact = Fraction(float(const[i])) - Fraction(float(slack[i])) - Fraction(float(rhs[i]))
        assert Fraction(float(d[i])) <= exact


def cut_from_bound(net, lower, upper, rows, rhs):
    """The domain's first cut as the search makes it: row r's form c.x + offset - rhs."""
    bounds = graph_bounds(net, lower[None], upper[None], rows)
    normals = bounds.objective_coeffs[0]
    offsets = cut_offset(bounds.objective_offset[0], 0.0, rhs)
    return bounds, normals, offsets


@pytest.mark.parametrize("name", list(BUILDERS))
def test_bounds_over_cuts_enclose_the_domain(name: str) -> None:
    """Cut the box with every row's own bound at its sampled median (half the samples
    remain per row), bound again over box n cuts: every tensor's box and every row's bound
    must hold at the sampled points inside; the lowest exactly."""
    tighter = 0
    for seed in range(4):
        rng, net, lower, upper = setup(name, seed)
        x = sampled_points(net, rng, lower, upper)
        values = net.values(x)
        rows_y = values[net.bound_output] @ ROWS.T
        rhs = np.median(rows_y, axis=0)
        plain, normals, offsets = cut_from_bound(net, lower, upper, ROWS, rhs)
        # Every row's form lies below the row: a sampled point outside the cut is safe.
        forms = x @ normals.T + plain.objective_offset[0]
        assert np.all(forms <= rows_y + 1e-9)
        cuts = Cuts(normals[None], offsets[None])
        low, high = bounding_box(lower[None], upper[None], cuts)
        cut = graph_bounds(net, low, high, ROWS, cuts=cuts)
        inside = np.all(x @ normals.T + offsets <= 0, axis=1)
        if not inside.any():
            continue
        for tensor, (lo, hi) in cut.boxes.items():
            v = values[tensor][inside] if tensor in values else x[inside]
            assert np.all(lo[0] <= v.min(axis=0) + 1e-9), tensor
            assert np.all(hi[0] >= v.max(axis=0) - 1e-9), tensor
        bound = cut.objective_lower[0]
        assert np.all(bound <= rows_y[inside].min(axis=0) + 1e-9)
        for r in range(len(ROWS)):
            point = x[inside][int(np.argmin(rows_y[inside, r]))]
            exact = exact_values(net, point)[net.bound_output]
            objective = sum(Fraction(float(c)) * v for c, v in zip(ROWS[r], exact, strict=True))
            assert Fraction(float(bound[r])) <= objective
        tighter += int(np.any(bound > plain.objective_lower[0] + 1e-6))
    assert tighter > 0  # else this tests nothing


@pytest.mark.parametrize("name", list(BUILDERS))
def test_cuts_never_prove_a_row_a_point_meets(name: str) -> None:
    """rhs just above a sampled minimum: that point meets the unsafe half-space, so the
    cuts must not prove it; just below the sampled minimum they may (and do somewhere)."""
    proved = 0
    for seed in range(6):
        rng, net, lower, upper = setup(name, seed)
        x = sampled_points(net, rng, lower, upper)
        rows_y = net.values(x)[net.bound_output] @ ROWS.T
        for r in range(len(ROWS)):
            low = rows_y[:, r].min()
            spread = max(np.ptp(rows_y[:, r]), 1e-3)
            row, strict, groups = ROWS[r : r + 1], np.array([False]), np.array([0])
            met = np.array([low + 1e-6 * spread])
            assert not prove_by_cuts(net, (lower, upper), row, met, strict, groups)
            near = np.array([low - 0.05 * spread])
            proved += prove_by_cuts(net, (lower, upper), row, near, strict, groups)
    assert proved > 0


@pytest.mark.parametrize("seed", range(3))
def test_verify_proves_with_cuts_only_what_sampling_cannot_refute(seed: int) -> None:
    """A 24-input Sigmoid MLP, y0 - y1 >= t: just above the attacked maximum the root's
    cuts prove it (a `domain-cuts` leaf); just below it a counterexample is found. Without
    optimised intermediate bounds (where certificates are re-checked) nothing is cut."""
    data, _, lower, upper, (low, high) = wide_instance(seed, "Sigmoid")
    spread = max(high - low, 1e-3)
    options = Options(timeout_s=30)
    above = verify(OnnxComponent(data), at_least(high + 0.005 * spread, lower, upper), options)
    assert above.verdict is Verdict.HOLDS, above.reason
    assert above.certificate["leaves"] == {"domain-cuts": 1}
    below = verify(OnnxComponent(data), at_least(high - 0.001 * spread, lower, upper), options)
    assert below.verdict is Verdict.VIOLATED
    # Without the cuts the search needs ~20 s to prove it: 2 s show the cuts are not used.
    checked = Options(timeout_s=2, optimise_intermediate=False)
    plain = verify(OnnxComponent(data), at_least(high + 0.005 * spread, lower, upper), checked)
    assert plain.certificate is None or "domain-cuts" not in plain.certificate["leaves"]


def test_a_non_finite_cut_cuts_nothing() -> None:
    cuts = Cuts.none(2, 2).add(np.array([[np.inf, 0.0], [1.0, 0.0]]), np.array([0.0, -np.inf]))
    assert np.all(cuts.normals == 0.0) and np.all(cuts.offsets == -1.0)
    low, high = bounding_box(np.zeros((2, 2)), np.ones((2, 2)), cuts)
    assert np.all(low == 0.0) and np.all(high == 1.0)
