"""Optimised ReLU slopes on the graph engine (bounds/graph/alpha.py) against ground truth.

On small random DAGs (residual joins, MaxPool, Max of branches, PRelu/LeakyRelu, Sigmoid
and Tanh beside ReLUs): the optimised bound must lie below the objective at every sampled
point (the lowest re-evaluated exactly, in rationals and 60-digit decimals), never below the
plain CROWN bound, and above it somewhere (else this tests nothing). Any slope in range must
be sound, not only the optimiser's: random slopes are checked the same way. The gradient the
optimiser follows is checked against finite differences of the bound.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from onnx import helper

from tests.onnx_builders import make_model, to_bytes
from tests.unit.test_graph_beta import exact_values
from tests.unit.test_graph_verify import cnn_maxpool, mixed_ops, residual, s_shaped
from verifiers.bounds.graph import GraphNetwork, graph_bounds
from verifiers.bounds.graph.alpha import (
    _gradients,
    free_slopes,
    optimise,
    relu_like,
    sloped,
)
from verifiers.bounds.graph.backsub import back_substitute
from verifiers.bounds.graph.ops.piecewise import clip, prelu, relu
from verifiers.model import load_model


def _w(rng, *shape, scale=1.0):
    return (rng.normal(size=shape) * scale).astype(np.float32)


def deep_residual(rng):
    """Two residual blocks, a Tanh branch and a MaxPool-like Max over the two halves."""
    n = 6
    nodes = [
        helper.make_node("Gemm", ["x", "W0", "b0"], ["h0"], transB=1),
        helper.make_node("Relu", ["h0"], ["a0"]),
        helper.make_node("Gemm", ["a0", "W1", "b1"], ["h1"], transB=1),
        helper.make_node("Relu", ["h1"], ["a1"]),
        helper.make_node("Gemm", ["a1", "W2", "b2"], ["h2"], transB=1),
        helper.make_node("Add", ["h2", "a0"], ["r1"]),
        helper.make_node("Relu", ["r1"], ["a2"]),
        helper.make_node("Gemm", ["a2", "W3", "b3"], ["h3"], transB=1),
        helper.make_node("Tanh", ["h3"], ["t3"]),
        helper.make_node("Add", ["t3", "a2"], ["r2"]),
        helper.make_node("Gemm", ["r2", "P", "z"], ["left"], transB=1),
        helper.make_node("Gemm", ["r2", "Q", "z"], ["right"], transB=1),
        helper.make_node("Max", ["left", "right"], ["m"]),
        helper.make_node("Gemm", ["m", "W4", "b4"], ["y"], transB=1),
    ]
    eye = np.eye(n, dtype=np.float32)
    init = dict(W0=_w(rng, n, 4), b0=_w(rng, n, scale=0.3))
    init |= dict(W1=_w(rng, n, n, scale=0.5), b1=_w(rng, n, scale=0.3))
    init |= dict(W2=_w(rng, n, n, scale=0.5), b2=_w(rng, n, scale=0.3))
    init |= dict(W3=_w(rng, n, n, scale=0.5), b3=_w(rng, n, scale=0.3))
    init |= dict(P=eye[: n // 2], Q=eye[n // 2 :], z=np.zeros(n // 2, dtype=np.float32))
    init |= dict(W4=_w(rng, 2, n // 2), b4=_w(rng, 2))
    return make_model(nodes, input_shape=[1, 4], initializers=init)


BUILDERS = {
    "residual": residual,
    "cnn": cnn_maxpool,
    "mixed": mixed_ops,
    "s_shaped": s_shaped,
    "deep": deep_residual,
}
ROWS = np.array([[1.0, -1.0], [-1.0, 1.0], [0.5, 2.0], [-2.0, -0.25]])


def setup(name: str, seed: int):
    rng = np.random.default_rng(seed)
    net = GraphNetwork.of(load_model(to_bytes(BUILDERS[name](rng))).graph)
    n = net.n_inputs
    lower = rng.uniform(-1, 0.5, size=n).astype(np.float32).astype(np.float64)
    upper = (lower + rng.uniform(0.3, 1.5)).astype(np.float32).astype(np.float64)
    return rng, net, lower, upper


def sampled_points(net, rng, lower, upper) -> np.ndarray:
    """Random points, and points pushed by sign-gradient descent towards each row's min."""
    n = len(lower)
    x = lower + (upper - lower) * rng.random((3000, n))
    pushed = []
    for row in ROWS:
        p = x[:200].copy()
        direction = np.tile(row, (len(p), 1))
        for step in np.geomspace(0.25, 1e-3, 40):
            g = net.gradient(p, direction)
            p = np.clip(p - step * (upper - lower) * np.sign(g), lower, upper)
        pushed.append(p)
    return np.concatenate([x, *pushed])


