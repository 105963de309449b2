"""The gradient search's gradients: exact for a chain network inside an activation region."""

from __future__ import annotations

import numpy as np
import pytest

from tests.oracle import random_network
from tests.unit.test_search_oracle import to_network
from verifiers.falsify import pgd
from verifiers.model.network import PiecewiseLinearNetwork, ReluLayer


@pytest.mark.parametrize("alpha", [0.0, 0.2])
def test_gradient_matches_finite_differences_within_an_activation_region(alpha) -> None:
    """d(c . f(x))/dx from one forward pass's masks equals the difference quotient along
    each input axis (exact for a step that changes no ReLU's phase: f is affine there),
    and the forward pass's outputs are f(x)."""
    rng = np.random.default_rng(4)
    sizes = [4, 10, 10, 3]
    chain = to_network(*random_network(rng, sizes))
    layers = [ReluLayer(x.size, alpha) if isinstance(x, ReluLayer) else x for x in chain.layers]
    network = PiecewiseLinearNetwork(tuple(layers))
    x = rng.uniform(-1, 1, size=(64, sizes[0]))
    direction = rng.normal(size=(64, sizes[-1]))
    outputs, masks = pgd._forward(network, x)
    np.testing.assert_array_equal(outputs, network.evaluate(x))
    gradient = pgd._gradient(network, x, direction, masks)
    h = 1e-6
    checked = 0
    for d in range(sizes[0]):
        step = np.zeros(sizes[0])
        step[d] = h
        same_phases = np.ones(len(x), dtype=bool)
        ahead, behind = network.pre_activations(x + step), network.pre_activations(x - step)
        for high, low in zip(ahead[:-1], behind[:-1], strict=True):
            same_phases &= np.all((high >= 0) == (low >= 0), axis=1)
        quotient = np.sum(
            direction * (network.evaluate(x + step) - network.evaluate(x - step)), axis=1
        ) / (2 * h)
        np.testing.assert_allclose(
            gradient[same_phases, d], quotient[same_phases], rtol=1e-5, atol=1e-6
        )
        checked += same_phases.sum()
    assert checked > 200
