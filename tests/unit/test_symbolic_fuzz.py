"""Fuzz: arbitrary snippets give a module or a ModuleError, never another exception.

Accepted snippets are also evaluated and compiled to z3, which must not fail either.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import z3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verifiers.errors import ModuleError
from verifiers.symbolic import evaluate, parse_module, to_z3
from verifiers.symbolic.ir import Scalar, TupleType

ATOMS = ["x", "y", "b", "t", "0", "1", "2.5", "-3", "True", "'s'", "None", "t[0]", "t[5]", "x.y"]
UNARY = ["-{}", "not {}", "abs({})", "relu({})", "(lambda: {})", "[{}]", "~{}", "{}[0]", "g({})"]
BINARY = [
    "{} + {}",
    "{} - {}",
    "{} * {}",
    "{} / {}",
    "{} / 2",
    "{} ** 2",
    "{} // {}",
    "{} < {}",
    "{} == {}",
    "{} and {}",
    "{} or {}",
    "min({}, {})",
    "max({}, {}, 1)",
    "clip({}, {}, 1)",
    "({}, {})",
    "{} if b else {}",
    "{} if {} else 0",
    "f({}, {})",
    "{} is {}",
    "{}.{}",
]
STATEMENTS = [
    "z = {}",
    "x = {}",
    "x += {}",
    "z: Real = {}",
    "a, c = {}",
    "return {}",
    "if {}:",
    "else:",
    "elif {}:",
    "for i in range(3):",
    "for i in range({}):",
    "while {}:",
    "pass",
    "import os",
    "global x",
    "break",
    "t[0] = {}",
    "{}",
    "del x",
    "assert {}",
]


@st.composite
def expressions(draw, depth: int = 3) -> str:
    if depth == 0 or draw(st.booleans()):
        return draw(st.sampled_from(ATOMS))
    if draw(st.booleans()):
        return draw(st.sampled_from(UNARY)).format(draw(expressions(depth - 1)))
    template = draw(st.sampled_from(BINARY))
    return template.format(draw(expressions(depth - 1)), draw(expressions(depth - 1)))


@st.composite
def modules(draw) -> str:
    lines = ["def f(x: Real, y: Int, b: Bool, t: tuple[Real, Real]) -> Real:"]
    indent = 1
    for _ in range(draw(st.integers(1, 8))):
        stmt = draw(st.sampled_from(STATEMENTS)).format(draw(expressions()), draw(expressions()))
        lines.append("    " * indent + stmt)
        if stmt.endswith(":"):
            indent += 1
        elif indent > 1 and draw(st.booleans()):
            indent -= 1
    lines.append("    " * draw(st.integers(0, indent)) + "return " + draw(expressions()))
    if draw(st.booleans()):
        lines.append("def g(v: Real) -> Real:\n    return " + draw(expressions()).replace("x", "v"))
    return "\n".join(lines) + "\n"


def _exercise(source: str) -> None:
    try:
        module = parse_module(source, filename="fuzz.py")
    except ModuleError as exc:
        assert exc.message and isinstance(exc.message, str)
        return
    samples = {
        Scalar.REAL: Fraction(3, 2),
        Scalar.INT: 2,
        Scalar.BOOL: True,
    }
    for fn in module.functions.values():
        args = [
            tuple(samples[e] for e in p.type.elems)
            if isinstance(p.type, TupleType)
            else samples[p.type]
            for p in fn.params
        ]
        evaluate.call(module, fn.name, args)
        terms = [to_z3.variable(f"v_{p.name}", p.type) for p in fn.params]
        result = to_z3.call(module, fn.name, terms)
        for term in result if isinstance(result, tuple) else (result,):
            assert z3.is_expr(term)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(modules())
def test_generated_modules_only_raise_module_error(source: str):
    _exercise(source)


NUMERIC_ATOMS = ["x", "y", "t[0]", "t[1]", "z", "1", "0.5", "-2"]


@st.composite
def numeric(draw, depth: int = 3) -> str:
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(NUMERIC_ATOMS))
    a, b = draw(numeric(depth - 1)), draw(numeric(depth - 1))
    template = draw(
        st.sampled_from(
            [
                "({} + {})",
                "({} - {})",
                "({} * {})",
                "({} / 4)",
                "min({}, {})",
                "max({}, {})",
                "abs({})",
                "relu({})",
                "clip({}, {}, 3)",
                "({} if {} < 1 else {})",
                "g({})",
            ]
        )
    )
    return template.format(a, b, a)


@st.composite
def typed_modules(draw) -> str:
    """Mostly well-typed modules (so evaluation and z3 compilation get exercised)."""
    lines = [
        "def g(v: Real) -> Real:",
        "    return v * 2 - 1",
        "",
        "def f(x: Real, y: Int, b: Bool, t: tuple[Real, Real]) -> Real:",
        "    z = x",
    ]
    indent = 1
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 4))
        pad = "    " * indent
        if kind == 0 and indent < 3:
            lines.append(f"{pad}if {draw(numeric(2))} <= {draw(numeric(2))}:")
            lines.append(f"{pad}    z = {draw(numeric())}")
            if draw(st.booleans()):
                lines.append(f"{pad}else:")
                lines.append(f"{pad}    return {draw(numeric())}")
        elif kind == 1:
            lines.append(f"{pad}for i in range({draw(st.integers(0, 3))}):")
            lines.append(f"{pad}    z = z + i * {draw(numeric(1))}")
        elif kind == 2 and draw(st.booleans()):
            lines.append(f"{pad}if b:")
            lines.append(f"{pad}    return {draw(numeric())}")
        else:
            lines.append(f"{pad}z = {draw(numeric())}")
    lines.append(f"    return {draw(numeric())}")
    return "\n".join(lines) + "\n"


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(typed_modules())
def test_typed_modules_evaluate_and_compile(source: str):
    _exercise(source)


PYTHONISH = st.text(
    alphabet=st.sampled_from(list("defxy():,+-*/<>=!%.[]{}'\"\\ \n\t#0123456789_abcrn@~&|^")),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(PYTHONISH)
def test_random_text_only_raises_module_error(text: str):
    _exercise(text)
    _exercise("def f(x: Real) -> Real:\n    " + text)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=60))
def test_random_bytes_decoded_only_raise_module_error(data: bytes):
    _exercise(data.decode("latin-1"))
