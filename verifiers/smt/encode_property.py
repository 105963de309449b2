"""z3 encoding of a property case: the input box and the unsafe output set."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import z3

from verifiers.smt.solver import rational
from verifiers.spec.property import Conjunction, HalfSpace


def box_constraints(
    inputs: Sequence[z3.ArithRef],
    lower: Sequence[Fraction],
    upper: Sequence[Fraction],
    strict: Sequence[tuple[bool, bool]] | None = None,
) -> list[z3.BoolRef]:
    """The box, with the bounds `strict` marks (lower, upper) strict: a witness z3 finds
    then satisfies the property's strict input bounds as replay demands."""
    constraints = []
    for i, (x, lo, hi) in enumerate(zip(inputs, lower, upper, strict=True)):
        strict_lo, strict_hi = strict[i] if strict is not None else (False, False)
        constraints.append(x > rational(lo) if strict_lo else x >= rational(lo))
        constraints.append(x < rational(hi) if strict_hi else x <= rational(hi))
    return constraints


def halfspace_term(
    halfspace: HalfSpace, outputs: Sequence[z3.ArithRef], margin: Fraction
) -> z3.BoolRef:
    lhs = z3.Sum([rational(c) * y for c, y in zip(halfspace.coeffs, outputs, strict=True) if c])
    rhs = rational(halfspace.rhs + margin)
    return lhs < rhs if halfspace.strict else lhs <= rhs


def unsafe_constraint(
    unsafe: Sequence[Conjunction], outputs: Sequence[z3.ArithRef], margin: float = 0.0
) -> z3.BoolRef:
    """The DNF of the unsafe set; `margin` widens it so `holds` has room to spare."""
    slack = Fraction(margin)
    return z3.Or(
        [z3.And([halfspace_term(h, outputs, slack) for h in c.halfspaces]) for c in unsafe]
    )
