"""Sound interval evaluation of module functions (exact rational endpoints).

Used to bound the signals of a system at every unrolled step, so the networks in it can be
encoded with their stable ReLUs fixed. Returns None where it cannot say anything (an
uncertain branch that returns early); callers then encode without bounds.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from verifiers.symbolic import ir

Box = tuple[Fraction, Fraction]
BOTH = (False, True)


class _GiveUp(Exception):
    pass


def call(module: ir.Module, name: str, args: list[Any]) -> Any:
    """Interval of `name(*args)`, args as (lo, hi) pairs (tuples of them for tuple params)."""
    fn = module.functions[name]
    env = {p.name: a for p, a in zip(fn.params, args, strict=True)}
    try:
        return _block(module, fn.body, env)
    except _GiveUp:
        return None


def _block(module: ir.Module, stmts: tuple[ir.Stmt, ...], env: dict[str, Any]) -> Any:
    for stmt in stmts:
        if isinstance(stmt, ir.Assign):
            value = _eval(module, stmt.value, env)
            if len(stmt.targets) == 1:
                env[stmt.targets[0]] = value
            else:
                env.update(zip(stmt.targets, value, strict=True))
        elif isinstance(stmt, ir.Return):
            return _eval(module, stmt.value, env)
        else:
            cond = _eval(module, stmt.cond, env)
            if cond != BOTH:
                result = _block(module, stmt.body if cond[0] else stmt.orelse, env)
                if result is not None:
                    return result
                continue
            then, other = dict(env), dict(env)
            if _block(module, stmt.body, then) is not None:
                raise _GiveUp
            if _block(module, stmt.orelse, other) is not None:
                raise _GiveUp
            for key in then.keys() & other.keys():
                env[key] = _hull(then[key], other[key])
    return None


def _hull(a: Any, b: Any) -> Any:
    if isinstance(a, tuple) and a and isinstance(a[0], tuple):
        return tuple(_hull(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a[0], bool):
        return tuple(sorted(set(a) | set(b)))
    return (min(a[0], b[0]), max(a[1], b[1]))


def _eval(module: ir.Module, expr: ir.Expr, env: dict[str, Any]) -> Any:
    if isinstance(expr, ir.Const):
        if isinstance(expr.value, bool):
            return (expr.value,)
        return (Fraction(expr.value), Fraction(expr.value))
    if isinstance(expr, ir.Name):
        return env[expr.id]
    if isinstance(expr, ir.Unary):
        v = _eval(module, expr.operand, env)
        return tuple(sorted({not b for b in v})) if expr.op == "not" else (-v[1], -v[0])
    if isinstance(expr, ir.Binary):
        a, b = _eval(module, expr.left, env), _eval(module, expr.right, env)
        if expr.op == "+":
            return (a[0] + b[0], a[1] + b[1])
        if expr.op == "-":
            return (a[0] - b[1], a[1] - b[0])
        if expr.op == "/":
            b = (1 / b[1], 1 / b[0])  # b is a non-zero constant
        products = [x * y for x in a for y in b]
        return (min(products), max(products))
    if isinstance(expr, ir.Compare):
        return _compare(expr.op, _eval(module, expr.left, env), _eval(module, expr.right, env))
    if isinstance(expr, ir.BoolOp):
        values = [_eval(module, v, env) for v in expr.values]
        if expr.op == "and":
            return (
                (False,)
                if any(v == (False,) for v in values)
                else ((True,) if all(v == (True,) for v in values) else BOTH)
            )
        return (
            (True,)
            if any(v == (True,) for v in values)
            else ((False,) if all(v == (False,) for v in values) else BOTH)
        )
    if isinstance(expr, ir.IfExp):
        cond = _eval(module, expr.cond, env)
        if cond == BOTH:
            return _hull(_eval(module, expr.then, env), _eval(module, expr.other, env))
        return _eval(module, expr.then if cond[0] else expr.other, env)
    if isinstance(expr, ir.Builtin):
        return _builtin(expr.name, [_eval(module, a, env) for a in expr.args])
    if isinstance(expr, ir.Call):
        result = call(module, expr.func, [_eval(module, a, env) for a in expr.args])
        if result is None:
            raise _GiveUp
        return result
    if isinstance(expr, ir.TupleExpr):
        return tuple(_eval(module, e, env) for e in expr.elems)
    if isinstance(expr, ir.Index):
        return _eval(module, expr.value, env)[expr.index]
    raise AssertionError(type(expr).__name__)


def _compare(op: str, a: Any, b: Any) -> tuple[bool, ...]:
    if isinstance(a[0], bool):
        if len(a) == 1 and len(b) == 1:
            return ((a[0] == b[0]) == (op == "=="),)
        return BOTH
    if op in ("<", "<="):
        sure, never = (a[1] < b[0], a[0] >= b[1]) if op == "<" else (a[1] <= b[0], a[0] > b[1])
    elif op in (">", ">="):
        return _compare("<" if op == ">" else "<=", b, a)
    else:
        equal_sure = a[0] == a[1] == b[0] == b[1]
        disjoint = a[1] < b[0] or b[1] < a[0]
        sure, never = (equal_sure, disjoint) if op == "==" else (disjoint, equal_sure)
    return (True,) if sure else ((False,) if never else BOTH)


def _builtin(name: str, args: list[Any]) -> Any:
    if name == "min":
        return (min(a[0] for a in args), min(a[1] for a in args))
    if name == "max":
        return (max(a[0] for a in args), max(a[1] for a in args))
    if name == "abs":
        lo, hi = args[0]
        return (max(lo, -hi, Fraction(0)), max(-lo, hi))
    if name == "relu":
        return (max(args[0][0], Fraction(0)), max(args[0][1], Fraction(0)))
    if name == "clip":
        x, lo, hi = args
        low = _builtin("max", [x, lo])
        return _builtin("min", [low, hi])
    return args[0]  # "real": the same interval
