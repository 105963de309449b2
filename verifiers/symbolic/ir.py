"""The typed IR of the module language: frozen data, built only by the parser.

Every node carries its source location (1-based line, 0-based column, as `ast` reports them)
and its type. Loops are already unrolled and nothing is executed: the evaluator and the z3
compiler are two independent readings of this IR, tested against each other.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction


class Scalar(StrEnum):
    REAL = "Real"
    INT = "Int"
    BOOL = "Bool"


@dataclass(frozen=True)
class TupleType:
    elems: tuple[Scalar, ...]

    def __str__(self) -> str:
        return f"tuple[{', '.join(e.value for e in self.elems)}]"


Type = Scalar | TupleType
NUMERIC = (Scalar.REAL, Scalar.INT)


def is_numeric(ty: Type) -> bool:
    return ty in NUMERIC


def assignable(source: Type, target: Type) -> bool:
    """A value of `source` type may be used where `target` is expected (Int widens to Real)."""
    if source == target:
        return True
    if isinstance(source, TupleType) and isinstance(target, TupleType):
        return len(source.elems) == len(target.elems) and all(
            assignable(s, t) for s, t in zip(source.elems, target.elems, strict=True)
        )
    return source == Scalar.INT and target == Scalar.REAL


def join(a: Type, b: Type) -> Type | None:
    """The least type both widen to, or None (e.g. Bool and Real)."""
    if assignable(a, b):
        return b
    if assignable(b, a):
        return a
    if isinstance(a, TupleType) and isinstance(b, TupleType) and len(a.elems) == len(b.elems):
        elems = [join(x, y) for x, y in zip(a.elems, b.elems, strict=True)]
        if all(isinstance(e, Scalar) for e in elems):
            return TupleType(tuple(elems))  # type: ignore[arg-type]
    return None


@dataclass(frozen=True)
class Loc:
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


# ---- expressions -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Const:
    value: Fraction | int | bool
    type: Scalar
    loc: Loc


@dataclass(frozen=True, eq=False)
class Name:
    id: str
    type: Type
    loc: Loc


@dataclass(frozen=True, eq=False)
class Unary:
    op: str  # "-" or "not"
    operand: Expr
    type: Scalar
    loc: Loc


@dataclass(frozen=True, eq=False)
class Binary:
    op: str  # "+", "-", "*", "/"
    left: Expr
    right: Expr
    type: Scalar
    loc: Loc
    nonlinear: bool = False  # a product of two non-constant terms


# The comparison operators of the language, as Python operators: they apply alike to exact
# Fractions (the evaluator) and to z3 terms (the compiler).
COMPARISONS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True, eq=False)
class Compare:
    op: str  # a key of COMPARISONS
    left: Expr
    right: Expr
    loc: Loc
    type: Scalar = Scalar.BOOL


@dataclass(frozen=True, eq=False)
class BoolOp:
    op: str  # "and" or "or"
    values: tuple[Expr, ...]
    loc: Loc
    type: Scalar = Scalar.BOOL


@dataclass(frozen=True, eq=False)
class IfExp:
    cond: Expr
    then: Expr
    other: Expr
    type: Type
    loc: Loc


@dataclass(frozen=True, eq=False)
class Builtin:
    name: str  # "min", "max", "abs", "relu", "clip"
    args: tuple[Expr, ...]
    type: Scalar
    loc: Loc


@dataclass(frozen=True, eq=False)
class Call:
    func: str  # another function of the same module, inlined
    args: tuple[Expr, ...]
    type: Type
    loc: Loc


@dataclass(frozen=True, eq=False)
class TupleExpr:
    elems: tuple[Expr, ...]
    type: TupleType
    loc: Loc


@dataclass(frozen=True, eq=False)
class Index:
    value: Expr
    index: int
    type: Scalar
    loc: Loc


Expr = Const | Name | Unary | Binary | Compare | BoolOp | IfExp | Builtin | Call | TupleExpr | Index


# ---- statements --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Assign:
    targets: tuple[str, ...]  # one name, or several for tuple unpacking
    value: Expr
    loc: Loc


@dataclass(frozen=True, eq=False)
class If:
    cond: Expr
    body: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...]
    loc: Loc


@dataclass(frozen=True, eq=False)
class Return:
    value: Expr
    loc: Loc


Stmt = Assign | If | Return


@dataclass(frozen=True)
class Param:
    name: str
    type: Type


@dataclass(frozen=True, eq=False)
class Function:
    name: str
    params: tuple[Param, ...]
    return_type: Type
    body: tuple[Stmt, ...]
    loc: Loc
    # Where products of two non-constant terms occur (z3 leaves linear arithmetic there).
    nonlinear: tuple[Loc, ...] = ()
    uses_int: bool = False
    calls: tuple[str, ...] = ()

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


@dataclass(frozen=True, eq=False)
class Module:
    functions: dict[str, Function] = field(default_factory=dict)
    filename: str = "<module>"

    def function(self, name: str) -> Function | None:
        return self.functions.get(name)

    def reachable(self, name: str) -> list[Function]:
        """`name` and every function it calls, directly or not."""
        seen: dict[str, Function] = {}
        stack = [name]
        while stack:
            fn = self.functions[stack.pop()]
            if fn.name not in seen:
                seen[fn.name] = fn
                stack.extend(fn.calls)
        return list(seen.values())

    def is_linear(self, name: str) -> bool:
        return not any(fn.nonlinear for fn in self.reachable(name))

    def uses_int(self, name: str) -> bool:
        return any(
            fn.uses_int or any(_has_int(p.type) for p in fn.params) for fn in self.reachable(name)
        )


def _has_int(ty: Type) -> bool:
    return ty == Scalar.INT or (isinstance(ty, TupleType) and Scalar.INT in ty.elems)


def flatten_type(ty: Type) -> tuple[Scalar, ...]:
    return ty.elems if isinstance(ty, TupleType) else (ty,)
