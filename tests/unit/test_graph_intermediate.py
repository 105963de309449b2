"""Optimised intermediate bounds on the graph engine (alpha.intermediate, a Tightener for
graph_bounds) against ground truth.

On small random DAGs (residual Adds, MaxPool, Max of branches, PRelu/LeakyRelu, Sigmoid
and Tanh beside ReLUs): every tensor's bounds must enclose its values at dense samples
(random points and points pushed by gradient search to each entry's extremes), the most
extreme ones re-evaluated exactly in rationals; they are tighter than the plain bounds
somewhere (else this tests nothing). The optimiser's floats are only proposals:
with its steps replaced by random (in-range) slopes, the bounds must stay sound, and with
the sound re-evaluation replaced by trusting the proposal, these tests must fail.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from tests.unit.test_graph_alpha import BUILDERS, ROWS, assert_below_truth, setup
from tests.unit.test_graph_beta import exact_values
from verifiers.bounds.graph import alpha, graph_bounds


def extreme_points(net, rng, lower, upper, name: str) -> np.ndarray:
    """Random points, and per entry of `name` points pushed towards its min and its max."""
    n = len(lower)
    x = lower + (upper - lower) * rng.random((2000, n))
    corners = np.where(rng.random((500, n)) < 0.5, lower, upper)
    size = net.sizes[name]
    pushed = []
    for j in range(size):
        for sign in (1.0, -1.0):
            p = x[:20].copy()
            for step in np.geomspace(0.25, 1e-3, 30):
                g = _entry_gradient(net, p, name, j)
                p = np.clip(p - sign * step * (upper - lower) * np.sign(g), lower, upper)
            pushed.append(p)
    return np.concatenate([x, corners, *pushed])


def _entry_gradient(net, x: np.ndarray, name: str, j: int) -> np.ndarray:
    """d value(name)[j] / dx, by central differences (any op; only a search direction)."""
    h = 1e-6 * np.maximum(1.0, np.abs(x))
    grad = np.zeros_like(x)
    for i in range(x.shape[1]):
        step = np.zeros_like(x)
        step[:, i] = h[:, i]
        grad[:, i] = net.values(x + step)[name][:, j] - net.values(x - step)[name][:, j]
    return grad


def assert_boxes_enclose(net, bounds, lower, upper, rng) -> int:
    """Every refined tensor's box holds the sampled values; the extremes exactly. Returns
    how many entries were checked exactly."""
    checked = 0
    for name in _refined(net):
        low, high = (b[0] for b in bounds.boxes[name])
        x = extreme_points(net, rng, lower, upper, name)
        values = net.values(x)[name]
        assert np.all(low <= values.min(axis=0)) and np.all(values.max(axis=0) <= high), name
        for j in range(values.shape[1]):
            for pick in (np.argmin, np.argmax):
                exact = exact_values(net, x[int(pick(values[:, j]))])[name][j]
                assert Fraction(float(low[j])) <= exact <= Fraction(float(high[j])), name
                checked += 1
    return checked


def _refined(net) -> list[str]:
    """Inputs of non-linear ops that are themselves computed (not the network's input)."""
    from verifiers.bounds.graph.backsub import is_nonlinear

    names = {n for node in net.nodes if is_nonlinear(node.op) for n in node.inputs}
    return sorted(names - {net.input_name})


@pytest.mark.parametrize("name", list(BUILDERS))
def test_optimised_intermediate_bounds_enclose_the_values(name: str) -> None:
    tighter = 0
    for seed in range(4):
        rng, net, lower, upper = setup(name, 100 + seed)
        plain = graph_bounds(net, lower[None], upper[None], ROWS)
        with np.errstate(all="ignore"):
            bounds = graph_bounds(net, lower[None], upper[None], ROWS, tighten=alpha.intermediate())
        for tensor, (low, high) in bounds.boxes.items():
            # Not everywhere: CROWN's bounds need not shrink with tighter boxes upstream.
            plain_width = plain.boxes[tensor][1] - plain.boxes[tensor][0]
            tighter += int(np.any(high - low < plain_width - 1e-9))
        assert assert_boxes_enclose(net, bounds, lower, upper, rng) > 0
        assert_below_truth(net, bounds.objective_lower[0], lower, upper, rng)
    if name in ("residual", "deep"):  # the others have no ReLU upstream of another op
        assert tighter > 0, "the optimised intermediate bounds never beat the plain ones"


@pytest.mark.parametrize("name", ["residual", "deep", "mixed"])
def test_any_proposal_is_re_evaluated_soundly(name: str, monkeypatch) -> None:
    """The optimiser's steps replaced by random slopes in range: still sound."""

    def random_step(slopes, grads, moments, step) -> None:
        for key in slopes.values:
            lo, hi = slopes.low[key], slopes.high[key]
            t = np.random.default_rng(step).random(slopes.values[key].shape)
            slopes.values[key] = lo + t * (hi - lo)

    monkeypatch.setattr(alpha, "_adam", random_step)
    for seed in range(3):
        rng, net, lower, upper = setup(name, 200 + seed)
        with np.errstate(all="ignore"):
            bounds = graph_bounds(net, lower[None], upper[None], ROWS, tighten=alpha.intermediate())
        assert_boxes_enclose(net, bounds, lower, upper, rng)


def test_intersecting_bounds_never_takes_a_nan() -> None:
    """Bounds intersected in (a tightener's, or a region's known ones) only tighten: a NaN
    entry keeps the bound it would replace instead of poisoning it."""
    from verifiers.bounds.graph.backsub import _intersect

    box = (np.array([[-1.0, 0.0, -2.0]]), np.array([[1.0, 3.0, 2.0]]))
    other = (np.array([[np.nan, 0.5, -3.0]]), np.array([[0.5, np.nan, np.inf]]))
    low, high = _intersect(box, other)
    assert low.tolist() == [[-1.0, 0.5, -2.0]]
    assert high.tolist() == [[0.5, 3.0, 2.0]]
