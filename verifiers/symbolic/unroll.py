"""Bounds that keep a module finite: source size, AST depth, loop unrolling and inlining.

Loops are unrolled by the parser (`for _ in range(K)`: K copies of the body) and calls are
inlined by the evaluator and the z3 compiler, so every limit here caps the size of what those
two ever see. The numbers are generous for controllers and plants and small enough that a
hostile module cannot exhaust memory or the interpreter stack.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from verifiers.errors import ModuleError

MAX_SOURCE_CHARS = 100_000
# Nesting of AST nodes (a chain `a + b + c ...` nests once per term). The parser, evaluator
# and z3 compiler recurse along it, so it is kept well inside Python's stack.
MAX_AST_DEPTH = 100
MAX_LOOP_ITERATIONS = 10_000
# Statements after unrolling every loop of one function, and after inlining every call.
MAX_STATEMENTS = 100_000
MAX_INLINED_STATEMENTS = 400_000


def check_source(source: str, filename: str) -> None:
    if len(source) > MAX_SOURCE_CHARS:
        raise ModuleError(
            f"module source is {len(source)} characters; the limit is {MAX_SOURCE_CHARS}",
            source=filename,
        )


def check_depth(tree: ast.AST, filename: str) -> None:
    """Reject trees nested deeper than MAX_AST_DEPTH (iteratively: no recursion here)."""
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_AST_DEPTH:
            raise ModuleError(
                f"expression or statement nested more than {MAX_AST_DEPTH} levels deep",
                source=filename,
                line=getattr(node, "lineno", None),
                column=getattr(node, "col_offset", None),
            )
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


@dataclass
class Budget:
    """Counts the statements one function unrolls to."""

    filename: str
    statements: int = 0

    def spend(self, count: int, node: ast.AST) -> None:
        self.statements += count
        if self.statements > MAX_STATEMENTS:
            raise ModuleError(
                f"the function unrolls to more than {MAX_STATEMENTS} statements",
                source=self.filename,
                line=getattr(node, "lineno", None),
                column=getattr(node, "col_offset", None),
            )


def loop_range(node: ast.For, constant: object, filename: str) -> range:
    """The constant range of `for v in range(...)`; `constant(expr)` folds an argument.

    `constant` returns an int or raises ModuleError; it is passed in to keep this module
    free of the expression converter.
    """

    def fail(message: str, where: ast.AST) -> ModuleError:
        return ModuleError(message, source=filename, line=where.lineno, column=where.col_offset)

    it = node.iter
    if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"):
        raise fail("for loops must iterate over range(K) with a constant K", it)
    if it.keywords or not 1 <= len(it.args) <= 3:
        raise fail("range() takes 1 to 3 constant integer arguments", it)
    bounds = [constant(arg) for arg in it.args]  # type: ignore[operator]
    if len(bounds) == 3 and bounds[2] == 0:
        raise fail("range() step must not be zero", it.args[2])
    steps = range(*bounds)
    if len(steps) > MAX_LOOP_ITERATIONS:
        raise fail(f"loop runs {len(steps)} times; the limit is {MAX_LOOP_ITERATIONS}", it)
    return steps
