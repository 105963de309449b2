"""Function contracts: SPEC errors, VNN-LIB over modules, non-linear replay."""

from __future__ import annotations

from fractions import Fraction

import pytest

from verifiers.errors import ModuleError, SpecError
from verifiers.options import Options
from verifiers.result import Verdict
from verifiers.symbolic import verify_module
from verifiers.symbolic.check import parse_contract, replay
from verifiers.symbolic.parser import parse_module

OPTIONS = Options(timeout_s=20.0)
SOURCE = """
def f(x: Real, y: Real) -> Real:
    return min(max(x - y, 0.0), 1.0)

def square(x: Real) -> Real:
    return x * x

def parity(n: Int, flag: Bool) -> Int:
    if flag:
        return n * 2
    return n
"""


@pytest.mark.parametrize(
    ("spec", "field", "column"),
    [
        ({"function": "g", "ensures": ["result >= 0"]}, "function", None),
        ({"function": "f", "ensures": ["result >= "]}, "ensures[0]", None),
        ({"function": "f", "ensures": ["result.real >= 0"]}, "ensures[0]", 0),
        ({"function": "f", "ensures": ["z >= 0"]}, "ensures[0]", 0),
        ({"function": "f", "ensures": ["result + 1"]}, "ensures[0]", None),
        ({"function": "f", "requires": ["result > 0"], "ensures": ["x > 0"]}, "requires[0]", 0),
        ({"function": "f", "inputs": {"q": [0, 1]}, "ensures": ["x > 0"]}, "inputs.q", None),
        ({"function": "f", "inputs": {"x": [1]}, "ensures": ["x > 0"]}, "inputs.x", None),
        ({"function": "f", "inputs": {"x": [0, "a"]}, "ensures": ["x > 0"]}, "inputs.x[1]", None),
        ({"function": "f", "ensures": ["x > 0"], "extra": 1}, "extra", None),
        ({"function": "f"}, "ensures", None),
    ],
)
def test_spec_errors_name_field_and_column(spec: dict, field: str, column: int | None):
    with pytest.raises(SpecError) as info:
        verify_module(SOURCE, spec, OPTIONS)
    assert info.value.field == field
    if column is not None:
        assert info.value.column == column


def test_module_errors_propagate_with_location():
    with pytest.raises(ModuleError) as info:
        verify_module("import os\n", {"function": "f", "ensures": []}, OPTIONS, filename="m.py")
    assert (info.value.line, info.value.column, info.value.source) == (1, 0, "m.py")


def test_int_and_bool_parameters():
    spec = {
        "function": "parity",
        "inputs": {"n": [-3, 3], "flag": True},
        "ensures": ["result >= -6", "result <= 6"],
    }
    assert verify_module(SOURCE, spec, OPTIONS).verdict == Verdict.HOLDS
    spec["ensures"] = ["result <= 5"]
    result = verify_module(SOURCE, spec, OPTIONS)
    assert result.verdict == Verdict.VIOLATED
    assert result.counterexample.trace[0]["inputs"] == {"n": 3, "flag": True}


def test_nonlinear_irrational_candidate_is_unknown_not_violated():
    # x * x == 2 only at x = +-sqrt(2): z3 answers with an algebraic number.
    spec = {"function": "square", "inputs": {"x": [0, 2]}, "ensures": ["result != 2"]}
    result = verify_module(SOURCE, spec, OPTIONS)
    assert result.verdict == Verdict.UNKNOWN
    assert "replay" in result.reason


def test_nonlinear_holds_is_marked():
    spec = {"function": "square", "inputs": {"x": [-2, 2]}, "ensures": ["result >= 0"]}
    result = verify_module(SOURCE, spec, OPTIONS)
    assert result.verdict == Verdict.HOLDS
    assert result.certificate["linear"] is False and result.certificate["nonlinear_at"] == ["6:11"]


VNNLIB = """
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(assert (>= X_0 0.0))
(assert (<= X_0 3.0))
(assert (>= X_1 0.0))
(assert (<= X_1 1.0))
(assert ({op} Y_0 1.0))
"""


def test_vnnlib_over_module_inputs_and_outputs():
    holds = verify_module(SOURCE, {"function": "f", "vnnlib": VNNLIB.format(op=">")}, OPTIONS)
    assert holds.verdict == Verdict.HOLDS
    fails = verify_module(SOURCE, {"function": "f", "vnnlib": VNNLIB.format(op=">=")}, OPTIONS)
    assert fails.verdict == Verdict.VIOLATED
    x, y = fails.counterexample.inputs
    assert x - y >= 1 and 0 <= x <= 3 and 0 <= y <= 1


def test_a_counterexample_on_a_requires_boundary_keeps_its_float_inputs_inside() -> None:
    """z3's point (17/6, 7/6) lies on x + y == 4; its nearest floats sum to just above 4,
    outside `requires`. The reported float inputs must satisfy the contract's assumptions
    exactly (here: both rounded down), not only the rational point behind them."""
    module = parse_module("def s(x: Real, y: Real) -> Real:\n    return x + y\n")
    contract = parse_contract(
        module,
        {
            "function": "s",
            "inputs": {"x": [-3, 3], "y": [-3, 3]},
            "requires": ["x + y <= 4"],
            "ensures": ["result <= 3.999"],
        },
    )
    x, y = Fraction(17, 6), Fraction(7, 6)
    assert Fraction(float(x)) + Fraction(float(y)) > 4  # nearest rounding leaves the domain
    cex = replay(module, contract, {"x": x, "y": y})
    assert cex is not None
    fx, fy = (Fraction(v) for v in cex.inputs)
    assert fx + fy <= 4 and fx + fy > Fraction(3999, 1000)
