"""Module IR -> z3 terms, by symbolic execution with every call inlined.

Branches are executed both ways and merged with `If`; a `return` inside a branch is tracked
with a `done` flag, so code after a conditional return only matters on the paths that did not
return. Linear modules stay in linear arithmetic: the only non-linear terms are the products
the parser marked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import z3

from verifiers.smt.solver import make_solver, rational
from verifiers.symbolic import ir
from verifiers.symbolic.ir import Scalar, TupleType, Type

Term = Any  # a z3 expression, or a tuple of them for tuple values


def variable(name: str, ty: Type) -> Term:
    """Fresh z3 constants for a value of type `ty` (a tuple gets `name_0`, `name_1`, ...)."""
    if isinstance(ty, TupleType):
        return tuple(variable(f"{name}_{i}", t) for i, t in enumerate(ty.elems))
    if ty == Scalar.REAL:
        return z3.Real(name)
    if ty == Scalar.INT:
        return z3.Int(name)
    return z3.Bool(name)


def constant(value: Any, ty: Type) -> Term:
    """The z3 term of an exact value."""
    if isinstance(ty, TupleType):
        return tuple(constant(v, t) for v, t in zip(value, ty.elems, strict=True))
    if ty == Scalar.BOOL:
        return z3.BoolVal(bool(value))
    if ty == Scalar.INT:
        return z3.IntVal(int(value))
    return rational(Fraction(value))


def solver_for(module: ir.Module, functions: Sequence[str], timeout_s: float, seed: int):
    """A solver in the narrowest logic the functions need: linear real arithmetic if possible."""
    linear = all(module.is_linear(f) for f in functions)
    ints = any(module.uses_int(f) for f in functions)
    logic = None if ints else ("QF_LRA" if linear else "QF_NRA")
    return make_solver(timeout_s, seed, logic=logic)


def call(module: ir.Module, name: str, args: Sequence[Term]) -> Term:
    """The term of `name(*args)`."""
    fn = module.functions[name]
    env = {p.name: _widen(a, p.type) for p, a in zip(fn.params, args, strict=True)}
    state = _Compiler(module).block(fn.body, _State(env, z3.BoolVal(False), None))
    return _widen(state.result, fn.return_type)


def expression(module: ir.Module, expr: ir.Expr, env: dict[str, Term]) -> Term:
    """The term of a (spec) expression over named terms."""
    return _Compiler(module).expr(expr, env)


def _widen(term: Term, ty: Type) -> Term:
    if isinstance(ty, TupleType):
        return tuple(_widen(t, e) for t, e in zip(term, ty.elems, strict=True))
    if ty == Scalar.REAL and z3.is_int(term):
        return z3.ToReal(term)
    return term


def ite(cond: z3.BoolRef, then: Term, other: Term) -> Term:
    if isinstance(then, tuple):
        return tuple(ite(cond, a, b) for a, b in zip(then, other, strict=True))
    if then is other or (z3.is_expr(then) and then.eq(other)):
        return then
    return z3.If(cond, then, other)


@dataclass
class _State:
    env: dict[str, Term]
    done: z3.BoolRef  # true on the paths that already returned
    result: Term | None


class _Compiler:
    def __init__(self, module: ir.Module) -> None:
        self.module = module

    def block(self, stmts: tuple[ir.Stmt, ...], state: _State) -> _State:
        for stmt in stmts:
            if z3.is_true(state.done):
                break
            state = self.stmt(stmt, state)
        return state

    def stmt(self, stmt: ir.Stmt, state: _State) -> _State:
        if isinstance(stmt, ir.Assign):
            value = self.expr(stmt.value, state.env)
            env = dict(state.env)
            if len(stmt.targets) == 1:
                env[stmt.targets[0]] = value
            else:
                env.update(zip(stmt.targets, value, strict=True))
            return _State(env, state.done, state.result)
        if isinstance(stmt, ir.Return):
            value = self.expr(stmt.value, state.env)
            if state.result is None or z3.is_false(state.done):
                return _State(state.env, z3.BoolVal(True), value)
            return _State(state.env, z3.BoolVal(True), ite(state.done, state.result, value))
        return self.branch(stmt, state)

    def branch(self, stmt: ir.If, state: _State) -> _State:
        cond = self.expr(stmt.cond, state.env)
        if z3.is_true(cond):
            return self.block(stmt.body, state)
        if z3.is_false(cond):
            return self.block(stmt.orelse, state)
        then = self.block(stmt.body, state)
        other = self.block(stmt.orelse, state)
        env = {}
        for name in then.env.keys() | other.env.keys():
            if name in then.env and name in other.env:
                env[name] = ite(cond, then.env[name], other.env[name])
            else:  # bound on one side only: the parser forbids reading it after the merge
                env[name] = then.env.get(name, other.env.get(name))
        done = z3.simplify(z3.If(cond, then.done, other.done))
        if then.result is None or other.result is None:
            result = then.result if other.result is None else other.result
        else:
            result = ite(cond, then.result, other.result)
        return _State(env, done, result)

    def expr(self, expr: ir.Expr, env: dict[str, Term]) -> Term:
        if isinstance(expr, ir.Const):
            return constant(expr.value, expr.type)
        if isinstance(expr, ir.Name):
            return env[expr.id]
        if isinstance(expr, ir.Unary):
            inner = self.expr(expr.operand, env)
            return z3.Not(inner) if expr.op == "not" else -inner
        if isinstance(expr, ir.Binary):
            return self.binary(expr, env)
        if isinstance(expr, ir.Compare):
            return _compare(expr.op, self.expr(expr.left, env), self.expr(expr.right, env))
        if isinstance(expr, ir.BoolOp):
            values = [self.expr(v, env) for v in expr.values]
            return z3.And(values) if expr.op == "and" else z3.Or(values)
        if isinstance(expr, ir.IfExp):
            cond = self.expr(expr.cond, env)
            return ite(cond, self.expr(expr.then, env), self.expr(expr.other, env))
        if isinstance(expr, ir.Builtin):
            return _builtin(expr.name, [self.expr(a, env) for a in expr.args])
        if isinstance(expr, ir.Call):
            return call(self.module, expr.func, [self.expr(a, env) for a in expr.args])
        if isinstance(expr, ir.TupleExpr):
            return tuple(self.expr(e, env) for e in expr.elems)
        if isinstance(expr, ir.Index):
            return self.expr(expr.value, env)[expr.index]
        raise AssertionError(f"unknown IR node {type(expr).__name__}")

    def binary(self, expr: ir.Binary, env: dict[str, Term]) -> Term:
        left, right = self.expr(expr.left, env), self.expr(expr.right, env)
        if expr.type == Scalar.REAL:
            left, right = _widen(left, Scalar.REAL), _widen(right, Scalar.REAL)
        if expr.op == "+":
            return left + right
        if expr.op == "-":
            return left - right
        if expr.op == "*":
            return left * right
        return left / right  # the parser checked: a non-zero constant


def _compare(op: str, left: Term, right: Term) -> z3.BoolRef:
    if z3.is_arith(left) and z3.is_arith(right) and z3.is_int(left) != z3.is_int(right):
        left, right = _widen(left, Scalar.REAL), _widen(right, Scalar.REAL)
    return ir.COMPARISONS[op](left, right)


def _min(a: Term, b: Term) -> Term:
    a, b = _same_sort(a, b)
    return z3.If(a <= b, a, b)


def _max(a: Term, b: Term) -> Term:
    a, b = _same_sort(a, b)
    return z3.If(a >= b, a, b)


def _same_sort(a: Term, b: Term) -> tuple[Term, Term]:
    if z3.is_int(a) != z3.is_int(b):
        return _widen(a, Scalar.REAL), _widen(b, Scalar.REAL)
    return a, b


def _builtin(name: str, args: list[Term]) -> Term:
    if name in ("min", "max"):
        pick = _min if name == "min" else _max
        value = args[0]
        for arg in args[1:]:
            value = pick(value, arg)
        return value
    if name == "abs":
        return z3.If(args[0] >= 0, args[0], -args[0])
    if name == "relu":
        zero = z3.IntVal(0) if z3.is_int(args[0]) else z3.RealVal(0)
        return z3.If(args[0] >= 0, args[0], zero)
    if name == "clip":
        return _min(_max(args[0], args[1]), args[2])
    if name == "real":
        return _widen(args[0], Scalar.REAL)
    raise AssertionError(f"unknown builtin {name}")


def model_value(model: z3.ModelRef, term: Term, ty: Type) -> Any:
    """The model's exact value of a term of type `ty`; None if it is irrational."""
    if isinstance(ty, TupleType):
        values = tuple(model_value(model, t, e) for t, e in zip(term, ty.elems, strict=True))
        return None if any(v is None for v in values) else values
    val = model.eval(term, model_completion=True)
    if ty == Scalar.BOOL:
        return z3.is_true(val)
    if ty == Scalar.INT:
        return val.as_long()
    if z3.is_rational_value(val):
        return Fraction(val.numerator_as_long(), val.denominator_as_long())
    return None  # an algebraic number (non-linear modules): not exactly replayable
