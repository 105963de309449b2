"""Verdicts of the bound/branch/z3 engine against the activation-pattern LP oracle."""

from __future__ import annotations

import functools
import time
from fractions import Fraction

import numpy as np
import pytest

from tests.oracle import exact_maximum, random_network
from verifiers.model.network import AffineLayer, PiecewiseLinearNetwork, ReluLayer
from verifiers.search import bab
from verifiers.search.bab import CaseSearch
from verifiers.search.context import SearchContext
from verifiers.smt.query import BoxQuery, decide_box
from verifiers.smt.solver import SatOutcome
from verifiers.spec.property import Case, Conjunction, HalfSpace

SHAPES = [[2, 4, 4, 1], [3, 3, 3, 2], [2, 6, 3], [3, 4, 4, 2]]


def to_network(weights, biases) -> PiecewiseLinearNetwork:
    layers = []
    for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
        layers.append(AffineLayer(w, b, np.zeros_like(w), np.zeros_like(b)))
        if k < len(weights) - 1:
            layers.append(ReluLayer(len(b)))
    return PiecewiseLinearNetwork(tuple(layers))


def at_least_case(c: np.ndarray, threshold: float, lower, upper) -> Case:
    """Unsafe: c . y >= threshold, written as -c . y <= -threshold."""
    halfspace = HalfSpace(tuple(Fraction(-float(v)) for v in c), Fraction(-threshold))
    return Case(
        tuple(Fraction(v) for v in lower),
        tuple(Fraction(v) for v in upper),
        (Conjunction((halfspace,)),),
    )


@functools.cache
def instances(count: int) -> tuple:
    return tuple(_instances(count))


def _instances(count: int):
    rng = np.random.default_rng(1234)
    for i in range(count):
        sizes = SHAPES[i % len(SHAPES)]
        weights, biases = random_network(rng, sizes)
        c = rng.choice([-1.0, 1.0], size=sizes[-1])
        lower = rng.uniform(-1.0, 0.0, size=sizes[0])
        upper = lower + rng.uniform(0.1, 1.5, size=sizes[0])
        best, _ = exact_maximum(weights, biases, c, lower, upper)
        yield to_network(weights, biases), c, lower, upper, best


def search(network, case) -> tuple[str, object]:
    def run(x):
        return network.evaluate(x.astype(np.float64))

    ctx = SearchContext(network, case, run, deadline=time.monotonic() + 30)
    outcome = CaseSearch(ctx).run()
    if outcome.counterexample is not None:
        return "violated", outcome.counterexample
    return ("holds" if outcome.decided else "unknown"), None


@pytest.mark.parametrize("index", range(16))
def test_branch_and_bound_matches_oracle(index: int) -> None:
    network, c, lower, upper, best = instances(16)[index]
    delta = 1e-3 * (1.0 + abs(best))
    verdict, _ = search(network, at_least_case(c, best + delta, lower, upper))
    assert verdict == "holds"
    verdict, cex = search(network, at_least_case(c, best - delta, lower, upper))
    assert verdict == "violated"
    assert float(c @ np.array(cex.outputs)) >= best - delta - 1e-9
    assert np.all(np.array(cex.inputs) >= lower - 1e-6) and np.all(
        np.array(cex.inputs) <= upper + 1e-6
    )


@pytest.mark.parametrize("index", range(8))
def test_z3_alone_matches_oracle(index: int) -> None:
    """The exact back end decides every small instance on its own, with no bounds given."""
    network, c, lower, upper, best = instances(16)[index]
    delta = 1e-6 * (1.0 + abs(best))
    for threshold, want in ((best + delta, SatOutcome.UNSAT), (best - delta, SatOutcome.SAT)):
        case = at_least_case(c, threshold, lower, upper)
        answer = decide_box(BoxQuery(network, case.lower_exact, case.upper_exact, case.unsafe), 30)
        assert answer.outcome is want
        if want is SatOutcome.SAT:
            x = np.array([float(v) for v in answer.inputs])
            assert float(c @ network.evaluate(x[None, :])[0]) >= threshold - 1e-9


@pytest.mark.parametrize("index", range(16))
def test_relu_splitting_matches_oracle(index: int, monkeypatch) -> None:
    """The branch and bound of high-dimensional inputs (the box stays whole, ReLUs are split
    and their phases join the final LP) forced on the small instances, against exhaustive
    enumeration, with thresholds a hair on either side of the true maximum."""
    monkeypatch.setattr(bab, "INPUT_SPLIT_MAX_DIMS", 0)
    network, c, lower, upper, best = instances(16)[index]
    delta = 1e-6 * (1.0 + abs(best))
    ctx = SearchContext(
        network,
        at_least_case(c, best + delta, lower, upper),
        lambda x: network.evaluate(x.astype(np.float64)),
        deadline=time.monotonic() + 30,
    )
    outcome = CaseSearch(ctx).run()
    assert outcome.counterexample is None and outcome.decided
    assert outcome.proved_share == pytest.approx(1.0)
    assert all(leaf.lower == list(lower) for leaf in outcome.leaves)  # never an input split
    verdict, cex = search(network, at_least_case(c, best - delta, lower, upper))
    assert verdict == "violated"
    assert float(c @ np.array(cex.outputs)) >= best - delta - 1e-9
