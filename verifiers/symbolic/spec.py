"""Module SPEC.json pieces: exact numbers, input domains, requires/ensures expressions.

JSON numbers are read as the decimal written (0.1 is 1/10); strings like "1/3" are accepted
for exact rationals. Errors are SpecErrors naming the field (and, inside an expression, the
column).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import z3

from verifiers.errors import ModuleError, SpecError
from verifiers.symbolic import ir
from verifiers.symbolic.ir import Scalar, TupleType, Type
from verifiers.symbolic.parser import parse_expression


def number(raw: object, field: str) -> Fraction:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise SpecError(f"expected a number, got {raw!r}", field=field)
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise SpecError("expected a finite number", field=field)
        return Fraction(repr(raw))
    try:
        return Fraction(raw)
    except (ValueError, ZeroDivisionError):
        raise SpecError(f"expected a number, got {raw!r}", field=field) from None


@dataclass(frozen=True)
class Interval:
    lo: Fraction
    hi: Fraction

    def contains(self, value: Fraction | int) -> bool:
        return self.lo <= value <= self.hi


# A scalar's domain: an Interval for numbers, a tuple of allowed values for Bool; for tuple
# types, a tuple of those.
Domain = Any


def domain(raw: object, ty: Type, field: str) -> Domain:
    if isinstance(ty, TupleType):
        if not isinstance(raw, list) or len(raw) != len(ty.elems):
            raise SpecError(f"expected a list of {len(ty.elems)} domains for {ty}", field=field)
        return tuple(
            domain(r, t, f"{field}[{i}]")
            for i, (r, t) in enumerate(zip(raw, ty.elems, strict=True))
        )
    if ty == Scalar.BOOL:
        if isinstance(raw, bool):
            return (raw,)
        if isinstance(raw, list) and raw and all(isinstance(v, bool) for v in raw):
            return tuple(dict.fromkeys(raw))
        raise SpecError("a Bool domain is true, false or [false, true]", field=field)
    if not isinstance(raw, list) or len(raw) != 2:
        raise SpecError("expected [lower, upper]", field=field)
    lo, hi = number(raw[0], f"{field}[0]"), number(raw[1], f"{field}[1]")
    if lo > hi:
        raise SpecError(f"empty interval: {raw[0]} > {raw[1]}", field=field)
    return Interval(lo, hi)


def domains(raw: object, params: tuple[ir.Param, ...], field: str) -> dict[str, Domain]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError("expected an object mapping names to [lower, upper]", field=field)
    by_name = {p.name: p.type for p in params}
    result = {}
    for name, value in raw.items():
        if name not in by_name:
            known = ", ".join(by_name) or "none"
            raise SpecError(
                f"'{name}' is not a parameter (parameters: {known})", field=f"{field}.{name}"
            )
        result[name] = domain(value, by_name[name], f"{field}.{name}")
    return result


def domain_constraint(term: Any, dom: Domain) -> list[z3.BoolRef]:
    """z3 constraints keeping `term` (of the domain's type) inside the domain."""
    from verifiers.smt.solver import rational

    if dom is None:
        return []
    if isinstance(dom, Interval):
        return [term >= rational(dom.lo), term <= rational(dom.hi)]
    if isinstance(dom, tuple) and dom and isinstance(dom[0], bool):
        return [] if len(dom) == 2 else [term == z3.BoolVal(dom[0])]
    return [c for t, d in zip(term, dom, strict=True) for c in domain_constraint(t, d)]


def in_domain(value: Any, dom: Domain) -> bool:
    if dom is None:
        return True
    if isinstance(dom, Interval):
        return dom.contains(value)
    if isinstance(dom, tuple) and dom and isinstance(dom[0], bool):
        return value in dom
    return all(in_domain(v, d) for v, d in zip(value, dom, strict=True))


def expressions(
    raw: object, variables: dict[str, Type], module: ir.Module, field: str
) -> list[tuple[str, ir.Expr]]:
    """A list of Bool expressions in the module language (requires, ensures, invariant)."""
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise SpecError("expected a list of expressions", field=field)
    parsed = []
    for i, text in enumerate(raw):
        where = f"{field}[{i}]"
        if not isinstance(text, str):
            raise SpecError("expected an expression as a string", field=where)
        try:
            expr = parse_expression(text, variables, module, filename=where)
        except ModuleError as exc:
            raise SpecError(exc.message, field=where, line=exc.line, column=exc.column) from None
        if expr.type != Scalar.BOOL:
            raise SpecError(f"expected a condition (Bool), got {expr.type}", field=where)
        parsed.append((text, expr))
    return parsed


def require_keys(spec: Mapping[str, Any], allowed: set[str], required: set[str]) -> None:
    if not isinstance(spec, Mapping):
        raise SpecError("a module SPEC must be a JSON object")
    for key in spec:
        if key not in allowed:
            raise SpecError(
                f"unknown field; expected one of {', '.join(sorted(allowed))}", field=str(key)
            )
    for key in sorted(required):
        if key not in spec:
            raise SpecError("missing field", field=key)


def json_value(value: Any) -> Any:
    """An exact value for JSON: ints and exactly representable floats as numbers, else 'p/q'."""
    if isinstance(value, tuple):
        return [json_value(v) for v in value]
    if isinstance(value, bool | int):
        return value
    if value.denominator == 1:
        return int(value)
    as_float = float(value)
    return as_float if Fraction(as_float) == value else f"{value.numerator}/{value.denominator}"


def flat_floats(value: Any) -> list[float]:
    if isinstance(value, tuple):
        return [f for v in value for f in flat_floats(v)]
    return [float(value)]


def violation_margin(expr: ir.Expr, module: ir.Module, env: dict[str, Any]) -> float:
    """How far a failed comparison is from holding (0 for other conditions)."""
    from verifiers.symbolic import evaluate

    if isinstance(expr, ir.Compare) and expr.op not in ("==", "!="):
        left = evaluate.expression(module, expr.left, env)
        right = evaluate.expression(module, expr.right, env)
        return abs(float(Fraction(left) - Fraction(right)))
    return 0.0
