"""VNN-LIB 1.0 properties: text -> ``Property`` and back.

Supported: ``(declare-const X_i Real)`` / ``(declare-const Y_i Real)``, ``(assert F)`` where F
is built from ``and``, ``or``, ``true``, ``false`` and the relations ``<= >= < > =`` (chains
such as ``(<= a b c)`` mean ``a <= b and b <= c``) over linear terms (``+``, ``-``, ``*`` and
``/`` by constants). The conjunction of all assertions is put in DNF; in each DNF term the
atoms over inputs must be bounds on single variables (they form the box) and the atoms over
outputs are linear (they form the unsafe conjunction). Terms with the same box are merged into
one ``Case``; terms with an empty box are dropped.

A strict bound on an input (``(< X_0 1)``) stays strict in the ``Case``: proofs use the closed
box (that only adds boundary points, so ``holds`` stays sound), and a counterexample must
satisfy it strictly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import pairwise
from typing import Literal

from verifiers.errors import SpecError
from verifiers.spec.property import Case, Conjunction, HalfSpace, Property
from verifiers.spec.sexpr import Atom, SExpr, SList, read_sexprs

MAX_DNF_TERMS = 10_000

_VARIABLE = re.compile(r"([XY])_(0|[1-9]\d*)")
_IGNORED_COMMANDS = frozenset(
    {"set-logic", "set-info", "set-option", "check-sat", "get-model", "exit"}
)

Op = Literal["<=", "<", "="]
_ONE = Fraction(1)
Var = tuple[str, int]  # ("X", 3) is X_3


@dataclass
class _Linear:
    """sum(coeffs[v] * v) + const, with no zero coefficients."""

    coeffs: dict[Var, Fraction] = field(default_factory=dict)
    const: Fraction = Fraction(0)

    def plus(self, other: _Linear, sign: int = 1) -> _Linear:
        """self + sign * other, sign 1 or -1."""
        coeffs = dict(self.coeffs)
        for var, c in other.coeffs.items():
            signed = c if sign == 1 else -c
            total = coeffs[var] + signed if var in coeffs else signed
            if total:
                coeffs[var] = total
            else:
                coeffs.pop(var, None)
        if not other.const:
            return _Linear(coeffs, self.const)
        return _Linear(coeffs, self.const + (other.const if sign == 1 else -other.const))

    def scaled(self, factor: Fraction) -> _Linear:
        if not factor:
            return _Linear()
        return _Linear({v: c * factor for v, c in self.coeffs.items()}, self.const * factor)


@dataclass(frozen=True)
class _Atom:
    """``expr op 0`` with the relation it came from (which locates it)."""

    expr: _Linear
    op: Op
    where: SList

    @property
    def line(self) -> int:
        return self.where.line

    @property
    def column(self) -> int:
        return self.where.column


_Term = list[_Atom]  # a conjunction of atoms


@dataclass(frozen=True)
class _Bound:
    value: Fraction
    strict: bool


class _Context:
    """Declarations seen so far and the source name, for errors."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.declared: dict[Var, Atom] = {}

    def error(self, message: str, node: SExpr | _Atom | None = None) -> SpecError:
        if node is None:
            return SpecError(message, source=self.source)
        return SpecError(message, source=self.source, line=node.line, column=node.column)

    def variable(self, atom: Atom) -> Var:
        match = _VARIABLE.fullmatch(atom.text)
        if match is None:
            raise self.error(f"unknown symbol {atom.text!r}", atom)
        var = (match.group(1), int(match.group(2)))
        if var not in self.declared:
            raise self.error(f"undeclared variable {atom.text!r}", atom)
        return var


def parse_vnnlib(
    text: str,
    *,
    source: str = "<vnnlib>",
    n_inputs: int | None = None,
    n_outputs: int | None = None,
) -> Property:
    """Parse VNN-LIB 1.0 text; raises ``SpecError`` with line and column on bad input."""
    ctx = _Context(source)
    terms: list[_Term] = [[]]
    for form in read_sexprs(text, source=source):
        if not isinstance(form, SList) or not form.items or not isinstance(form.items[0], Atom):
            raise ctx.error("expected a command such as (declare-const ...) or (assert ...)", form)
        head = form.items[0].text
        if head == "declare-const":
            _declare(form, ctx)
        elif head == "assert":
            if len(form.items) != 2:
                raise ctx.error("assert takes exactly one formula", form)
            terms = _conjoin(terms, _dnf(form.items[1], ctx), form, ctx)
        elif head not in _IGNORED_COMMANDS:
            raise ctx.error(f"unknown command {head!r}", form.items[0])
    n_in = _count(ctx, "X", n_inputs, "inputs")
    n_out = _count(ctx, "Y", n_outputs, "outputs")
    cases = _merge_cases(terms, ctx, n_in, n_out)
    return Property(n_inputs=n_in, n_outputs=n_out, cases=cases, source=text)


