"""Python expressions -> typed IR expressions, rejecting everything outside the language."""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

from verifiers.errors import ModuleError
from verifiers.symbolic import ir
from verifiers.symbolic.ir import Scalar, TupleType, Type

BUILTINS: dict[str, tuple[int, int | None]] = {  # name -> (min args, max args)
    "min": (2, None),
    "max": (2, None),
    "abs": (1, 1),
    "relu": (1, 1),
    "clip": (3, 3),
}
TYPE_NAMES = {"Real", "Int", "Bool", "float", "int", "bool", "tuple", "Tuple"}
RESERVED = set(BUILTINS) | TYPE_NAMES | {"range", "result"}
MAX_POWER = 8

_ARITH = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_COMPARE = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
_REJECTED_BINOPS = {
    ast.FloorDiv: "'//' (floor division) is not allowed; use '/' by a constant",
    ast.Mod: "'%' (modulo) is not allowed",
    ast.MatMult: "'@' (matrix product) is not allowed",
    ast.LShift: "bitwise operators are not allowed",
    ast.RShift: "bitwise operators are not allowed",
    ast.BitOr: "bitwise operators are not allowed",
    ast.BitXor: "bitwise operators are not allowed",
    ast.BitAnd: "bitwise operators are not allowed",
}
REJECTED_NODES: dict[type, str] = {
    ast.Attribute: "attribute access ('.') is not allowed",
    ast.Lambda: "lambda expressions are not allowed",
    ast.List: "lists are not allowed; use a fixed tuple",
    ast.Dict: "dictionaries are not allowed",
    ast.Set: "sets are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "generator expressions are not allowed",
    ast.JoinedStr: "strings are not allowed",
    ast.FormattedValue: "strings are not allowed",
    ast.NamedExpr: "assignment expressions (':=') are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
    ast.Starred: "starred expressions ('*x') are not allowed",
    ast.Slice: "slices are not allowed",
}


@dataclass
class Scope:
    """What an expression may refer to: typed variables and the module's checked functions."""

    filename: str
    variables: dict[str, Type]
    functions: dict[str, ir.Function]
    all_functions: set[str] = field(default_factory=set)
    maybe_unbound: set[str] = field(default_factory=set)
    nonlinear: list[ir.Loc] = field(default_factory=list)
    called: list[str] = field(default_factory=list)
    # Loop variables of unrolled loops, read as the constant of their iteration.
    constants: dict[str, int] = field(default_factory=dict)

    def error(self, node: ast.AST, message: str) -> ModuleError:
        return ModuleError(
            message,
            source=self.filename,
            line=getattr(node, "lineno", None),
            column=getattr(node, "col_offset", None),
        )


def loc(node: ast.AST) -> ir.Loc:
    return ir.Loc(getattr(node, "lineno", 0), getattr(node, "col_offset", 0))


def constant_value(expr: ir.Expr) -> Fraction | int | None:
    """The value of a numeric expression built from literals only, else None."""
    if isinstance(expr, ir.Const) and expr.type != Scalar.BOOL:
        return expr.value
    if isinstance(expr, ir.Unary) and expr.op == "-":
        inner = constant_value(expr.operand)
        return None if inner is None else -inner
    if isinstance(expr, ir.Binary):
        left, right = constant_value(expr.left), constant_value(expr.right)
        if left is None or right is None:
            return None
        if expr.op == "/":
            return Fraction(left) / Fraction(right) if right != 0 else None
        ops: dict[str, Callable] = {
            "+": lambda a, b: a + b,
            "-": lambda a, b: a - b,
            "*": lambda a, b: a * b,
        }
        return ops[expr.op](left, right)
    return None


def coerce(expr: ir.Expr, target: Type) -> ir.Expr:
    """Widen Int parts of `expr` to Real where `target` asks for Real (types already agree)."""
    if expr.type == target:
        return expr
    if target == Scalar.REAL:
        return ir.Builtin("real", (expr,), Scalar.REAL, expr.loc)
    if isinstance(target, TupleType) and isinstance(expr.type, TupleType):
        elems = tuple(
            coerce(ir.Index(expr, i, src, expr.loc), dst)
            for i, (src, dst) in enumerate(zip(expr.type.elems, target.elems, strict=True))
        )
        return ir.TupleExpr(elems, target, expr.loc)
    return expr


def convert(node: ast.expr, scope: Scope) -> ir.Expr:
    handler = _HANDLERS.get(type(node))
    if handler is not None:
        return handler(node, scope)
    message = REJECTED_NODES.get(type(node), f"'{type(node).__name__}' expressions are not allowed")
    raise scope.error(node, message)


