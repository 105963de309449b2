"""The module language: what is accepted, and every rejected construct with its location."""

from __future__ import annotations

from fractions import Fraction

import pytest

from verifiers.errors import ModuleError
from verifiers.symbolic import parse_module
from verifiers.symbolic.evaluate import call
from verifiers.symbolic.ir import Scalar, TupleType


def _fn(body: str, sig: str = "x: Real, y: Real") -> str:
    lines = body.strip("\n").splitlines()
    return f"def f({sig}) -> Real:\n" + "\n".join("    " + line for line in lines) + "\n"


# (source, line, column, fragment of the message)
REJECTED = [
    ("import os\ndef f(x: Real) -> Real:\n    return x\n", 1, 0, "import statements"),
    ("from math import sin\n", 1, 0, "import statements"),
    (_fn("return x.real"), 2, 11, "attribute access"),
    (_fn("while x > 0:\n    x = x - 1\nreturn x"), 2, 4, "while loops"),
    (_fn("return f(x, y)"), 2, 11, "recursion is not allowed: f -> f"),
    (
        "def f(x: Real) -> Real:\n    return g(x)\ndef g(x: Real) -> Real:\n    return f(x)\n",
        4,
        11,
        "recursion is not allowed: f -> g -> f",
    ),
    ("K = 3\ndef f(x: Real) -> Real:\n    return x\n", 1, 0, "global variables"),
    (_fn("global K\nreturn x"), 2, 4, "global variables"),
    (_fn('s = "abc"\nreturn x'), 2, 8, "strings are not allowed"),
    (_fn('x = 1.0\n"stray"\nreturn x'), 3, 4, "strings are not allowed"),
    (_fn("g = lambda z: z\nreturn x"), 2, 8, "lambda expressions"),
    (_fn("return x / y"), 2, 15, "division by a non-constant"),
    (_fn("return x / 0"), 2, 15, "division by zero"),
    (_fn("return x // 2"), 2, 11, "floor division"),
    (_fn("return x % 2"), 2, 11, "modulo"),
    (_fn("return x ** y"), 2, 16, "constant integer exponent"),
    (_fn("return [x, y][0]"), 2, 11, "lists are not allowed"),
    (_fn("return {x: y}"), 2, 11, "dictionaries"),
    (_fn("return print(x)"), 2, 11, "call to 'print' is not allowed"),
    (_fn("return eval('x')"), 2, 11, "call to 'eval' is not allowed"),
    (_fn("return min(x, y, key=abs)"), 2, 11, "keyword arguments"),
    (_fn("return min(x)"), 2, 11, "min() takes at least 2 arguments"),
    (_fn("return clip(x, y)"), 2, 11, "clip() takes 3 arguments"),
    (_fn("for i in [1, 2]:\n    x = x + i\nreturn x"), 2, 13, "range(K)"),
    (_fn("for i in range(y):\n    x = x + i\nreturn x"), 2, 19, "constant integers"),
    (_fn("for i in range(100000):\n    x = x + i\nreturn x"), 2, 13, "the limit is 10000"),
    (_fn("for i in range(3):\n    break\nreturn x"), 3, 8, "break is not allowed"),
    (_fn("try:\n    x = 1.0\nexcept Exception:\n    pass\nreturn x"), 2, 4, "try statements"),
    (_fn("assert x > 0\nreturn x"), 2, 4, "assert statements"),
    (_fn("with y:\n    pass\nreturn x"), 2, 4, "with statements"),
    (_fn("def g(z: Real) -> Real:\n    return z\nreturn x"), 2, 4, "nested function"),
    (_fn("return z"), 2, 11, "name 'z' is not defined"),
    (_fn("if x > 0:\n    z = 1.0\nreturn z"), 4, 11, "may be undefined"),
    (_fn("if x:\n    return x\nreturn y"), 2, 7, "needs a Bool"),
    (_fn("return x and y"), 2, 11, "needs a Bool"),
    (_fn("return x + (x > y)"), 2, 16, "expected a number"),
    (_fn("x = 1.0"), 1, 0, "without returning"),
    (_fn("return x\ny = 2.0"), 3, 4, "unreachable code after return"),
    (_fn("return"), 2, 4, "return needs a value"),
    (_fn("return x > y"), 2, 4, "returns Bool but the function is declared -> Real"),
    (_fn("return x", sig="x"), 1, 6, "needs a type"),
    (_fn("return x", sig="x: str"), 1, 9, "unknown type"),
    (_fn("return x", sig="x: Real = 1.0"), 1, 16, "default parameter values"),
    (_fn("return x", sig="*x: Real"), 1, 0, "*args"),
    ("@staticmethod\ndef f(x: Real) -> Real:\n    return x\n", 1, 1, "decorators"),
    ("class A:\n    pass\n", 1, 0, "class definitions"),
    ("async def f(x: Real) -> Real:\n    return x\n", 1, 0, "async functions"),
    ("", 1, 0, "defines no function"),
    (
        "def f(x: Real) -> Real:\n    return x\ndef f(x: Real) -> Real:\n    return x\n",
        3,
        0,
        "defined twice",
    ),
    (_fn("min = 3.0\nreturn x"), 2, 4, "reserved name"),
    (_fn("t = (x, y)\nt[0] = 1.0\nreturn x"), 3, 4, "tuple element"),
    (_fn("t = (x, y)\nreturn t[2]"), 3, 13, "out of range"),
    (_fn("t = (x, y)\nreturn t[0:1][0]"), 3, 13, "slices"),
    (_fn("t = ((x, y), y)\nreturn x"), 2, 9, "nested tuples"),
    (_fn("a, b = x\nreturn a"), 2, 4, "cannot unpack"),
    (_fn("return x if x > y else x > y"), 2, 11, "different types"),
    (_fn("return x is y"), 2, 11, "only <, <=, >, >=, == and != comparisons"),
    (_fn("return (z := x)"), 2, 12, "assignment expressions"),
    (_fn("return -x if not x else x"), 2, 21, "needs a Bool"),
    (_fn("return 1e400 * x"), 2, 11, "non-finite"),
    (_fn("return None"), 2, 11, "None is not allowed"),
    (_fn("return x +"), 2, 14, "syntax error"),
    (_fn("return range(3)"), 2, 11, "range() is only allowed"),
    (_fn("return min"), 2, 11, "is a function"),
    (_fn("yield x"), 2, 4, "expression statements"),
    ("x = (" * 150 + "1" + ")" * 150 + "\n", None, None, ""),
]


