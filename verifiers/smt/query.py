"""Deciding one input box exactly with z3, and exporting that query as SMT-LIB2."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import z3

from verifiers.model.network import PiecewiseLinearNetwork
from verifiers.smt.encode_network import Bounds, encode_network
from verifiers.smt.encode_property import box_constraints, unsafe_constraint
from verifiers.smt.solver import SatOutcome, check, make_solver, model_value
from verifiers.spec.property import Conjunction


@dataclass(frozen=True)
class BoxQuery:
    network: PiecewiseLinearNetwork
    lower: Sequence[Fraction]
    upper: Sequence[Fraction]
    unsafe: Sequence[Conjunction]
    bounds: Bounds | None = None
    margin: float = 0.0


@dataclass(frozen=True)
class BoxAnswer:
    outcome: SatOutcome
    inputs: list[Fraction] | None = None
    reason: str = ""
    # For unsat: the query as SMT-LIB2, kept in the certificate for audit.
    query: str = ""


def build_solver(query: BoxQuery, timeout_s: float, seed: int) -> tuple[z3.Solver, list]:
    solver = make_solver(timeout_s, seed)
    inputs = [z3.Real(f"X_{i}") for i in range(len(query.lower))]
    solver.add(box_constraints(inputs, query.lower, query.upper))
    box = (
        np.array([float(v) for v in query.lower]),
        np.array([float(v) for v in query.upper]),
    )
    outputs = encode_network(
        query.network, inputs, solver, prefix="h", bounds=query.bounds, input_box=box
    )
    for j, y in enumerate(outputs):
        solver.add(z3.Real(f"Y_{j}") == y)
    solver.add(unsafe_constraint(query.unsafe, outputs, query.margin))
    return solver, inputs


def decide_box(query: BoxQuery, timeout_s: float, seed: int = 0) -> BoxAnswer:
    """unsat: no input of the box is unsafe (a proof); sat: an exact rational witness."""
    solver, inputs = build_solver(query, timeout_s, seed)
    outcome, reason = check(solver)
    if outcome is SatOutcome.SAT:
        model = solver.model()
        return BoxAnswer(outcome, [model_value(model, x) for x in inputs])
    return BoxAnswer(outcome, reason=reason)


def to_smtlib(query: BoxQuery) -> str:
    """The query as an SMT-LIB2 script, for replay in another solver."""
    solver, _ = build_solver(query, timeout_s=0, seed=0)
    return solver.to_smt2()
