"""How much of the input volume a search proved: relative volumes that cannot underflow in
784 dimensions, cases weighed by their volumes, and percentages that never round up to a
whole proof."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from tests.onnx_builders import dense_relu_model, random_dense, to_bytes
from verifiers.components import OnnxComponent
from verifiers.options import Options
from verifiers.result import Verdict, percent
from verifiers.search.context import CaseOutcome
from verifiers.search.region import log_volume, relative_volume
from verifiers.spec.property import Case, Conjunction, HalfSpace, Property
from verifiers.verify import _proved_fraction, verify


def test_relative_volume_of_a_high_dimensional_half_box() -> None:
    lower, upper = np.full(784, 0.48), np.full(784, 0.52)
    free = upper > lower
    assert np.prod(upper - lower) == 0.0  # the absolute volume underflows
    half = upper.copy()
    half[17] = 0.5
    assert relative_volume(lower, half, free, upper - lower) == 0.5
    assert math.isclose(log_volume(lower, upper, free), 784 * math.log(0.04), rel_tol=1e-12)


def test_cases_are_weighed_by_their_volumes() -> None:
    small = CaseOutcome(proved_share=1.0, log_volume=-3000.0)
    large = CaseOutcome(proved_share=0.0, log_volume=-3000.0 + math.log(3.0))
    assert math.isclose(_proved_fraction([small, large]), 0.25)
    assert _proved_fraction([]) == 1.0


def test_percent_never_rounds_up_to_a_whole_proof() -> None:
    assert percent(0.99996) == "99.9%"
    assert percent(1.0) == "100.0%"
    assert percent(0.0) == "0.0%"


def test_an_unfinished_784_input_search_does_not_claim_the_whole_volume(tmp_path) -> None:
    """Out of time before any region is bounded: unknown, with none of the volume proved
    (the absolute volume 0.04**784 is 0.0 in float64, which once read as 100%)."""
    weights, biases = random_dense([784, 8, 2], seed=3)
    path = tmp_path / "wide.onnx"
    path.write_bytes(to_bytes(dense_relu_model(weights, biases)))
    unreachable = HalfSpace((Fraction(-1), Fraction(0)), Fraction(-(10**6)))  # y0 >= 1e6
    case = Case(
        (Fraction(48, 100),) * 784, (Fraction(52, 100),) * 784, (Conjunction((unreachable,)),)
    )
    result = verify(OnnxComponent(path), Property(784, 2, (case,)), Options(timeout_s=1e-3))
    assert result.verdict is Verdict.UNKNOWN
    assert result.stats.proved_fraction == 0.0
    assert "0.0% of the input volume proved" in result.reason