def _constant(node: ast.Constant, scope: Scope) -> ir.Expr:
    value = node.value
    if isinstance(value, bool):
        return ir.Const(value, Scalar.BOOL, loc(node))
    if isinstance(value, int):
        return ir.Const(value, Scalar.INT, loc(node))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise scope.error(node, "non-finite numbers are not allowed")
        # The literal as written (0.1 is 1/10), not its binary float approximation.
        return ir.Const(Fraction(repr(value)), Scalar.REAL, loc(node))
    if isinstance(value, str | bytes):
        raise scope.error(node, "strings are not allowed")
    if value is None:
        raise scope.error(node, "None is not allowed")
    if isinstance(value, complex):
        raise scope.error(node, "complex numbers are not allowed")
    raise scope.error(node, f"the constant {value!r} is not allowed")


def _name(node: ast.Name, scope: Scope) -> ir.Expr:
    name = node.id
    if name in scope.constants and name in scope.variables:
        return ir.Const(scope.constants[name], Scalar.INT, loc(node))
    if name in scope.variables:
        return ir.Name(name, scope.variables[name], loc(node))
    if name in scope.maybe_unbound:
        raise scope.error(node, f"'{name}' may be undefined here (assigned only on some paths)")
    if name in BUILTINS or name in scope.all_functions:
        raise scope.error(node, f"'{name}' is a function; it can only be called")
    raise scope.error(node, f"name '{name}' is not defined")


def _unary(node: ast.UnaryOp, scope: Scope) -> ir.Expr:
    operand = convert(node.operand, scope)
    if isinstance(node.op, ast.Not):
        _expect_bool(operand, node.operand, scope, "'not'")
        return ir.Unary("not", operand, Scalar.BOOL, loc(node))
    if isinstance(node.op, ast.Invert):
        raise scope.error(node, "bitwise operators are not allowed")
    _expect_numeric(operand, node.operand, scope)
    if isinstance(node.op, ast.UAdd):
        return operand
    if isinstance(operand, ir.Const):
        return ir.Const(-operand.value, operand.type, loc(node))
    return ir.Unary("-", operand, operand.type, loc(node))  # type: ignore[arg-type]


def _binary(node: ast.BinOp, scope: Scope) -> ir.Expr:
    if type(node.op) in _REJECTED_BINOPS:
        raise scope.error(node, _REJECTED_BINOPS[type(node.op)])
    left = convert(node.left, scope)
    if isinstance(node.op, ast.Pow):
        return _power(node, left, scope)
    right = convert(node.right, scope)
    op = _ARITH[type(node.op)]
    _expect_numeric(left, node.left, scope)
    _expect_numeric(right, node.right, scope)
    if op == "/":
        divisor = constant_value(right)
        if divisor is None:
            raise scope.error(node.right, "division by a non-constant is not allowed")
        if divisor == 0:
            raise scope.error(node.right, "division by zero")
        return ir.Binary("/", left, right, Scalar.REAL, loc(node))
    return _arith(op, left, right, node, scope)


def _arith(op: str, left: ir.Expr, right: ir.Expr, node: ast.AST, scope: Scope) -> ir.Expr:
    both_int = left.type == Scalar.INT and right.type == Scalar.INT
    ty = Scalar.INT if both_int else Scalar.REAL
    nonlinear = op == "*" and constant_value(left) is None and constant_value(right) is None
    if nonlinear:
        scope.nonlinear.append(loc(node))
    return ir.Binary(op, left, right, ty, loc(node), nonlinear)


def _power(node: ast.BinOp, base: ir.Expr, scope: Scope) -> ir.Expr:
    exponent = constant_value(convert(node.right, scope))
    if not isinstance(exponent, int) or not 1 <= exponent <= MAX_POWER:
        raise scope.error(
            node.right, f"'**' needs a constant integer exponent from 1 to {MAX_POWER}"
        )
    _expect_numeric(base, node.left, scope)
    result = base
    for _ in range(exponent - 1):
        result = _arith("*", result, base, node, scope)
    return result


def _compare(node: ast.Compare, scope: Scope) -> ir.Expr:
    operands = [convert(node.left, scope)] + [convert(c, scope) for c in node.comparators]
    parts: list[ir.Expr] = []
    for i, op_node in enumerate(node.ops):
        if type(op_node) not in _COMPARE:
            raise scope.error(node, "only <, <=, >, >=, == and != comparisons are allowed")
        op = _COMPARE[type(op_node)]
        left, right = operands[i], operands[i + 1]
        both_bool = left.type == Scalar.BOOL and right.type == Scalar.BOOL
        if not (op in ("==", "!=") and both_bool):
            _expect_numeric(left, node, scope)
            _expect_numeric(right, node, scope)
        parts.append(ir.Compare(op, left, right, loc(node)))
    return parts[0] if len(parts) == 1 else ir.BoolOp("and", tuple(parts), loc(node))


def _boolop(node: ast.BoolOp, scope: Scope) -> ir.Expr:
    values = tuple(convert(v, scope) for v in node.values)
    for value, value_node in zip(values, node.values, strict=True):
        _expect_bool(value, value_node, scope, "'and'/'or'")
    return ir.BoolOp("and" if isinstance(node.op, ast.And) else "or", values, loc(node))


