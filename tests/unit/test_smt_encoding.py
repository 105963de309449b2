"""The z3 encoding of a network agrees with its evaluation, and exports to SMT-LIB2."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import z3

from tests.oracle import random_network
from tests.unit.test_search_oracle import at_least_case, to_network
from verifiers.smt.encode_network import encode_network
from verifiers.smt.query import BoxQuery, to_smtlib
from verifiers.smt.solver import make_solver, model_value


def test_encoding_evaluates_like_the_network_at_random_points() -> None:
    rng = np.random.default_rng(5)
    weights, biases = random_network(rng, [3, 5, 4, 2])
    network = to_network(weights, biases)
    for x in rng.uniform(-1, 1, size=(10, 3)):
        solver = make_solver(10)
        inputs = [z3.Real(f"x{i}") for i in range(3)]
        outputs = encode_network(network, inputs, solver)
        solver.add([v == Fraction(float(xi)) for v, xi in zip(inputs, x, strict=True)])
        assert solver.check() == z3.sat
        got = [float(model_value(solver.model(), y)) for y in outputs]
        np.testing.assert_allclose(got, network.evaluate(x[None, :])[0], rtol=1e-12, atol=1e-12)


def test_smtlib_export_is_a_replayable_query() -> None:
    rng = np.random.default_rng(6)
    weights, biases = random_network(rng, [2, 3, 1])
    case = at_least_case(np.array([1.0]), -100.0, np.array([0.0, 0.0]), np.array([1.0, 1.0]))
    text = to_smtlib(
        BoxQuery(to_network(weights, biases), case.lower_exact, case.upper_exact, case.unsafe)
    )
    assert "(declare-fun X_0 () Real)" in text and "(check-sat)" in text
    solver = z3.Solver()
    solver.from_string(text)
    assert solver.check() == z3.sat  # the threshold -100 is below every output


def test_region_restricted_query_agrees_with_the_full_encoding() -> None:
    """Eliminating stable ReLUs (with tracked rounding) must not change any z3 answer."""
    from verifiers.bounds.linear import linear_bounds
    from verifiers.smt.query import decide_box
    from verifiers.smt.restricted import decide_region

    rng = np.random.default_rng(3)
    outcomes = set()
    for _ in range(20):
        weights, biases = random_network(rng, [3, 6, 6, 2])
        network = to_network(weights, biases)
        lower = rng.uniform(-1, 0, 3)
        upper = lower + rng.uniform(0.05, 0.5, 3)
        bounds = linear_bounds(network, lower[None], upper[None])
        layers = [(lo[0], hi[0]) for lo, hi in bounds.layers]
        c = np.array([1.0, -1.0])
        sampled = network.evaluate(lower + rng.random((200, 3)) * (upper - lower)) @ c
        case = at_least_case(c, sampled.max() + rng.choice([-0.05, 0.05]), lower, upper)
        restricted = decide_region(
            network, case.lower_exact, case.upper_exact, layers, case.unsafe, 10
        )
        full = decide_box(BoxQuery(network, case.lower_exact, case.upper_exact, case.unsafe), 10)
        assert restricted.outcome == full.outcome
        outcomes.add(full.outcome)
    assert len(outcomes) == 2  # both answers were exercised


def test_region_query_keeps_a_split_relu_to_its_phase() -> None:
    """y = relu(x) on [-1, 1] is never <= -0.5. A region split to x >= 0 has bounds [0, 1] on
    the ReLU: eliminating it as active would let z3 take y = x = -1, an input outside the
    region, so the split ReLU must stay a variable held to its phase."""
    from verifiers.smt.restricted import decide_region
    from verifiers.smt.solver import SatOutcome
    from verifiers.spec.property import Conjunction, HalfSpace

    network = to_network([np.ones((1, 1)), np.ones((1, 1))], [np.zeros(1), np.zeros(1)])
    unsafe = (Conjunction((HalfSpace((Fraction(1),), Fraction(-1, 2)),)),)
    phase = [(np.array([0.0]), np.array([1.0])), (np.array([0.0]), np.array([1.0]))]
    box = ([Fraction(-1)], [Fraction(1)])
    kept = decide_region(network, *box, phase, unsafe, 10, keep=[np.array([True])])
    assert kept.outcome is SatOutcome.UNSAT
    # Without `keep` the query answers for the affine piece over the whole box instead.
    loose = decide_region(network, *box, phase, unsafe, 10)
    assert loose.outcome is SatOutcome.SAT and float(loose.inputs[0]) < 0.0
