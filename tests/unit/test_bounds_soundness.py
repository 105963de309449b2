"""Bounds enclose the true function: sampled values never fall outside them."""

from __future__ import annotations

import numpy as np
import pytest

from tests.oracle import random_network
from tests.unit.test_search_oracle import to_network
from verifiers.bounds import linear
from verifiers.bounds.alpha import SlopeSearch
from verifiers.bounds.interval import interval_bounds
from verifiers.bounds.linear import linear_bounds, relu_relaxation
from verifiers.model.network import AffineLayer, PiecewiseLinearNetwork, ReluLayer


def sample_boxes(rng, n_inputs: int, count: int, width: float):
    lower = rng.uniform(-2.0, 2.0, size=(count, n_inputs))
    return lower, lower + rng.uniform(0.0, width, size=(count, n_inputs))


def samples_in(rng, lower, upper, per_box: int) -> np.ndarray:
    u = rng.random((lower.shape[0], per_box, lower.shape[1]))
    points = lower[:, None, :] + u * (upper - lower)[:, None, :]
    # Include the corners' extremes: they are where linear bounds are tight.
    return np.concatenate([points, lower[:, None, :], upper[:, None, :]], axis=1)


@pytest.mark.parametrize("alpha", [0.0, 0.1])
@pytest.mark.parametrize("sizes", [[3, 8, 8, 2], [5, 20, 20, 20, 4], [2, 1, 1, 1]])
def test_interval_and_linear_bounds_enclose_samples(sizes, alpha) -> None:
    rng = np.random.default_rng(sum(sizes))
    weights, biases = random_network(rng, sizes)
    layers = list(to_network(weights, biases).layers)
    layers = [
        ReluLayer(layer.size, alpha) if isinstance(layer, ReluLayer) else layer for layer in layers
    ]
    network = PiecewiseLinearNetwork(tuple(layers))
    lower, upper = sample_boxes(rng, sizes[0], 32, 0.5)
    objective = rng.normal(size=(3, sizes[-1]))
    points = samples_in(rng, lower, upper, 200)
    values = network.pre_activations(points.reshape(-1, sizes[0]))
    linear = linear_bounds(network, lower, upper, objective)
    interval = interval_bounds(network, lower, upper)
    for (lo, hi), (ilo, ihi), v in zip(linear.layers, interval, values, strict=True):
        v = v.reshape(lower.shape[0], points.shape[1], -1)
        assert np.all(v >= lo[:, None, :]) and np.all(v <= hi[:, None, :])
        assert np.all(v >= ilo[:, None, :]) and np.all(v <= ihi[:, None, :])
        assert np.all(lo >= ilo - 1e-9)  # the intersection is never looser than intervals
    outputs = values[-1].reshape(lower.shape[0], points.shape[1], -1)
    objective_values = outputs @ objective.T
    assert np.all(objective_values.min(axis=1) >= linear.objective_lower)


def test_relu_relaxation_lines_enclose_relu() -> None:
    rng = np.random.default_rng(0)
    lower = rng.uniform(-3, 0, size=(1, 1000))
    upper = rng.uniform(0, 3, size=(1, 1000))
    for alpha in (0.0, 0.2):
        low_slope, up_slope, intercept = relu_relaxation(ReluLayer(1000, alpha), lower, upper)
        x = lower + rng.random((50, 1000)) * (upper - lower)
        x = np.concatenate([x, lower, upper])
        y = np.where(x >= 0, x, alpha * x)
        assert np.all(y >= low_slope * x - 1e-12)
        assert np.all(y <= up_slope * x + intercept)


def test_composition_error_widens_bounds() -> None:
    """A layer's declared rounding error must show up in the bounds (they widen by it)."""
    w, b = np.array([[1.0, -2.0]]), np.array([0.5])
    exact = AffineLayer(w, b, np.zeros_like(w), np.zeros_like(b))
    rounded = AffineLayer(w, b, np.full_like(w, 1e-3), np.full_like(b, 1e-3))
    lower, upper = np.array([[0.0, 0.0]]), np.array([[1.0, 1.0]])
    lo_exact = linear_bounds(PiecewiseLinearNetwork((exact,)), lower, upper).layers[0][0]
    lo_rounded = linear_bounds(PiecewiseLinearNetwork((rounded,)), lower, upper).layers[0][0]
    assert lo_rounded[0, 0] <= lo_exact[0, 0] - 2e-3


@pytest.mark.parametrize("sizes", [[3, 8, 8, 2], [5, 20, 20, 20, 4]])
def test_bounds_from_an_enclosing_box_stay_sound_and_only_tighten(sizes) -> None:
    """Branch and bound hands a region its parent's bounds (`known`): the region's own bounds
    must still enclose every sampled value, and be no weaker than without the hint: every ReLU
    stable without it is stable with it, and the objective bound is at least as high. (A
    stable ReLU's numbers may stay looser: its relaxation is exact whatever they are.)"""
    rng = np.random.default_rng(len(sizes))
    weights, biases = random_network(rng, sizes)
    network = to_network(weights, biases)
    parent_lower, parent_upper = sample_boxes(rng, sizes[0], 16, 0.8)
    objective = rng.normal(size=(2, sizes[-1]))
    parent = linear_bounds(network, parent_lower, parent_upper, objective)
    # Children: random sub-boxes of each parent box.
    cut = rng.uniform(0.0, 1.0, size=parent_lower.shape)
    lower = parent_lower + 0.5 * cut * (parent_upper - parent_lower)
    upper = lower + 0.5 * (parent_upper - parent_lower)
    hinted = linear_bounds(network, lower, upper, objective, parent.layers)
    plain = linear_bounds(network, lower, upper, objective)
    points = samples_in(rng, lower, upper, 200)
    values = network.pre_activations(points.reshape(-1, sizes[0]))
    for (lo, hi), (plo, phi), v in zip(hinted.layers, plain.layers, values, strict=True):
        v = v.reshape(lower.shape[0], points.shape[1], -1)
        assert np.all(v >= lo[:, None, :]) and np.all(v <= hi[:, None, :])
        stable, plain_stable = (lo >= 0) | (hi <= 0), (plo >= 0) | (phi <= 0)
        assert np.all(stable | ~plain_stable)
    outputs = values[-1].reshape(lower.shape[0], points.shape[1], -1)
    assert np.all((outputs @ objective.T).min(axis=1) >= hinted.objective_lower)
    assert np.all(hinted.objective_lower >= plain.objective_lower - 1e-9)


