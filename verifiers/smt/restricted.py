"""Exact z3 query for one small region, with its stable ReLUs eliminated.

z3 gets only the inputs, one variable per unstable ReLU and the outputs of the restricted
network (model/restricted.py): a query of a few dozen variables instead of one per neuron.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import z3

from verifiers.model.network import PiecewiseLinearNetwork
from verifiers.model.restricted import restrict
from verifiers.smt.encode_property import box_constraints, unsafe_constraint
from verifiers.smt.query import BoxAnswer
from verifiers.smt.solver import SatOutcome, check, make_solver, model_value, rational
from verifiers.spec.property import Conjunction, round_down, round_up


def _affine_term(coeffs: np.ndarray, variables: Sequence[z3.ArithRef], const: float) -> z3.ArithRef:
    terms = [rational(c) * v for c, v in zip(coeffs, variables, strict=False) if c != 0.0]
    terms.append(rational(const))
    return z3.Sum(terms)


def _finite(unstable, output) -> bool:
    numbers = [output.coeffs, output.const, output.err]
    numbers += [np.array([u.const, u.err, u.lower, u.upper, u.alpha]) for u in unstable]
    numbers += [u.coeffs for u in unstable]
    return all(bool(np.all(np.isfinite(n))) for n in numbers)


def decide_region(
    network: PiecewiseLinearNetwork,
    lower_exact: Sequence[Fraction],
    upper_exact: Sequence[Fraction],
    layer_bounds: Sequence[tuple[np.ndarray, np.ndarray]],
    unsafe: Sequence[Conjunction],
    timeout_s: float,
    seed: int = 0,
    margin: float = 0.0,
    keep: Sequence[np.ndarray] | None = None,
    strict: Sequence[tuple[bool, bool]] | None = None,
) -> BoxAnswer:
    """unsat: no input of the region is unsafe. `layer_bounds` must be sound on the region;
    a region narrowed by ReLU phases must list those ReLUs in `keep` (see restrict).
    `strict`: per input, whether its (lower, upper) bound is strict (a property's open box)."""
    lower = np.array([round_down(v) for v in lower_exact])
    upper = np.array([round_up(v) for v in upper_exact])
    unstable, output = restrict(network, lower, upper, layer_bounds, keep)
    if not _finite(unstable, output):
        # An overflowed composition or bound: its error terms bound nothing, so the query
        # would not be a sound relaxation of the region.
        return BoxAnswer(SatOutcome.UNKNOWN, reason="bounds overflow the float64 range")
    solver = make_solver(timeout_s, seed)
    inputs = [z3.Real(f"X_{i}") for i in range(lower.size)]
    solver.add(box_constraints(inputs, lower_exact, upper_exact, strict))
    variables = list(inputs)
    for k, relu in enumerate(unstable):
        pre, post = z3.Real(f"p_{k}"), z3.Real(f"r_{k}")
        term = _affine_term(relu.coeffs[: len(variables)], variables, relu.const)
        slack = rational(relu.err)
        solver.add(pre >= term - slack, pre <= term + slack)
        solver.add(pre >= rational(relu.lower), pre <= rational(relu.upper))
        alpha = rational(relu.alpha)
        solver.add(z3.Or(z3.And(pre >= 0, post == pre), z3.And(pre <= 0, post == alpha * pre)))
        solver.add(post >= pre, post >= alpha * pre)
        variables.append(post)
    outputs = []
    for j in range(len(output.const)):
        y = z3.Real(f"Y_{j}")
        term = _affine_term(output.coeffs[j], variables, float(output.const[j]))
        slack = rational(float(output.err[j]))
        solver.add(y >= term - slack, y <= term + slack)
        outputs.append(y)
    solver.add(unsafe_constraint(unsafe, outputs, margin))
    outcome, reason = check(solver)
    if outcome is SatOutcome.SAT:
        model = solver.model()
        return BoxAnswer(outcome, [model_value(model, x) for x in inputs])
    if outcome is SatOutcome.UNSAT:
        return BoxAnswer(outcome, reason=reason, query=solver.to_smt2())
    return BoxAnswer(outcome, reason=reason)