@pytest.mark.parametrize(("source", "line", "column", "fragment"), REJECTED)
def test_rejected_with_location(source: str, line: int | None, column: int | None, fragment: str):
    with pytest.raises(ModuleError) as info:
        parse_module(source, filename="m.py")
    err = info.value
    assert fragment in err.message
    if line is not None:
        assert (err.line, err.column) == (line, column), str(err)
    assert str(err).startswith("m.py")


def test_depth_limit_reports_location():
    chain = " + ".join(["x"] * 150)
    with pytest.raises(ModuleError, match="nested more than"):
        parse_module(_fn(f"return {chain}"))


def test_source_size_limit():
    with pytest.raises(ModuleError, match="the limit is"):
        parse_module("#" * 200_000)


@pytest.mark.slow
def test_unrolled_size_limit():
    body = "for i in range(1000):\n    for j in range(1000):\n        x = x + 1.0\nreturn x"
    with pytest.raises(ModuleError, match="unrolls to more than"):
        parse_module(_fn(body))


ACCEPTED = """
\"\"\"A module docstring.\"\"\"

def helper(a: Real, b: Int) -> Real:
    \"\"\"Docstring.\"\"\"
    return a * 2 + b / 4


def pair(t: tuple[Real, Int], flag: Bool) -> tuple[Real, Real]:
    a, b = t
    c: Real = b
    c += 1
    if flag and not (a > 3.5) or b == 2:
        d = -a
    elif a <= 1 < 2:
        d = a ** 2
    else:
        return (clip(a, 0, 1), relu(c))
    total = 0
    for i in range(1, 4):
        total = total + i * d
    for _ in range(2):
        total = helper(total, b)
    return (abs(total), max(c, d, 0.5) if b != 0 else min(c, d))
"""


def test_accepted_module_types_and_evaluation():
    module = parse_module(ACCEPTED)
    pair = module.functions["pair"]
    assert pair.return_type == TupleType((Scalar.REAL, Scalar.REAL))
    assert module.functions["helper"].return_type == Scalar.REAL
    assert pair.calls == ("helper",)
    # d = a ** 2 is a product of variables: marked; i * d (i a loop constant) is not.
    assert len(pair.nonlinear) == 1 and pair.nonlinear[0].line == 16
    value = call(module, "pair", [(Fraction(1, 2), 3), False])
    # a=1/2, b=3: d = 1/4; total = (1+2+3)/4 = 3/2; helper twice: 3 + 3/4, then 7.5 + 3/4.
    assert value == (Fraction(33, 4), Fraction(4))


def test_real_literals_are_exact_decimals():
    module = parse_module(_fn("return x * 0.1"))
    assert call(module, "f", [Fraction(3), Fraction(0)]) == Fraction(3, 10)


def test_loop_variable_after_branches_is_not_a_stale_constant():
    src = _fn("i = x\nif y > 0:\n    for i in range(3):\n        pass\nreturn i")
    module = parse_module(src)
    assert call(module, "f", [Fraction(7), Fraction(-1)]) == 7
    assert call(module, "f", [Fraction(7), Fraction(1)]) == 2
