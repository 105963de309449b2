"""Exact evaluation of module functions on concrete values (Fractions, ints, bools).

This is how counterexamples are replayed: no floating point anywhere, so a replayed
violation is a fact about the module, not about rounding. It reads the IR directly and
shares no code with the z3 compiler, so the two can be tested against each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from verifiers.errors import SpecError
from verifiers.symbolic import ir
from verifiers.symbolic.ir import Scalar, TupleType, Type

Value = Fraction | int | bool | tuple[Any, ...]


class _Return(Exception):
    """Unwinds the statement interpreter when a `return` runs."""

    def __init__(self, value: Value) -> None:
        self.value = value


def to_value(raw: object, ty: Type, name: str = "value") -> Value:
    """A concrete input (float, int, str like '1/3', Fraction, bool, list) as an exact value."""
    if isinstance(ty, TupleType):
        if not isinstance(raw, list | tuple) or len(raw) != len(ty.elems):
            raise SpecError(f"expected {len(ty.elems)} values for {ty}", field=name)
        return tuple(
            to_value(r, t, f"{name}[{i}]")
            for i, (r, t) in enumerate(zip(raw, ty.elems, strict=True))
        )
    if ty == Scalar.BOOL:
        if not isinstance(raw, bool):
            raise SpecError("expected true or false", field=name)
        return raw
    if isinstance(raw, bool):
        raise SpecError(f"expected a number for {ty}", field=name)
    try:
        value = Fraction(raw) if isinstance(raw, str | int | Fraction) else Fraction(float(raw))  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        raise SpecError(f"expected a number, got {raw!r}", field=name) from None
    if ty == Scalar.INT:
        if value.denominator != 1:
            raise SpecError(f"expected an integer, got {raw!r}", field=name)
        return int(value)
    return value


def call(module: ir.Module, name: str, args: Sequence[Value]) -> Value:
    """Run `name` on exact arguments (already of the parameters' types)."""
    fn = module.functions[name]
    env = {p.name: _widen(a, p.type) for p, a in zip(fn.params, args, strict=True)}
    try:
        _block(module, fn.body, env)
    except _Return as ret:
        return _widen(ret.value, fn.return_type)
    raise AssertionError(f"{name} ended without return")  # the parser rules this out


def expression(module: ir.Module, expr: ir.Expr, env: dict[str, Value]) -> Value:
    """Evaluate a (spec) expression over named values."""
    return _eval(module, expr, env)


def _widen(value: Value, ty: Type) -> Value:
    if ty == Scalar.REAL and not isinstance(value, Fraction):
        return Fraction(value)  # type: ignore[arg-type]
    if isinstance(ty, TupleType):
        return tuple(_widen(v, t) for v, t in zip(value, ty.elems, strict=True))  # type: ignore[arg-type]
    return value


def _block(module: ir.Module, stmts: tuple[ir.Stmt, ...], env: dict[str, Value]) -> None:
    for stmt in stmts:
        if isinstance(stmt, ir.Assign):
            value = _eval(module, stmt.value, env)
            if len(stmt.targets) == 1:
                env[stmt.targets[0]] = value
            else:
                env.update(zip(stmt.targets, value, strict=True))  # type: ignore[arg-type]
        elif isinstance(stmt, ir.If):
            branch = stmt.body if _eval(module, stmt.cond, env) else stmt.orelse
            _block(module, branch, env)
        else:
            raise _Return(_eval(module, stmt.value, env))


def _eval(module: ir.Module, expr: ir.Expr, env: dict[str, Value]) -> Any:
    if isinstance(expr, ir.Const):
        return expr.value
    if isinstance(expr, ir.Name):
        return env[expr.id]
    if isinstance(expr, ir.Unary):
        inner = _eval(module, expr.operand, env)
        return (not inner) if expr.op == "not" else -inner
    if isinstance(expr, ir.Binary):
        left, right = _eval(module, expr.left, env), _eval(module, expr.right, env)
        if expr.op == "+":
            return left + right
        if expr.op == "-":
            return left - right
        if expr.op == "*":
            return left * right
        return Fraction(left) / Fraction(right)
    if isinstance(expr, ir.Compare):
        return ir.COMPARISONS[expr.op](
            _eval(module, expr.left, env), _eval(module, expr.right, env)
        )
    if isinstance(expr, ir.BoolOp):
        values = (_eval(module, v, env) for v in expr.values)
        return all(values) if expr.op == "and" else any(values)
    if isinstance(expr, ir.IfExp):
        branch = expr.then if _eval(module, expr.cond, env) else expr.other
        return _eval(module, branch, env)
    if isinstance(expr, ir.Builtin):
        return _builtin(expr.name, [_eval(module, a, env) for a in expr.args])
    if isinstance(expr, ir.Call):
        return call(module, expr.func, [_eval(module, a, env) for a in expr.args])
    if isinstance(expr, ir.TupleExpr):
        return tuple(_eval(module, e, env) for e in expr.elems)
    if isinstance(expr, ir.Index):
        return _eval(module, expr.value, env)[expr.index]
    raise AssertionError(f"unknown IR node {type(expr).__name__}")


def _builtin(name: str, args: list[Any]) -> Any:
    if name == "min":
        return min(args)
    if name == "max":
        return max(args)
    if name == "abs":
        return abs(args[0])
    if name == "relu":
        return max(args[0], 0)
    if name == "clip":
        return min(max(args[0], args[1]), args[2])
    if name == "real":
        return Fraction(args[0])
    raise AssertionError(f"unknown builtin {name}")