def _declare(form: SList, ctx: _Context) -> None:
    items = form.items
    if len(items) != 3 or not all(isinstance(i, Atom) for i in items[1:]):
        raise ctx.error("expected (declare-const NAME Real)", form)
    name, sort = items[1], items[2]
    assert isinstance(name, Atom) and isinstance(sort, Atom)  # checked above
    match = _VARIABLE.fullmatch(name.text)
    if match is None:
        raise ctx.error(
            f"only X_i (inputs) and Y_i (outputs) can be declared, not {name.text!r}", name
        )
    if sort.text != "Real":
        raise ctx.error(f"{name.text} must be declared Real, not {sort.text!r}", sort)
    var = (match.group(1), int(match.group(2)))
    if var in ctx.declared:
        first = ctx.declared[var]
        raise ctx.error(
            f"{name.text} is declared twice (first at {first.line}:{first.column})", name
        )
    ctx.declared[var] = name


def _conjoin(terms: list[_Term], new: list[_Term], form: SList, ctx: _Context) -> list[_Term]:
    """``terms and new``; extends in place in the common one-term case (no quadratic copy)."""
    if len(new) != 1:
        return _and_terms([terms, new], form, ctx)
    for term in terms:
        term.extend(new[0])
    return terms


def _count(ctx: _Context, kind: str, expected: int | None, what: str) -> int:
    indices = sorted(i for k, i in ctx.declared if k == kind)
    for position, index in enumerate(indices):
        if position != index:
            raise ctx.error(
                f"{kind}_{index} is declared but {kind}_{position} is not: "
                f"{what} must be {kind}_0 .. {kind}_n-1",
                ctx.declared[(kind, index)],
            )
    if expected is not None and expected != len(indices):
        raise ctx.error(f"the property declares {len(indices)} {what} but the model has {expected}")
    return len(indices)


# --- formulas to DNF -------------------------------------------------------------------------

_RELATIONS = frozenset({"<=", ">=", "<", ">", "="})


def _dnf(node: SExpr, ctx: _Context) -> list[_Term]:
    if isinstance(node, Atom):
        if node.text == "true":
            return [[]]
        if node.text == "false":
            return []
        raise ctx.error(f"expected a formula, found {node.text!r}", node)
    head = _head(node, ctx)
    if head == "and":
        return _and_terms([_dnf(child, ctx) for child in node.items[1:]], node, ctx)
    if head == "or":
        terms = [term for child in node.items[1:] for term in _dnf(child, ctx)]
        if len(terms) > MAX_DNF_TERMS:
            raise ctx.error(f"the property has more than {MAX_DNF_TERMS} DNF terms", node)
        return terms
    if head in _RELATIONS:
        return [_relation(node, head, ctx)]
    raise ctx.error(f"unknown operator {head!r} in a formula", node.items[0])


def _and_terms(children: list[list[_Term]], node: SList, ctx: _Context) -> list[_Term]:
    """The DNF of a conjunction of DNFs (the cross product of their terms)."""
    size = 1
    for child in children:
        size *= len(child)
        if size > MAX_DNF_TERMS:
            raise ctx.error(f"the property has more than {MAX_DNF_TERMS} DNF terms", node)
    terms: list[_Term] = [[]]
    for child in children:
        if len(child) == 1:
            for term in terms:
                term.extend(child[0])
        else:
            terms = [term + other for term in terms for other in child]
    return terms


def _head(node: SList, ctx: _Context) -> str:
    if not node.items or not isinstance(node.items[0], Atom) or node.items[0].number is not None:
        raise ctx.error("expected an operator after '('", node)
    return node.items[0].text


def _relation(node: SList, op: str, ctx: _Context) -> _Term:
    args = [_linear(arg, ctx) for arg in node.items[1:]]
    if len(args) < 2:
        raise ctx.error(f"{op!r} needs at least two arguments", node)
    atoms: _Term = []
    for left, right in pairwise(args):
        if op in (">=", ">"):
            left, right = right, left
        normal: Op = "=" if op == "=" else "<" if op in ("<", ">") else "<="
        atoms.append(_Atom(left.plus(right, -1), normal, node))
    return atoms


