"""The unsafe set that proofs refute contains the exact one: VNN-LIB decimals and rational
coefficients are not float64 numbers, and rounding them the wrong way shrinks the unsafe set
(a wrong `holds` on a hair-thin sliver)."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_search_oracle import to_network
from verifiers.search.bab import CaseSearch
from verifiers.search.context import SearchContext
from verifiers.spec.property import Case, Conjunction, HalfSpace

rationals = st.fractions(min_value=-10, max_value=10, max_denominator=10**9)


@settings(max_examples=200, deadline=None)
@given(
    coeffs=st.lists(rationals, min_size=1, max_size=4),
    rhs=rationals,
    margin=st.sampled_from([Fraction(0), Fraction(1, 1000)]),
    data=st.data(),
)
def test_outward_matrix_contains_the_exact_set(coeffs, rhs, margin, data) -> None:
    """Any output within the magnitude on the exact set's boundary a.y = rhs + margin (the
    hardest points) satisfies the float64 inequality, evaluated exactly."""
    n = len(coeffs)
    magnitude = np.full(n, 20.0)
    free = [Fraction(data.draw(st.floats(-20, 20))) for _ in range(n - 1)]
    pivot = next((i for i, c in enumerate(coeffs) if c != 0), None)
    if pivot is None:
        return
    others = [i for i in range(n) if i != pivot]
    y = [Fraction(0)] * n
    for i, value in zip(others, free, strict=True):
        y[i] = value
    y[pivot] = (rhs + margin - sum(coeffs[i] * y[i] for i in others)) / coeffs[pivot]
    if abs(y[pivot]) > 20:
        return
    conjunction = Conjunction((HalfSpace(tuple(coeffs), rhs),))
    a, b = conjunction.outward_matrix(margin, magnitude)
    assert sum(Fraction(float(c)) * v for c, v in zip(a[0], y, strict=True)) <= Fraction(b[0])


def test_exact_coefficients_need_no_magnitude() -> None:
    """With float64 coefficients, b is the decimal rhs rounded up: the least float >= it."""
    conjunction = Conjunction((HalfSpace((Fraction(1), Fraction(-1, 2)), Fraction(1, 10)),))
    assert conjunction.coefficients_exact_in_float64
    _, b = conjunction.outward_matrix(Fraction(0))
    assert Fraction(b[0]) >= Fraction(1, 10) > Fraction(np.nextafter(b[0], -np.inf))
    _, below = Conjunction((HalfSpace((Fraction(1),), Fraction(-1, 10)),)).outward_matrix(
        Fraction(0)
    )
    assert Fraction(below[0]) >= Fraction(-1, 10) > Fraction(np.nextafter(below[0], -np.inf))


def test_strict_threshold_a_hair_below_a_constant_output_is_not_proved() -> None:
    """y = relu(-x - 1) + c is c exactly on x in [0, 1]; the unsafe set is y > b for a
    decimal b a hair below c, so every input is unsafe in exact arithmetic, though b's
    nearest float is c itself (a strict half-space the rounded rhs would call refuted).
    Replay rounds outputs to float32 here (c = 0.7 rounds down, below b), so no
    counterexample confirms: the answer must be `unknown`, never `holds`."""
    c = 0.7
    network = to_network([np.array([[-1.0]]), np.array([[1.0]])], [np.array([-1.0]), np.array([c])])
    threshold = Fraction(c) - Fraction(1, 10**30)
    assert float(threshold) == c and Fraction(float(np.float32(c))) < threshold
    unsafe = HalfSpace((Fraction(-1),), -threshold, strict=True)  # -y < -b, i.e. y > b

    def float32_run(x):
        return network.evaluate(x.astype(np.float64)).astype(np.float32)

    case = Case((Fraction(0),), (Fraction(1),), (Conjunction((unsafe,)),))
    ctx = SearchContext(network, case, float32_run, deadline=time.monotonic() + 10)
    outcome = CaseSearch(ctx).run()
    assert outcome.counterexample is None
    assert not outcome.decided
    assert any("does not replay" in reason for reason in outcome.unknown_reasons)