def _ifexp(node: ast.IfExp, scope: Scope) -> ir.Expr:
    cond = convert(node.test, scope)
    _expect_bool(cond, node.test, scope, "a conditional expression")
    then, other = convert(node.body, scope), convert(node.orelse, scope)
    ty = ir.join(then.type, other.type)
    if ty is None:
        raise scope.error(node, f"the branches have different types: {then.type} and {other.type}")
    return ir.IfExp(cond, then, other, ty, loc(node))


def _call(node: ast.Call, scope: Scope) -> ir.Expr:
    if not isinstance(node.func, ast.Name):
        if isinstance(node.func, ast.Attribute):
            raise scope.error(node.func, REJECTED_NODES[ast.Attribute])
        raise scope.error(node, "only calls of named functions are allowed")
    name = node.func.id
    if node.keywords:
        raise scope.error(node, "keyword arguments are not allowed")
    if name == "range":
        raise scope.error(node, "range() is only allowed in 'for _ in range(K)'")
    if name in BUILTINS:
        return _builtin(name, node, scope)
    if name in scope.functions:
        return _module_call(scope.functions[name], node, scope)
    if name in scope.all_functions:  # a cycle is reported before any function is checked
        raise scope.error(node, f"'{name}' cannot be called here")
    allowed = ", ".join(BUILTINS)
    raise scope.error(
        node, f"call to '{name}' is not allowed; allowed: {allowed} and this module's functions"
    )


def _builtin(name: str, node: ast.Call, scope: Scope) -> ir.Expr:
    low, high = BUILTINS[name]
    count = len(node.args)
    if count < low or (high is not None and count > high):
        expected = f"{low}" if low == high else f"at least {low}"
        raise scope.error(node, f"{name}() takes {expected} arguments, got {count}")
    args = tuple(convert(a, scope) for a in node.args)
    for arg, arg_node in zip(args, node.args, strict=True):
        _expect_numeric(arg, arg_node, scope)
    ty = Scalar.INT if all(a.type == Scalar.INT for a in args) else Scalar.REAL
    return ir.Builtin(name, args, ty, loc(node))


def _module_call(fn: ir.Function, node: ast.Call, scope: Scope) -> ir.Expr:
    if len(node.args) != len(fn.params):
        raise scope.error(
            node, f"{fn.name}() takes {len(fn.params)} arguments, got {len(node.args)}"
        )
    args = []
    for arg_node, param in zip(node.args, fn.params, strict=True):
        arg = convert(arg_node, scope)
        if not ir.assignable(arg.type, param.type):
            raise scope.error(
                arg_node,
                f"argument '{param.name}' of {fn.name}() must be {param.type}, got {arg.type}",
            )
        args.append(coerce(arg, param.type))
    scope.called.append(fn.name)
    return ir.Call(fn.name, tuple(args), fn.return_type, loc(node))


def _tuple(node: ast.Tuple, scope: Scope) -> ir.Expr:
    if not node.elts:
        raise scope.error(node, "empty tuples are not allowed")
    elems = tuple(convert(e, scope) for e in node.elts)
    for elem, elem_node in zip(elems, node.elts, strict=True):
        if isinstance(elem.type, TupleType):
            raise scope.error(elem_node, "nested tuples are not allowed")
    types = tuple(e.type for e in elems)
    return ir.TupleExpr(elems, TupleType(types), loc(node))  # type: ignore[arg-type]


def _subscript(node: ast.Subscript, scope: Scope) -> ir.Expr:
    value = convert(node.value, scope)
    if not isinstance(value.type, TupleType):
        raise scope.error(node, f"only tuples can be indexed, not {value.type}")
    if isinstance(node.slice, ast.Slice):
        raise scope.error(node.slice, REJECTED_NODES[ast.Slice])
    index = constant_value(convert(node.slice, scope))
    if not isinstance(index, int):
        raise scope.error(node.slice, "a tuple index must be a constant integer")
    size = len(value.type.elems)
    if not -size <= index < size:
        raise scope.error(node.slice, f"index {index} is out of range for {value.type}")
    index %= size
    return ir.Index(value, index, value.type.elems[index], loc(node))


def _expect_numeric(expr: ir.Expr, node: ast.AST, scope: Scope) -> None:
    if not ir.is_numeric(expr.type):
        raise scope.error(node, f"expected a number (Real or Int), got {expr.type}")


def _expect_bool(expr: ir.Expr, node: ast.AST, scope: Scope, where: str) -> None:
    if expr.type != Scalar.BOOL:
        raise scope.error(node, f"{where} needs a Bool (e.g. a comparison), got {expr.type}")


_HANDLERS: dict[type, Callable[..., ir.Expr]] = {
    ast.Constant: _constant,
    ast.Name: _name,
    ast.UnaryOp: _unary,
    ast.BinOp: _binary,
    ast.Compare: _compare,
    ast.BoolOp: _boolop,
    ast.IfExp: _ifexp,
    ast.Call: _call,
    ast.Tuple: _tuple,
    ast.Subscript: _subscript,
}
