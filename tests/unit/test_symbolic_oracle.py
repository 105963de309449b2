"""Verdicts against independent oracles.

The generated modules are plain Python too, so the test runs them with CPython (on ints and
Fractions) as an oracle for the exact evaluator, enumerates small Int domains exhaustively as
an oracle for z3's verdicts, and samples Real domains densely.
"""

from __future__ import annotations

import ast
import itertools
import random
from fractions import Fraction

import z3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verifiers.options import Options
from verifiers.result import Verdict
from verifiers.symbolic import evaluate, parse_module, to_z3, verify_module

DOMAIN = range(-3, 4)
OPTIONS = Options(timeout_s=20.0)
PYTHON_BUILTINS = {
    "min": min,
    "max": max,
    "abs": abs,
    "relu": lambda v: max(v, 0),
    "clip": lambda v, lo, hi: min(max(v, lo), hi),
    "range": range,
}


@st.composite
def expr(draw, atoms: list[str], depth: int = 2) -> str:
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        return draw(st.sampled_from(atoms))
    a, b, c = (draw(expr(atoms, depth - 1)) for _ in range(3))
    template = draw(
        st.sampled_from(
            [
                "({} + {})",
                "({} - {})",
                "({} * {})",
                "min({}, {})",
                "max({}, {}, {})",
                "abs({})",
                "relu({})",
                "clip({}, -2, {})",
                "({} if {} < {} else 1)",
                "(2 * {})",
                "-{}",
                "({} / 4)",
            ]
        )
    )
    return template.format(a, b, c)


@st.composite
def programs(draw, ty: str) -> str:
    atoms = ["x", "y", "1", "2", "-1"]
    e = lambda: draw(expr(atoms))  # noqa: E731
    lines = [
        "def h(a: Real) -> Real:",
        "    return a / 2 + 1",
        "",
        f"def f(x: {ty}, y: {ty}) -> Real:",
        f"    z = {e()}",
        f"    if {e()} <= {e()}:",
        f"        z = {e()}",
        f"    elif x == {draw(st.integers(-3, 3))}:",
        f"        return h({e()})",
        "    else:",
        f"        z = z - {e()}",
        f"    for i in range({draw(st.integers(0, 3))}):",
        "        z = z + i * y",
        f"    return {draw(expr(atoms + ['z', 'h(z)']))}",
    ]
    return "\n".join(lines) + "\n"


class _ExactLiterals(ast.NodeTransformer):
    """Float literals and constant quotients (`1 / 4`) become Fractions, so CPython computes
    exactly like the module evaluator instead of falling back to binary floats."""

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, float):
            return ast.copy_location(_fraction(ast.Constant(repr(node.value))), node)
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Div):
            node.left = _fraction(node.left)
        return node


def _fraction(arg: ast.expr) -> ast.Call:
    return ast.Call(ast.Name("Fraction", ast.Load()), [arg], [])


def _python(source: str):
    namespace: dict = {**PYTHON_BUILTINS, "Fraction": Fraction}
    tree = ast.fix_missing_locations(_ExactLiterals().visit(ast.parse(source)))
    exec(compile(tree, "<generated>", "exec"), namespace)  # noqa: S102 - test-generated code
    return namespace["f"]


def _points(ty: str):
    if ty == "Int":
        return list(itertools.product(DOMAIN, DOMAIN))
    rng = random.Random(0)
    grid = [Fraction(v, 2) for v in range(-6, 7)]
    extra = [
        (Fraction(rng.randint(-300, 300), 100), Fraction(rng.randint(-300, 300), 100))
        for _ in range(100)
    ]
    return list(itertools.product(grid, grid)) + extra


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs("Int"))
def test_int_verdicts_match_exhaustive_enumeration(source: str):
    module = parse_module(source)
    python_f = _python(source)
    values = {}
    for x, y in _points("Int"):
        exact = evaluate.call(module, "f", [x, y])
        assert exact == python_f(x, y), (x, y)
        values[(x, y)] = exact
    top = max(values.values())
    inputs = {"x": [-3, 3], "y": [-3, 3]}
    holds = verify_module(
        source, {"function": "f", "inputs": inputs, "ensures": [f"result <= {top}"]}, OPTIONS
    )
    assert holds.verdict == Verdict.HOLDS, holds.reason
    bound = str(top - Fraction(1, 3))
    spec = {"function": "f", "inputs": inputs, "ensures": [f"result <= {bound}"]}
    failed = verify_module(source, spec, OPTIONS)
    assert failed.verdict == Verdict.VIOLATED, failed.reason
    x, y = failed.counterexample.inputs
    assert (int(x), int(y)) in values and values[(int(x), int(y))] > top - Fraction(1, 3)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs("Real"))
def test_real_evaluator_matches_python_and_z3(source: str):
    module = parse_module(source)
    python_f = _python(source)
    x, y = z3.Real("x"), z3.Real("y")
    term = to_z3.call(module, "f", [x, y])
    for px, py in _points("Real")[::7]:
        exact = evaluate.call(module, "f", [px, py])
        assert exact == python_f(px, py)
        sub = z3.simplify(
            z3.substitute(term, (x, to_z3.constant(px, "Real")), (y, to_z3.constant(py, "Real")))
        )
        assert Fraction(sub.as_fraction()) == exact


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs("Real"), st.integers(-4, 4))
def test_real_verdicts_agree_with_dense_sampling(source: str, threshold: int):
    module = parse_module(source)
    spec = {
        "function": "f",
        "inputs": {"x": [-3, 3], "y": [-3, 3]},
        "requires": ["x + y <= 4"],
        "ensures": [f"result >= {threshold}"],
    }
    result = verify_module(source, spec, OPTIONS)
    samples = [(a, b) for a, b in _points("Real") if a + b <= 4]
    bad = [p for p in samples if evaluate.call(module, "f", list(p)) < threshold]
    if result.verdict == Verdict.HOLDS:
        assert not bad
    else:
        assert result.verdict == Verdict.VIOLATED, result.reason
        cx, cy = (Fraction(v) for v in result.counterexample.inputs)
        assert -3 <= cx <= 3 and -3 <= cy <= 3 and cx + cy <= 4
        assert evaluate.call(module, "f", [cx, cy]) < threshold