def assert_below_truth(net, bound, lower, upper, rng) -> None:
    """bound (m,) below rows . y at every sampled point; the lowest points exactly."""
    x = sampled_points(net, rng, lower, upper)
    values = net.bounded(x) @ ROWS.T  # (points, m)
    assert np.all(bound <= values.min(axis=0) + 1e-9), (bound, values.min(axis=0))
    for r in range(len(ROWS)):
        point = x[int(np.argmin(values[:, r]))]
        exact = exact_values(net, point)[net.bound_output]
        objective = sum(Fraction(float(c)) * v for c, v in zip(ROWS[r], exact, strict=True))
        assert Fraction(float(bound[r])) <= objective


@pytest.mark.parametrize("name", list(BUILDERS))
def test_optimised_slopes_enclose_the_objective_exactly(name: str) -> None:
    tighter = 0
    for seed in range(5):
        rng, net, lower, upper = setup(name, seed)
        bounds = graph_bounds(net, lower[None], upper[None], ROWS)
        plain = bounds.objective_lower.copy()
        with np.errstate(all="ignore"):
            best, found = optimise(net, bounds, ROWS)
            again, _ = optimise(net, bounds, ROWS, warm=found)  # warm-started
        assert np.all(best >= plain) and np.all(again >= plain)
        tighter += int(np.any(best > plain + 1e-6))
        assert_below_truth(net, np.maximum(best, again)[0], lower, upper, rng)
    assert tighter > 0, "the optimised slopes never beat plain CROWN"


@pytest.mark.parametrize("name", list(BUILDERS))
def test_any_slope_in_range_is_sound(name: str) -> None:
    """Not only the optimiser's choice: random slopes at the ends and inside the range."""
    for seed in range(4):
        rng, net, lower, upper = setup(name, 50 + seed)
        bounds = graph_bounds(net, lower[None], upper[None], ROWS)
        slopes = free_slopes(net, bounds, len(ROWS))
        for key in slopes.values:
            lo, hi = slopes.low[key], slopes.high[key]
            t = rng.choice([0.0, 1.0, rng.random()], size=slopes.values[key].shape)
            slopes.values[key] = lo + t * (hi - lo)
        with np.errstate(all="ignore"):
            value, _, _ = back_substitute(
                net, sloped(net, bounds, slopes), net.bound_output, ROWS[None]
            )
        assert_below_truth(net, value[0], lower, upper, rng)


def test_relu_like_accepts_only_convex_ops_through_the_origin() -> None:
    assert relu_like(relu(3)) and relu_like(relu(3, 0.1))
    assert not relu_like(relu(3, 2.0))  # concave: its lower line is the chord
    assert relu_like(prelu(np.array([0.1, -0.5]))) and not relu_like(prelu(np.array([1.5])))
    assert not relu_like(clip(0.0, 1.0)) and not relu_like(clip(-1.0, None))


@pytest.mark.parametrize("name", ["residual", "cnn", "deep", "s_shaped"])
def test_slope_gradient_matches_finite_differences(name: str) -> None:
    rng, net, lower, upper = setup(name, 3)
    bounds = graph_bounds(net, lower[None], upper[None], ROWS)
    slopes = free_slopes(net, bounds, len(ROWS))
    assert slopes.values
    for key in slopes.values:  # inside the range, away from the clips
        lo, hi = slopes.low[key], slopes.high[key]
        slopes.values[key] = lo + rng.uniform(0.2, 0.8, slopes.values[key].shape) * (hi - lo)

    def bound() -> np.ndarray:
        record: dict = {}
        trial = sloped(net, bounds, slopes)
        value, _, corner = back_substitute(net, trial, net.bound_output, ROWS[None], record)
        return value, trial, record, corner

    value, trial, record, corner = bound()
    grads = _gradients(net, trial, record, corner, slopes)
    checked = 0
    for key, g in grads.items():
        free = np.argwhere(slopes.high[key][0, 0] > slopes.low[key][0, 0])
        for (j,) in free[:4]:
            for r in range(len(ROWS)):
                h = 1e-6
                slopes.values[key][0, r, j] += h
                up = bound()[0][0, r]
                slopes.values[key][0, r, j] -= h
                assert abs((up - value[0, r]) / h - g[0, r, j]) < 1e-3 * (1 + abs(g[0, r, j]))
                checked += 1
    assert checked > 0