def _linear(node: SExpr, ctx: _Context) -> _Linear:
    if isinstance(node, Atom):
        if node.number is not None:
            return _Linear(const=node.number)
        return _Linear({ctx.variable(node): _ONE})
    head = _head(node, ctx)
    args = [_linear(arg, ctx) for arg in node.items[1:]]
    if not args:
        raise ctx.error(f"{head!r} needs at least one argument", node)
    if head == "+":
        return _sum(args)
    if head == "-":
        return args[0].scaled(Fraction(-1)) if len(args) == 1 else args[0].plus(_sum(args[1:]), -1)
    if head == "*":
        return _product(args, node, ctx)
    if head == "/":
        return _quotient(args, node, ctx)
    raise ctx.error(f"unknown operator {head!r} in a term", node.items[0])


def _sum(args: list[_Linear]) -> _Linear:
    total = _Linear()
    for arg in args:
        total = total.plus(arg)
    return total


def _product(args: list[_Linear], node: SList, ctx: _Context) -> _Linear:
    variable = [arg for arg in args if arg.coeffs]
    if len(variable) > 1:
        raise ctx.error("nonlinear product: only multiplication by constants is supported", node)
    factor = Fraction(1)
    for arg in args:
        if not arg.coeffs:
            factor *= arg.const
    return variable[0].scaled(factor) if variable else _Linear(const=factor)


def _quotient(args: list[_Linear], node: SList, ctx: _Context) -> _Linear:
    result = args[0]
    for arg in args[1:]:
        if arg.coeffs:
            raise ctx.error("nonlinear division: only division by constants is supported", node)
        if not arg.const:
            raise ctx.error("division by zero", node)
        result = result.scaled(1 / arg.const)
    return result


# --- DNF terms to cases ----------------------------------------------------------------------


_Box = tuple[tuple[Fraction, ...], tuple[Fraction, ...], tuple[bool, ...], tuple[bool, ...]]


def _merge_cases(terms: list[_Term], ctx: _Context, n_in: int, n_out: int) -> tuple[Case, ...]:
    # box -> its conjunctions, deduplicated in first-seen order (a dict used as ordered set)
    merged: dict[_Box, dict[Conjunction, None]] = {}
    for term in terms:
        built = _term_case(term, ctx, n_in, n_out)
        if built is not None:
            box, conjunction = built
            merged.setdefault(box, {})[conjunction] = None
    return tuple(
        Case(lo, hi, tuple(conj), lo_strict, hi_strict)
        for (lo, hi, lo_strict, hi_strict), conj in merged.items()
    )


def _term_case(
    term: _Term, ctx: _Context, n_in: int, n_out: int
) -> tuple[_Box, Conjunction] | None:
    """The box (with strictness) and unsafe conjunction of one DNF term; None when the term
    is infeasible."""
    lower: list[_Bound | None] = [None] * n_in
    upper: list[_Bound | None] = [None] * n_in
    halfspaces: dict[HalfSpace, None] = {}  # ordered set: linear in the number of atoms
    for atom in term:
        kinds = {kind for kind, _ in atom.expr.coeffs}
        if not kinds:
            if not _constant_holds(atom):
                return None
        elif kinds == {"X"}:
            _tighten(atom, ctx, lower, upper)
        elif kinds == {"Y"}:
            halfspaces.update(dict.fromkeys(_halfspaces(atom, n_out)))
        else:
            raise ctx.error("not supported: a constraint mixing inputs (X) and outputs (Y)", atom)
    if any(lo and hi and _empty(lo, hi) for lo, hi in zip(lower, upper, strict=True)):
        return None
    for i, (lo, hi) in enumerate(zip(lower, upper, strict=True)):
        if lo is None or hi is None:
            side = "lower" if lo is None else "upper"
            raise ctx.error(
                f"input X_{i} has no {side} bound (inputs must lie in a bounded box)",
                ctx.declared[("X", i)],
            )
    lows = tuple(lo.value for lo in lower)  # type: ignore[union-attr]
    highs = tuple(hi.value for hi in upper)  # type: ignore[union-attr]
    strict_lows = tuple(lo.strict for lo in lower)  # type: ignore[union-attr]
    strict_highs = tuple(hi.strict for hi in upper)  # type: ignore[union-attr]
    if not any(strict_lows) and not any(strict_highs):
        strict_lows = strict_highs = ()
    return (lows, highs, strict_lows, strict_highs), Conjunction(tuple(halfspaces))


def _constant_holds(atom: _Atom) -> bool:
    value = atom.expr.const
    return value < 0 if atom.op == "<" else value <= 0 if atom.op == "<=" else value == 0


