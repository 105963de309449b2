"""Bounded model checking: hand-derived bounds and exhaustive reachable-set oracles."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verifiers.errors import SpecError
from verifiers.options import Options
from verifiers.result import Verdict
from verifiers.symbolic import evaluate, parse_module, verify_module

OPTIONS = Options(timeout_s=20.0)

INTEGRATOR = """
def step(x: Real, u: Real) -> Real:
    return x + u
"""


@pytest.mark.parametrize(("bound", "steps", "first_bad"), [(5, 10, 5), (5, 4, None), (2.5, 3, 2)])
def test_integrator_hand_derived(bound: float, steps: int, first_bad: int | None):
    # x0 in [0, 1], |u| <= 1: after k steps x <= 1 + k, reached with x0 = 1 and u = 1.
    spec = {
        "step": "step",
        "init": {"x": [0, 1]},
        "inputs": {"u": [-1, 1]},
        "invariant": [f"x <= {bound}"],
        "steps": steps,
    }
    result = verify_module(INTEGRATOR, spec, OPTIONS)
    if first_bad is None:
        assert result.verdict == Verdict.HOLDS
        return
    assert result.verdict == Verdict.VIOLATED
    trace = result.counterexample.trace
    assert len(trace) == first_bad + 1 and trace[-1]["failed"] == [f"x <= {bound}"]
    x = Fraction(trace[0]["state"]["x"])
    for entry in trace[:-1]:
        x += Fraction(entry["inputs"]["u"])
    assert x > bound and Fraction(trace[-1]["state"]["x"]) == x


TWO_STATE = """
def step(pos: Real, vel: Real, a: Real) -> tuple[Real, Real]:
    return (pos + vel / 10, max(vel + a / 10, 0.0))
"""


def test_tuple_state_and_requires():
    # vel0 <= 1, a <= 0 (requires): vel never grows, so pos <= pos0 + k * vel0 / 10.
    spec = {
        "step": "step",
        "init": {"pos": [0, 0], "vel": [0, 1]},
        "inputs": {"a": [-1, 1]},
        "requires": ["a <= 0"],
        "invariant": ["pos <= 0.5", "vel >= 0"],
        "steps": 5,
    }
    assert verify_module(TWO_STATE, spec, OPTIONS).verdict == Verdict.HOLDS
    spec["steps"] = 6
    result = verify_module(TWO_STATE, spec, OPTIONS)
    assert result.verdict == Verdict.VIOLATED
    pos = Fraction(result.counterexample.trace[-1]["state"]["pos"])
    assert Fraction(1, 2) < pos <= Fraction(6, 10)


@st.composite
def int_steps(draw) -> str:
    body = draw(
        st.sampled_from(
            [
                "x + u",
                "x * u",
                "max(x - u, -x)",
                "x + 2 * u if x < 2 else x - 3",
                "clip(x + u, -4, 4)",
                "abs(x) - u",
                "min(x + u, 5 - x)",
            ]
        )
    )
    return f"def step(x: Int, u: Int) -> Int:\n    return {body}\n"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(int_steps(), st.integers(-3, 6), st.integers(0, 4))
def test_int_bmc_matches_reachable_sets(source: str, bound: int, steps: int):
    module = parse_module(source)
    frontier, first_bad = {0, 1, 2}, None
    for k in range(steps + 1):
        if any(x > bound for x in frontier):
            first_bad = k
            break
        frontier = {evaluate.call(module, "step", [x, u]) for x in frontier for u in (-1, 0, 1)}
    spec = {
        "step": "step",
        "init": {"x": [0, 2]},
        "inputs": {"u": [-1, 1]},
        "invariant": [f"x <= {bound}"],
        "steps": steps,
    }
    result = verify_module(source, spec, OPTIONS)
    if first_bad is None:
        assert result.verdict == Verdict.HOLDS
    else:
        assert result.verdict == Verdict.VIOLATED
        assert len(result.counterexample.trace) == first_bad + 1


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"step": "nope", "init": {"x": [0, 1]}, "invariant": ["x <= 1"], "steps": 1}, "step"),
        ({"step": "step", "init": {}, "invariant": ["x <= 1"], "steps": 1}, "init"),
        ({"step": "step", "init": {"x": [0, 1]}, "invariant": ["x <= 1"], "steps": -1}, "steps"),
        ({"step": "step", "init": {"x": [2, 1]}, "invariant": ["x <= 1"], "steps": 1}, "init.x"),
        (
            {"step": "step", "init": {"x": [0, 1]}, "invariant": ["u <= 1"], "steps": 1},
            "invariant[0]",
        ),
        ({"step": "step", "init": {"x": [0, 1]}, "invariant": ["x"], "steps": 1}, "invariant[0]"),
        ({"step": "step", "init": {"x": [0, 1]}, "invariant": ["x <= 1"], "steps": 1, "k": 1}, "k"),
    ],
)
def test_bmc_spec_errors_name_the_field(spec: dict, field: str):
    with pytest.raises(SpecError) as info:
        verify_module(INTEGRATOR, spec, OPTIONS)
    assert info.value.field == field
