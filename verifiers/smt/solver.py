"""The one place z3 solvers are made: seeds, time limits and `unknown` as a typed outcome."""

from __future__ import annotations

import logging
import time
from fractions import Fraction

import z3

from verifiers.smt.outcome import SatOutcome  # defined apart so that it imports without z3

log = logging.getLogger(__name__)


def make_solver(timeout_s: float, seed: int = 0, logic: str | None = "QF_LRA") -> z3.Solver:
    """A solver, by default for linear real arithmetic with ReLU case splits.

    The time limit is per `check` call (0: none); the seed makes runs repeatable, which
    matters when a CI gate re-runs an unchanged model and expects the same answer. Pass
    `logic=None` for mixed or non-linear queries (symbolic modules).
    """
    solver = z3.SolverFor(logic) if logic else z3.Solver()
    if timeout_s > 0:
        solver.set("timeout", max(1, int(timeout_s * 1000)))
    solver.set("random_seed", seed)
    return solver


def check(solver: z3.Solver) -> tuple[SatOutcome, str]:
    """Run the solver; return the outcome and, for unknown, z3's reason (e.g. timeout).

    Fails closed: anything but a definite sat or unsat, including z3 raising (a resource
    limit, memory exhausted, an interrupted check), is UNKNOWN with the reason."""
    try:
        answer = solver.check()
    except (z3.Z3Exception, MemoryError) as exc:
        log.debug("z3 failed: %s", exc)
        return SatOutcome.UNKNOWN, f"z3 failed: {exc}"
    if answer == z3.sat:
        return SatOutcome.SAT, ""
    if answer == z3.unsat:
        return SatOutcome.UNSAT, ""
    reason = solver.reason_unknown()
    log.debug("z3 returned unknown: %s", reason)
    return SatOutcome.UNKNOWN, reason


def refute(
    solver: z3.Solver, claims: list[z3.BoolRef], deadline: float | None
) -> tuple[SatOutcome, str, z3.ModelRef | None]:
    """Check whether the claims can fail under the solver's constraints, within `deadline`
    (time.monotonic(); None: no limit). SAT comes with the model of the failure; the solver
    is left as it was either way."""
    if deadline is not None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return SatOutcome.UNKNOWN, "timeout", None
        solver.set("timeout", max(1, int(remaining * 1000)))
    solver.push()
    try:
        solver.add(z3.Not(z3.And(claims)))
        outcome, reason = check(solver)
        return outcome, reason, solver.model() if outcome is SatOutcome.SAT else None
    finally:
        solver.pop()


def rational(value: float | Fraction | int) -> z3.RatNumRef:
    """The exact rational of a float (z3.RealVal(0.1) would read the decimal text instead)."""
    frac = value if isinstance(value, Fraction) else Fraction(float(value))
    return (
        z3.Q(frac.numerator, frac.denominator)
        if frac.denominator != 1
        else z3.RealVal(frac.numerator)
    )


def model_value(model: z3.ModelRef, term: z3.ArithRef) -> Fraction:
    """A model's value of a real term as an exact Fraction (0 if the model leaves it free)."""
    val = model.eval(term, model_completion=True)
    if z3.is_rational_value(val):
        return Fraction(val.numerator_as_long(), val.denominator_as_long())
    # Algebraic numbers cannot arise in linear arithmetic; approximate defensively.
    return Fraction(val.as_decimal(30).rstrip("?"))
