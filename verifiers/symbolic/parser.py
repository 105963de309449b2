"""Module source -> typed IR. The source is parsed with `ast` and never executed.

Only a small, total language is accepted (DESIGN.md section 3): typed functions,
assignments, if/elif/else, return, arithmetic, comparisons, min/max/abs/relu/clip, calls to
the module's own functions (no recursion) and `for _ in range(K)` (unrolled here). Anything
else is a ModuleError with the line, the column and what is not allowed.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from verifiers.errors import ModuleError
from verifiers.symbolic import ir, unroll
from verifiers.symbolic.expressions import (
    REJECTED_NODES,
    RESERVED,
    Scope,
    coerce,
    constant_value,
    convert,
    loc,
)
from verifiers.symbolic.ir import Scalar, TupleType, Type

_SCALARS = {
    "Real": Scalar.REAL,
    "float": Scalar.REAL,
    "Int": Scalar.INT,
    "int": Scalar.INT,
    "Bool": Scalar.BOOL,
    "bool": Scalar.BOOL,
}
_REJECTED_STATEMENTS: dict[type, str] = {
    ast.Import: "import statements are not allowed",
    ast.ImportFrom: "import statements are not allowed",
    ast.While: "while loops are not allowed; use 'for _ in range(K)' with a constant K",
    ast.Global: "global variables are not allowed",
    ast.Nonlocal: "nonlocal variables are not allowed",
    ast.ClassDef: "class definitions are not allowed",
    ast.FunctionDef: "nested function definitions are not allowed",
    ast.AsyncFunctionDef: "async functions are not allowed",
    ast.AsyncFor: "async loops are not allowed",
    ast.AsyncWith: "with statements are not allowed",
    ast.With: "with statements are not allowed",
    ast.Try: "try statements are not allowed",
    ast.Raise: "raise statements are not allowed",
    ast.Assert: "assert statements are not allowed; state properties in the SPEC",
    ast.Delete: "del statements are not allowed",
    ast.Break: "break is not allowed; loops run a constant number of times",
    ast.Continue: "continue is not allowed; loops run a constant number of times",
    ast.Match: "match statements are not allowed",
}
if hasattr(ast, "TryStar"):
    _REJECTED_STATEMENTS[ast.TryStar] = "try statements are not allowed"


def parse_module(source: str, *, filename: str = "<module>") -> ir.Module:
    """Parse and check a module; raises ModuleError(line, column) on anything disallowed."""
    tree = _parse_ast(source, filename, mode="exec")
    assert isinstance(tree, ast.Module)
    defs = _collect_functions(tree, filename)
    order = _call_order(defs, filename)
    module = ir.Module({}, filename)
    sizes: dict[str, int] = {}
    for name in order:
        fn = _FunctionChecker(defs[name], module, set(defs), filename).check()
        sizes[name] = _inlined_size(fn, sizes, defs[name], filename)
        module.functions[name] = fn
    # Keep source order for listings.
    ordered = {name: module.functions[name] for name in defs}
    return ir.Module(ordered, filename)


def parse_expression(
    text: str, variables: dict[str, Type], module: ir.Module, *, filename: str = "<spec>"
) -> ir.Expr:
    """A single expression of the module language over the given typed variables."""
    tree = _parse_ast(text, filename, mode="eval")
    assert isinstance(tree, ast.Expression)
    scope = Scope(filename, dict(variables), dict(module.functions), set(module.functions))
    return convert(tree.body, scope)


def _parse_ast(source: str, filename: str, *, mode: str) -> ast.AST:
    if not isinstance(source, str):
        raise ModuleError("module source must be text", source=filename)
    unroll.check_source(source, filename)
    try:
        tree = ast.parse(source, filename=filename, mode=mode)
    except SyntaxError as exc:
        raise ModuleError(
            f"syntax error: {exc.msg}", source=filename, line=exc.lineno, column=_col(exc.offset)
        ) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ModuleError(f"cannot parse the module: {type(exc).__name__}", source=filename) from (
            None
        )
    unroll.check_depth(tree, filename)
    return tree


def _col(offset: int | None) -> int | None:
    return None if offset is None else max(0, offset - 1)


def _error(node: ast.AST, message: str, filename: str) -> ModuleError:
    return ModuleError(
        message,
        source=filename,
        line=getattr(node, "lineno", None),
        column=getattr(node, "col_offset", None),
    )


def _collect_functions(tree: ast.Module, filename: str) -> dict[str, ast.FunctionDef]:
    defs: dict[str, ast.FunctionDef] = {}
    for i, stmt in enumerate(tree.body):
        if i == 0 and _is_docstring(stmt):
            continue
        if isinstance(stmt, ast.FunctionDef):
            if stmt.name in defs:
                raise _error(stmt, f"function '{stmt.name}' is defined twice", filename)
            if stmt.name in RESERVED:
                raise _error(stmt, f"'{stmt.name}' is a reserved name", filename)
            defs[stmt.name] = stmt
        elif isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign):
            raise _error(
                stmt, "global variables are not allowed (module-level assignment)", filename
            )
        elif type(stmt) in _REJECTED_STATEMENTS and not isinstance(stmt, ast.FunctionDef):
            raise _error(stmt, _REJECTED_STATEMENTS[type(stmt)], filename)
        else:
            raise _error(stmt, "only function definitions are allowed at module level", filename)
    if not defs:
        raise ModuleError("the module defines no function", source=filename, line=1, column=0)
    return defs


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _call_order(defs: dict[str, ast.FunctionDef], filename: str) -> list[str]:
    """Callees before callers; recursion (a cycle of calls) is an error at a call site."""
    calls: dict[str, list[ast.Call]] = {
        name: [
            n
            for n in ast.walk(fn)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in defs
        ]
        for name, fn in defs.items()
    }
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in defs:
        if state.get(root):
            continue
        # Iterative DFS: (function, index of its next call to follow).
        path: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while path:
            name, i = path[-1]
            if i == len(calls[name]):
                path.pop()
                state[name] = 2
                order.append(name)
                continue
            path[-1] = (name, i + 1)
            call = calls[name][i]
            callee = call.func.id  # type: ignore[attr-defined]
            if state.get(callee) == 1:
                cycle = [n for n, _ in path[[n for n, _ in path].index(callee) :]] + [callee]
                raise _error(call, f"recursion is not allowed: {' -> '.join(cycle)}", filename)
            if not state.get(callee):
                state[callee] = 1
                path.append((callee, 0))
    return order


def _inlined_size(
    fn: ir.Function, sizes: dict[str, int], node: ast.FunctionDef, filename: str
) -> int:
    total = _count(fn.body) + sum(sizes[c] for c in _call_sites(fn.body))
    if total > unroll.MAX_INLINED_STATEMENTS:
        raise _error(
            node,
            f"'{fn.name}' grows to more than {unroll.MAX_INLINED_STATEMENTS} statements "
            "once its calls are inlined",
            filename,
        )
    return total


def _count(stmts: tuple[ir.Stmt, ...]) -> int:
    return sum(
        1 + (_count(s.body) + _count(s.orelse) if isinstance(s, ir.If) else 0) for s in stmts
    )


def _call_sites(stmts: tuple[ir.Stmt, ...]) -> list[str]:
    found: list[str] = []
    stack: list[object] = list(stmts)
    while stack:
        item = stack.pop()
        if isinstance(item, ir.Call):
            found.append(item.func)
        if isinstance(item, ir.If):
            stack.extend(item.body + item.orelse)
            stack.append(item.cond)
        elif isinstance(item, ir.Assign | ir.Return):
            stack.append(item.value)
        elif isinstance(item, ir.Unary):
            stack.append(item.operand)
        elif isinstance(item, ir.Binary | ir.Compare):
            stack.extend([item.left, item.right])
        elif isinstance(item, ir.BoolOp):
            stack.extend(item.values)
        elif isinstance(item, ir.IfExp):
            stack.extend([item.cond, item.then, item.other])
        elif isinstance(item, ir.Builtin | ir.Call):
            stack.extend(item.args)
        elif isinstance(item, ir.TupleExpr):
            stack.extend(item.elems)
        elif isinstance(item, ir.Index):
            stack.append(item.value)
    return found


def parse_type(node: ast.expr | None, filename: str, what: str) -> Type:
    if node is None:
        raise _error_at(what, filename)
    if isinstance(node, ast.Name) and node.id in _SCALARS:
        return _SCALARS[node.id]
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id in ("tuple", "Tuple")
    ):
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        elems = []
        for item in items:
            elem = parse_type(item, filename, what)
            if isinstance(elem, TupleType):
                raise _error(item, "nested tuple types are not allowed", filename)
            elems.append(elem)
        return TupleType(tuple(elems))
    raise _error(node, "unknown type; use Real, Int, Bool or tuple[...] of them", filename)


def _error_at(what: str, filename: str) -> ModuleError:
    return ModuleError(what, source=filename)


@dataclass
class _Block:
    stmts: list[ir.Stmt]
    env: dict[str, Type]
    returns: bool  # every path through the block returned


class _FunctionChecker:
    """Type-checks one function and unrolls its loops into IR statements."""

    def __init__(
        self, node: ast.FunctionDef, module: ir.Module, all_names: set[str], filename: str
    ) -> None:
        self.node = node
        self.filename = filename
        self.module = module
        self.all_names = all_names
        self.budget = unroll.Budget(filename)
        self.nonlinear: list[ir.Loc] = []
        self.called: list[str] = []
        self.assigned: set[str] = set()
        self.declared: Type | None = None
        self.returned: list[tuple[Type, ast.AST]] = []
        self.uses_int = False
        self.constants: dict[str, int] = {}

    def error(self, node: ast.AST, message: str) -> ModuleError:
        return _error(node, message, self.filename)

    def check(self) -> ir.Function:
        node = self.node
        params = self._params(node)
        if node.returns is not None:
            self.declared = parse_type(node.returns, self.filename, "return type")
        body = node.body[1:] if node.body and _is_docstring(node.body[0]) else node.body
        block = self._block(body, {p.name: p.type for p in params})
        if not block.returns:
            raise self.error(node, f"'{node.name}' can reach its end without returning a value")
        return ir.Function(
            node.name,
            params,
            self._return_type(),
            tuple(block.stmts),
            loc(node),
            tuple(dict.fromkeys(self.nonlinear)),
            self.uses_int,
            tuple(dict.fromkeys(self.called)),
        )

    def _params(self, node: ast.FunctionDef) -> tuple[ir.Param, ...]:
        args = node.args
        if node.decorator_list:
            raise self.error(node.decorator_list[0], "decorators are not allowed")
        if args.vararg or args.kwarg:
            raise self.error(node, "*args and **kwargs are not allowed")
        if args.kwonlyargs or args.posonlyargs:
            raise self.error(node, "keyword-only and positional-only parameters are not allowed")
        if args.defaults:
            raise self.error(args.defaults[0], "default parameter values are not allowed")
        params = []
        for arg in args.args:
            if arg.annotation is None:
                raise self.error(
                    arg, f"parameter '{arg.arg}' needs a type: Real, Int, Bool or tuple[...]"
                )
            if arg.arg in RESERVED or arg.arg in self.all_names:
                raise self.error(arg, f"'{arg.arg}' is a reserved name")
            if any(p.name == arg.arg for p in params):
                raise self.error(arg, f"duplicate parameter '{arg.arg}'")
            params.append(ir.Param(arg.arg, parse_type(arg.annotation, self.filename, "")))
        return tuple(params)

    def _return_type(self) -> Type:
        if self.declared is not None:
            return self.declared
        ty: Type | None = self.returned[0][0]
        for other, where in self.returned[1:]:
            ty = ir.join(ty, other)  # type: ignore[arg-type]
            if ty is None:
                raise self.error(where, "the function returns values of different types")
        return ty  # type: ignore[return-value]

    def _scope(self, env: dict[str, Type]) -> Scope:
        return Scope(
            self.filename,
            env,
            dict(self.module.functions),
            self.all_names,
            self.assigned - set(env),
            self.nonlinear,
            self.called,
            self.constants,
        )

    def _expr(self, node: ast.expr, env: dict[str, Type]) -> ir.Expr:
        expr = convert(node, self._scope(env))
        if ir.Scalar.INT in ir.flatten_type(expr.type):
            self.uses_int = True
        return expr

    def _block(self, stmts: list[ast.stmt], env: dict[str, Type]) -> _Block:
        block = _Block([], dict(env), False)
        for stmt in stmts:
            if block.returns:
                raise self.error(stmt, "unreachable code after return")
            self._statement(stmt, block)
        return block

    def _statement(self, stmt: ast.stmt, block: _Block) -> None:
        if isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign):
            block.stmts.append(self._assign(stmt, block.env))
            self.budget.spend(1, stmt)
        elif isinstance(stmt, ast.If):
            self._if(stmt, block)
        elif isinstance(stmt, ast.Return):
            block.stmts.append(self._return(stmt, block.env))
            block.returns = True
            self.budget.spend(1, stmt)
        elif isinstance(stmt, ast.For):
            self._for(stmt, block)
        elif isinstance(stmt, ast.Pass):
            pass
        elif isinstance(stmt, ast.Expr):
            if isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
                raise self.error(stmt, "strings are not allowed (except docstrings)")
            raise self.error(stmt, "expression statements have no effect and are not allowed")
        else:
            message = _REJECTED_STATEMENTS.get(
                type(stmt), f"'{type(stmt).__name__}' statements are not allowed"
            )
            raise self.error(stmt, message)

    def _target(self, node: ast.expr) -> str:
        if isinstance(node, ast.Name):
            if node.id in RESERVED or node.id in self.all_names:
                raise self.error(node, f"cannot assign to '{node.id}' (a reserved name)")
            return node.id
        if isinstance(node, ast.Subscript):
            raise self.error(node, "assignment to a tuple element is not allowed")
        if isinstance(node, ast.Attribute):
            raise self.error(node, REJECTED_NODES[ast.Attribute])
        raise self.error(node, "only names and tuples of names can be assigned")

    def _assign(self, stmt: ast.stmt, env: dict[str, Type]) -> ir.Assign:
        if isinstance(stmt, ast.AugAssign):
            name = self._target(stmt.target)
            fake = ast.BinOp(ast.Name(name, ast.Load()), stmt.op, stmt.value)
            ast.copy_location(fake, stmt)
            ast.copy_location(fake.left, stmt.target)
            value = self._expr(fake, env)
            return self._bind((name,), value, env, stmt)
        if isinstance(stmt, ast.AnnAssign):
            if stmt.value is None:
                raise self.error(stmt, "a declaration needs a value")
            name = self._target(stmt.target)
            declared = parse_type(stmt.annotation, self.filename, "")
            value = self._expr(stmt.value, env)
            if not ir.assignable(value.type, declared):
                raise self.error(stmt, f"'{name}' is declared {declared} but gets {value.type}")
            return self._bind((name,), coerce(value, declared), env, stmt)
        assert isinstance(stmt, ast.Assign)
        if len(stmt.targets) != 1:
            raise self.error(stmt, "chained assignment (a = b = ...) is not allowed")
        target = stmt.targets[0]
        value = self._expr(stmt.value, env)
        if isinstance(target, ast.Tuple):
            names = tuple(self._target(t) for t in target.elts)
            if len(set(names)) != len(names):
                raise self.error(target, "a name appears twice in the assignment")
            if not isinstance(value.type, TupleType) or len(value.type.elems) != len(names):
                raise self.error(stmt, f"cannot unpack {value.type} into {len(names)} names")
            return self._bind(names, value, env, stmt)
        return self._bind((self._target(target),), value, env, stmt)

    def _bind(
        self, names: tuple[str, ...], value: ir.Expr, env: dict[str, Type], stmt: ast.stmt
    ) -> ir.Assign:
        types = ir.flatten_type(value.type) if len(names) > 1 else (value.type,)
        for name, ty in zip(names, types, strict=True):
            env[name] = ty
            self.assigned.add(name)
            self.constants.pop(name, None)
        return ir.Assign(names, value, loc(stmt))

    def _if(self, stmt: ast.If, block: _Block) -> None:
        cond = self._expr(stmt.test, block.env)
        if cond.type != Scalar.BOOL:
            raise self.error(stmt.test, f"an if condition needs a Bool, got {cond.type}")
        self.budget.spend(1, stmt)
        before = dict(self.constants)
        then = self._block(stmt.body, block.env)
        after_then, self.constants = self.constants, dict(before)
        other = self._block(stmt.orelse, block.env)
        if other.returns:
            self.constants = after_then
        elif not then.returns:
            self.constants = {
                k: v for k, v in after_then.items() if self.constants.get(k, None) == v
            }
        block.stmts.append(ir.If(cond, tuple(then.stmts), tuple(other.stmts), loc(stmt)))
        if then.returns and other.returns:
            block.returns = True
        elif then.returns or other.returns:
            block.env = dict(other.env if then.returns else then.env)
        else:
            block.env = self._merge(then.env, other.env, stmt)

    def _merge(self, a: dict[str, Type], b: dict[str, Type], stmt: ast.AST) -> dict[str, Type]:
        merged = {}
        for name in a.keys() & b.keys():
            ty = ir.join(a[name], b[name])
            if ty is None:
                raise self.error(
                    stmt, f"'{name}' is {a[name]} on one branch and {b[name]} on the other"
                )
            merged[name] = ty
        return merged

    def _return(self, stmt: ast.Return, env: dict[str, Type]) -> ir.Return:
        if stmt.value is None:
            raise self.error(stmt, "return needs a value")
        value = self._expr(stmt.value, env)
        if self.declared is not None:
            if not ir.assignable(value.type, self.declared):
                raise self.error(
                    stmt, f"returns {value.type} but the function is declared -> {self.declared}"
                )
            value = coerce(value, self.declared)
        self.returned.append((value.type, stmt))
        return ir.Return(value, loc(stmt))

    def _for(self, stmt: ast.For, block: _Block) -> None:
        if stmt.orelse:
            raise self.error(stmt.orelse[0], "for ... else is not allowed")
        if not isinstance(stmt.target, ast.Name):
            raise self.error(stmt.target, "the loop variable must be a single name")
        var = stmt.target.id
        if var != "_":
            self._target(stmt.target)

        def fold(arg: ast.expr) -> int:
            value = constant_value(convert(arg, self._scope(block.env)))
            if not isinstance(value, int) or isinstance(value, bool):
                raise self.error(arg, "range() arguments must be constant integers")
            return value

        for i in unroll.loop_range(stmt, fold, self.filename):
            if var != "_":
                const = ir.Const(i, Scalar.INT, loc(stmt.target))
                block.stmts.append(self._bind((var,), const, block.env, stmt))
                self.constants[var] = i
                self.uses_int = True
            body = self._block(stmt.body, block.env)
            block.stmts.extend(body.stmts)
            block.env = body.env
            if body.returns:
                block.returns = True
                return