def split_signs(rng, bounds) -> tuple[list, list]:
    """Random ReLU splits per box: the known bounds with each split applied, and the signs
    (-1 active, +1 inactive) beta-CROWN's multipliers need."""
    known, signs = [], []
    for lo, hi in bounds.layers[:-1]:
        unstable = (lo < 0.0) & (hi > 0.0)
        sign = np.where(unstable & (rng.random(lo.shape) < 0.3), rng.choice([-1.0, 1.0]), 0.0)
        known.append((np.where(sign < 0, 0.0, lo), np.where(sign > 0, 0.0, hi)))
        signs.append(sign)
    return [*known, bounds.layers[-1]], signs


def bound_arrays(bounds) -> list[np.ndarray]:
    return [
        *[side for layer in bounds.layers for side in layer],
        bounds.objective_lower,
        bounds.objective_coeffs,
        bounds.objective_minimizer,
        *bounds.relu_coeffs,
        *(bounds.slopes or []),
        *(bounds.betas or []),
    ]


@pytest.mark.parametrize("mode", ["crown", "optimised", "split"])
def test_a_batch_bounded_in_chunks_is_bounded_as_in_one_pass(monkeypatch, mode) -> None:
    """Back-substitution runs over a few boxes at a time (linear.CHUNK_ELEMENTS): every array
    of the bounds must be what one pass over the whole batch gives (up to the order of
    rounding), the ReLU layers' coefficients included, and enclose sampled values."""
    rng = np.random.default_rng(11)
    sizes = [4, 12, 12, 12, 3]
    network = to_network(*random_network(rng, sizes))
    lower, upper = sample_boxes(rng, sizes[0], 11, 0.6)
    objective = rng.normal(size=(2, sizes[-1]))
    known, search = None, None
    if mode == "optimised":
        search = SlopeSearch(5, intermediate=True, intermediate_iterations=3)
    if mode == "split":
        known, signs = split_signs(rng, linear_bounds(network, lower, upper))
        search = SlopeSearch(5, signs=signs)

    def bounds(chunk_elements: int):
        monkeypatch.setattr(linear, "CHUNK_ELEMENTS", chunk_elements)
        return linear_bounds(network, lower, upper, objective, known, search, refine=not known)

    whole = bounds(2**62)
    # One box per chunk for the layers' bounds, two for the objective's (the last alone).
    chunked = bounds(2 * sizes[1] * objective.shape[0])
    for one_pass, in_chunks in zip(bound_arrays(whole), bound_arrays(chunked), strict=True):
        np.testing.assert_allclose(in_chunks, one_pass, rtol=1e-12, atol=1e-12)
    if mode != "split":  # (a split region is a part of its box: test_alpha_bounds.py)
        points = samples_in(rng, lower, upper, 200)
        outputs = network.evaluate(points.reshape(-1, sizes[0])).reshape(len(lower), -1, 3)
        assert np.all((outputs @ objective.T).min(axis=1) >= chunked.objective_lower)


@pytest.mark.parametrize("identity_last", [False, True])
def test_unit_rows_start_exactly_as_their_dense_rows(identity_last) -> None:
    """A layer's bounds back-substitute the rows +e_j, -e_j from indices (linear._UnitRows,
    picking rows of W instead of multiplying): every number must equal the dense rows'
    back-substitution exactly, a product with a unit vector rounding nothing."""
    rng = np.random.default_rng(5)
    sizes = [3, 9, 9, 4]
    network = to_network(*random_network(rng, sizes))
    if identity_last:  # a final ReLU, then the identity (passed through, not multiplied)
        eye, zero = np.eye(4), np.zeros(4)
        tail = (ReluLayer(4), AffineLayer(eye, zero, np.zeros((4, 4)), zero))
        network = PiecewiseLinearNetwork((*network.layers, *tail))
    lower, upper = sample_boxes(rng, sizes[0], 7, 0.8)
    bounds = linear_bounds(network, lower, upper)
    for last in range(len(network.affine_layers)):
        width = network.affine_layers[last].n_out
        neurons = np.stack([rng.permutation(width)[:3] for _ in range(len(lower))])
        rows = linear._UnitRows(neurons, width)
        args = (last, bounds.relaxations[:last], bounds.magnitudes, (lower, upper))
        from_indices = linear._back_substitute(network, rows, *args)
        from_dense = linear._back_substitute(network, rows.dense(), *args)
        for picked, dense in zip(from_indices, from_dense, strict=True):
            np.testing.assert_array_equal(picked, dense)
