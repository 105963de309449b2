"""Convex combinations of linear bounds (bounds/combine.py) against exact rational arithmetic."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from verifiers.bounds.combine import box_constants, combination_lower_bound, sound_value
from verifiers.search.combination import negative_somewhere

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


def exact_box_minimum(coeffs: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> Fraction:
    return sum(
        (
            min(Fraction(c) * Fraction(lo), Fraction(c) * Fraction(hi))
            for c, lo, hi in zip(coeffs, lower, upper, strict=True)
        ),
        Fraction(0),
    )


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(1, 6), st.integers(1, 4))
def test_box_constants_never_exceed_the_exact_constants(data, n, m) -> None:
    """d_i <= L_i - min_box(c_i . x) - offset_i exactly, also when the result is tiny next
    to L_i and the offset (the subtractions cancel)."""
    coeffs = np.array(
        data.draw(st.lists(st.lists(finite, min_size=n, max_size=n), min_size=m, max_size=m))
    )
    lower = np.array(data.draw(st.lists(finite, min_size=n, max_size=n)))
    upper = lower + np.abs(np.array(data.draw(st.lists(finite, min_size=n, max_size=n))))
    offset = np.array(data.draw(st.lists(finite, min_size=m, max_size=m)))
    # L_i close to min + offset, so that d_i nearly cancels.
    jitter = np.array(data.draw(st.lists(st.floats(-1e-9, 1e-9), min_size=m, max_size=m)))
    minimum = np.sum(np.minimum(coeffs * lower, coeffs * upper), axis=1)
    lower_bounds = minimum + offset + jitter
    d = box_constants(lower_bounds, coeffs, lower, upper, offset)
    for i in range(m):
        exact = (
            Fraction(lower_bounds[i])
            - exact_box_minimum(coeffs[i], lower, upper)
            - Fraction(offset[i])
        )
        assert Fraction(d[i]) <= exact


@settings(max_examples=200, deadline=None)
@given(st.data(), st.integers(1, 5), st.integers(1, 4))
def test_sound_value_is_below_the_exact_minimum(data, n, m) -> None:
    coeffs = np.array(
        data.draw(st.lists(st.lists(finite, min_size=n, max_size=n), min_size=m, max_size=m))
    )
    consts = np.array(data.draw(st.lists(finite, min_size=m, max_size=m)))
    lower = np.array(data.draw(st.lists(finite, min_size=n, max_size=n)))
    upper = lower + np.abs(np.array(data.draw(st.lists(finite, min_size=n, max_size=n))))
    mu = np.array(data.draw(st.lists(st.floats(0.0, 1.0), min_size=m, max_size=m)))
    if mu.sum() == 0.0:
        return
    mu = mu / mu.sum()
    g = [sum(Fraction(mu[i]) * Fraction(coeffs[i, d]) for i in range(m)) for d in range(n)]
    exact = sum(Fraction(mu[i]) * Fraction(consts[i]) for i in range(m)) + sum(
        min(g[d] * Fraction(lower[d]), g[d] * Fraction(upper[d])) for d in range(n)
    )
    assert Fraction(sound_value(mu, coeffs, consts, lower, upper)) <= exact


def test_two_bounds_that_fail_alone_refute_together() -> None:
    """x - 0.4 > 0 only for x > 0.4 and 0.6 - x > 0 only for x < 0.6: on [0, 1] neither is
    positive everywhere, their average 0.1 is."""
    coeffs, consts = np.array([[1.0], [-1.0]]), np.array([-0.4, 0.6])
    value = combination_lower_bound(coeffs, consts, np.array([0.0]), np.array([1.0]))
    assert 0.0999 < value <= 0.1


def test_a_refutation_means_some_row_is_positive_everywhere() -> None:
    """Whenever the combination is positive, every sampled point of the box has a positive
    row (exactly); and a box with a point where all rows are <= 0 is never refuted."""
    rng = np.random.default_rng(7)
    refuted = 0
    for _ in range(200):
        n, m = rng.integers(1, 4), rng.integers(2, 5)
        coeffs = rng.normal(size=(m, n))
        consts = rng.normal(size=m)
        lower = rng.uniform(-1, 0, size=n)
        upper = lower + rng.uniform(0.1, 1, size=n)
        value = combination_lower_bound(coeffs, consts, lower, upper)
        points = rng.uniform(lower, upper, size=(256, n))
        corners = np.array(np.meshgrid(*zip(lower, upper, strict=True))).reshape(n, -1).T
        rows = np.concatenate([points, corners]) @ coeffs.T + consts
        if value > 0.0:
            refuted += 1
            assert np.all(rows.max(axis=1) > 0.0)
        if np.any(rows.max(axis=1) <= 0.0):
            assert value <= 0.0
    assert refuted > 10


def test_an_lp_is_skipped_only_where_no_combination_can_refute() -> None:
    """negative_somewhere (search/combination.py) spares the LP where a point of the box has
    every row negative: it must never be True where the LP (combination_lower_bound)
    refutes, and must be True for most boxes that the LP does not refute."""
    rng = np.random.default_rng(3)
    refuted = skipped = hopeless = 0
    for _ in range(400):
        n, m = rng.integers(1, 5), rng.integers(2, 6)
        coeffs = rng.normal(size=(m, n))
        consts = rng.normal(size=m) + 0.8
        lower = rng.uniform(-1, 0, size=n)
        upper = lower + rng.uniform(0.1, 1, size=n)
        value = combination_lower_bound(coeffs, consts, lower, upper)
        skip = negative_somewhere(coeffs, consts, lower, upper)
        refuted += value > 0.0
        skipped += skip
        hopeless += value <= 0.0
        assert not (skip and value > 0.0)
    assert refuted > 20 and skipped > hopeless // 2


def test_two_rows_each_positive_on_half_the_box_are_not_skipped() -> None:
    """x + 0.5 and 0.5 - x on [-1, 1]: each negative at one end, their average 0.5 > 0."""
    coeffs, consts = np.array([[1.0], [-1.0]]), np.array([0.5, 0.5])
    lower, upper = np.array([-1.0]), np.array([1.0])
    assert not negative_somewhere(coeffs, consts, lower, upper)
    assert negative_somewhere(coeffs, consts - 0.6, lower, upper)  # -0.1 at the centre