def _tighten(
    atom: _Atom, ctx: _Context, lower: list[_Bound | None], upper: list[_Bound | None]
) -> None:
    if len(atom.expr.coeffs) != 1:
        names = ", ".join(f"X_{i}" for _, i in sorted(atom.expr.coeffs))
        raise ctx.error(
            f"not supported: an input constraint over several variables ({names}); "
            f"only bounds on single inputs are allowed",
            atom,
        )
    (((_, index), coeff),) = atom.expr.coeffs.items()
    const = atom.expr.const  # ±1 coefficients (the common case) need no Fraction division
    value = -const if coeff == 1 else const if coeff == -1 else -const / coeff
    new = _Bound(value, atom.op == "<")
    # coeff * x + const op 0: an upper bound on x when coeff > 0, a lower bound otherwise.
    if atom.op == "=" or coeff > 0:
        old = upper[index]
        upper[index] = new if old is None or new.value < old.value else _merge(old, new)
    if atom.op == "=" or coeff < 0:
        old = lower[index]
        lower[index] = new if old is None or new.value > old.value else _merge(old, new)


def _merge(old: _Bound, new: _Bound) -> _Bound:
    """The tighter of two bounds when ``new`` is not strictly tighter than ``old``."""
    if new.value == old.value:
        return _Bound(old.value, old.strict or new.strict)
    return old


def _empty(lo: _Bound, hi: _Bound) -> bool:
    return lo.value > hi.value or (lo.value == hi.value and (lo.strict or hi.strict))


def _halfspaces(atom: _Atom, n_out: int) -> list[HalfSpace]:
    """``a.y + c op 0`` as unsafe-side half-spaces ``a.y <= -c`` (two for ``=``)."""
    coeffs = tuple(atom.expr.coeffs.get(("Y", j), Fraction(0)) for j in range(n_out))
    rhs = -atom.expr.const
    if atom.op == "=":
        return [HalfSpace(coeffs, rhs), HalfSpace(tuple(-c for c in coeffs), -rhs)]
    return [HalfSpace(coeffs, rhs, strict=atom.op == "<")]


# --- Property to text ------------------------------------------------------------------------


def to_vnnlib(prop: Property) -> str:
    """VNN-LIB text whose parse has the same cases as ``prop`` (exact numbers)."""
    lines = [f"(declare-const X_{i} Real)" for i in range(prop.n_inputs)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(prop.n_outputs)]
    if len(prop.cases) == 1 and len(prop.cases[0].unsafe) == 1:
        case = prop.cases[0]
        lines += [f"(assert {atom})" for atom in _box_atoms(case)]
        lines += [f"(assert {_halfspace_text(h)})" for h in case.unsafe[0].halfspaces]
    elif len(prop.cases) == 1:
        case = prop.cases[0]
        lines += [f"(assert {atom})" for atom in _box_atoms(case)]
        lines.append("(assert (or")
        lines += [f"    (and {_conjunction_text(c)})" for c in case.unsafe]
        lines.append("))")
    else:
        lines.append("(assert (or")
        for case in prop.cases:
            box = " ".join(_box_atoms(case))
            lines += [f"    (and {box} {_conjunction_text(c)})" for c in case.unsafe]
        lines.append("))")
    return "\n".join(lines) + "\n"


def _box_atoms(case: Case) -> list[str]:
    atoms: list[str] = []
    for i, (lo, hi) in enumerate(zip(case.lower_exact, case.upper_exact, strict=True)):
        strict_lo, strict_hi = case.strict_at(i)
        atoms += [
            f"({'>' if strict_lo else '>='} X_{i} {_number(lo)})",
            f"({'<' if strict_hi else '<='} X_{i} {_number(hi)})",
        ]
    return atoms


def _conjunction_text(conjunction: Conjunction) -> str:
    return " ".join(_halfspace_text(h) for h in conjunction.halfspaces)


def _halfspace_text(h: HalfSpace) -> str:
    terms = [f"Y_{j}" if c == 1 else f"(* {_number(c)} Y_{j})" for j, c in enumerate(h.coeffs) if c]
    lhs = "0" if not terms else terms[0] if len(terms) == 1 else f"(+ {' '.join(terms)})"
    return f"({'<' if h.strict else '<='} {lhs} {_number(h.rhs)})"


def _number(value: Fraction) -> str:
    """An exact literal: a decimal when one exists, otherwise ``(/ p q)``."""
    denominator, twos, fives = value.denominator, 0, 0
    while denominator % 2 == 0:
        denominator, twos = denominator // 2, twos + 1
    while denominator % 5 == 0:
        denominator, fives = denominator // 5, fives + 1
    if denominator != 1:
        return f"(/ {value.numerator} {value.denominator})"
    digits = max(twos, fives)
    scaled = abs(value.numerator) * 10**digits // value.denominator
    sign = "-" if value < 0 else ""
    if digits == 0:
        return f"{sign}{scaled}"
    whole, frac = divmod(scaled, 10**digits)
    return f"{sign}{whole}.{frac:0{digits}d}"
