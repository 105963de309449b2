"""The activation-region LP lands inside small unsafe sets that gradient search misses."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.oracle import exact_maximum, random_network
from tests.unit.test_search_oracle import to_network
from verifiers.falsify import pgd
from verifiers.falsify.pgd import search as pgd_search
from verifiers.falsify.pgd import unsafe_margin
from verifiers.falsify.regions import activation_pattern, deepest_in_region


@pytest.mark.slow
def test_lp_reaches_the_exact_maximum_of_the_region_it_starts_in() -> None:
    """Unsafe: c.y >= t with t just below the true maximum (found by exhaustive enumeration of
    activation patterns). Started from a safe point near the maximiser, the LP must return an
    input that is unsafe when the network is evaluated, i.e. inside that thin sliver."""
    found = tried = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        weights, biases = random_network(rng, [3, 5, 5, 1])
        network = to_network(weights, biases)
        lower, upper = -np.ones(3), np.ones(3)
        c = np.array([1.0])
        maximum, argmax = exact_maximum(weights, biases, c, lower, upper)
        threshold = maximum - 1e-6 * max(1.0, abs(maximum))
        a, b = -c[None, :], np.array([-threshold])  # unsafe when -y <= -t
        # Start from a nearby safe point, most likely of the same region (the maximiser
        # nudged towards the centre).
        start = np.clip(argmax - 1e-3 * argmax, lower, upper)
        start_margin, _ = unsafe_margin(network.evaluate(start[None, :]), [(a, b)])
        assert start_margin[0] < 0.0
        tried += 1
        point = deepest_in_region(network, activation_pattern(network, start), lower, upper, a, b)
        assert point is not None
        assert np.all(point >= lower) and np.all(point <= upper)
        margin, _ = unsafe_margin(network.evaluate(point[None, :]), [(a, b)])
        found += margin[0] >= -1e-9
    assert tried == 6 and found >= 5  # a start may lie in a neighbouring region


def test_lp_reports_no_point_beyond_the_true_maximum() -> None:
    """An unsafe set above the true maximum is empty: whatever the LP returns is safe."""
    rng = np.random.default_rng(11)
    weights, biases = random_network(rng, [2, 5, 5, 1])
    network = to_network(weights, biases)
    lower, upper = -np.ones(2), np.ones(2)
    maximum, _ = exact_maximum(weights, biases, np.array([1.0]), lower, upper)
    a, b = -np.ones((1, 1)), np.array([-(maximum + 0.1)])
    for start in rng.uniform(-1, 1, size=(10, 2)):
        point = deepest_in_region(network, activation_pattern(network, start), lower, upper, a, b)
        assert point is not None  # the start's own pattern is feasible: the LP has an optimum
        margin, _ = unsafe_margin(network.evaluate(point[None, :]), [(a, b)])
        assert margin[0] < 0.0


def test_gradient_search_stops_at_its_deadline(monkeypatch) -> None:
    """Past its deadline, the search evaluates its points once and returns them ranked (on
    a large network, 100 steps of 4096 points overran a 30 s timeout by 10 s)."""
    weights, biases = random_network(np.random.default_rng(0), [3, 5, 5, 1])
    network = to_network(weights, biases)
    evaluations = []  # one per forward pass (outputs and the gradient's masks at once)

    def counting(net, x):
        evaluations.append(len(x))
        return forward(net, x)

    forward = pgd._forward
    monkeypatch.setattr(pgd, "_forward", counting)
    lower, upper = -np.ones(3), np.ones(3)
    unsafe = [(np.array([[-1.0]]), np.array([-1e6]))]
    rng = np.random.default_rng(1)
    points, margins = pgd_search(
        network, lower, upper, unsafe, rng, samples=32, steps=1000, deadline=time.monotonic()
    )
    assert len(evaluations) == 1
    assert len(points) == 32 and np.all(np.diff(margins) <= 0.0)
    pgd_search(network, lower, upper, unsafe, rng, samples=32, steps=7)
    assert len(evaluations) == 1 + 7
