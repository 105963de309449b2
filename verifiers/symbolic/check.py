"""Checking a function's contract: inputs in a box, `requires` assumed, `ensures` proved.

`holds` comes only from z3 `unsat`; `violated` only from a z3 model that the exact evaluator
replays; anything else is `unknown` with the reason.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import z3

from verifiers.errors import SpecError
from verifiers.options import Options
from verifiers.result import Counterexample, Result, Stats, Verdict
from verifiers.smt.solver import SatOutcome, check
from verifiers.spec.property import round_down, round_up
from verifiers.symbolic import evaluate, ir, spec, to_z3
from verifiers.symbolic.ir import Scalar

# Up to this many real parameters, every down/up rounding of a z3 model is tried (2**n).
MAX_ROUNDED_REALS = 6
CONTRACT_KEYS = {"function", "inputs", "requires", "ensures", "description"}


@dataclass(frozen=True)
class Contract:
    function: ir.Function
    domains: dict[str, spec.Domain]
    requires: list[tuple[str, ir.Expr]]
    ensures: list[tuple[str, ir.Expr]]


def parse_contract(module: ir.Module, raw: Mapping[str, Any]) -> Contract:
    spec.require_keys(raw, CONTRACT_KEYS, {"function", "ensures"})
    name = raw["function"]
    fn = module.function(name) if isinstance(name, str) else None
    if fn is None:
        raise SpecError(f"no function {name!r} in the module", field="function")
    params = {p.name: p.type for p in fn.params}
    if "result" in params:
        raise SpecError("a parameter is named 'result', which ensures reserve", field="function")
    return Contract(
        fn,
        spec.domains(raw.get("inputs"), fn.params, "inputs"),
        spec.expressions(raw.get("requires"), params, module, "requires"),
        spec.expressions(raw["ensures"], params | {"result": fn.return_type}, module, "ensures"),
    )


def verify_contract(module: ir.Module, contract: Contract, options: Options) -> Result:
    start = time.monotonic()
    fn = contract.function
    args = {p.name: to_z3.variable(f"in_{p.name}", p.type) for p in fn.params}
    solver = to_z3.solver_for(module, [fn.name], options.timeout_s, options.seed)
    for name, dom in contract.domains.items():
        solver.add(*spec.domain_constraint(args[name], dom))
    env = dict(args)
    for _, expr in contract.requires:
        solver.add(to_z3.expression(module, expr, env))
    env["result"] = to_z3.call(module, fn.name, [args[p.name] for p in fn.params])
    solver.add(z3.Not(z3.And([to_z3.expression(module, e, env) for _, e in contract.ensures])))
    outcome, reason = check(solver)
    linear = module.is_linear(fn.name)
    method = "z3" if linear else "z3 (non-linear)"
    stats = Stats(time.monotonic() - start, method, 1, 1.0 if outcome == SatOutcome.UNSAT else 0.0)
    if outcome == SatOutcome.UNSAT:
        certificate = {
            "method": "z3",
            "function": fn.name,
            "linear": linear,
            "nonlinear_at": [str(loc) for f in module.reachable(fn.name) for loc in f.nonlinear],
        }
        return Result(Verdict.HOLDS, stats, certificate=certificate)
    if outcome == SatOutcome.UNKNOWN:
        return Result(Verdict.UNKNOWN, stats, reason=f"z3 returned unknown: {reason}")
    model = solver.model()
    point = {p.name: to_z3.model_value(model, args[p.name], p.type) for p in fn.params}
    cex = replay(module, contract, point)
    if cex is None:
        return Result(
            Verdict.UNKNOWN,
            stats,
            reason="z3 found a candidate violation that does not replay exactly "
            "(irrational coordinates in a non-linear module)",
        )
    return Result(Verdict.VIOLATED, stats, counterexample=cex)


def violation(module: ir.Module, contract: Contract, point: dict[str, Any]) -> Any:
    """The exact result and failed ensures at `point` if it violates the contract, else None."""
    if any(v is None for v in point.values()):
        return None
    if not all(spec.in_domain(point[n], d) for n, d in contract.domains.items()):
        return None
    if not all(evaluate.expression(module, e, point) for _, e in contract.requires):
        return None
    fn = contract.function
    result = evaluate.call(module, fn.name, [point[p.name] for p in fn.params])
    env = point | {"result": result}
    failed = [(t, e) for t, e in contract.ensures if not evaluate.expression(module, e, env)]
    return (result, failed, env) if failed else None


def replay(module: ir.Module, contract: Contract, point: dict[str, Any]) -> Counterexample | None:
    """Replay a candidate exactly, preferring nearby float inputs so the JSON is exact too."""
    fn = contract.function
    if any(v is None for v in point.values()):
        return None
    for candidate in (*_float_candidates(point, fn.params), point):
        found = violation(module, contract, candidate)
        if found is not None:
            result, failed, env = found
            text, expr = failed[0]
            return Counterexample(
                inputs=[f for p in fn.params for f in spec.flat_floats(candidate[p.name])],
                outputs=spec.flat_floats(result),
                onnxruntime_outputs=None,
                margin=spec.violation_margin(expr, module, env),
                trace=[
                    {
                        "inputs": {n: spec.json_value(v) for n, v in candidate.items()},
                        "result": spec.json_value(result),
                        "failed": [t for t, _ in failed],
                    }
                ],
            )
    return None


def _float_candidates(point: dict[str, Any], params) -> list[dict[str, Any]]:
    """Float points near a rational one: the nearest first, then (for a few real
    parameters) every choice of rounding each down or up. A z3 model on a `requires`
    boundary (x + y == 4 exactly) often leaves it when both coordinates round to nearest."""
    nearest = {p.name: _to_float_value(point[p.name], p.type) for p in params}
    reals = [p.name for p in params if p.type == Scalar.REAL]
    if len(reals) > MAX_ROUNDED_REALS:
        return [nearest]
    choices = itertools.product((round_down, round_up), repeat=len(reals))
    return [nearest] + [
        nearest | {n: Fraction(r(point[n])) for n, r in zip(reals, choice, strict=True)}
        for choice in choices
    ]


def _to_float_value(value: Any, ty: ir.Type) -> Any:
    if isinstance(ty, ir.TupleType):
        return tuple(_to_float_value(v, t) for v, t in zip(value, ty.elems, strict=True))
    return Fraction(float(value)) if ty == Scalar.REAL else value
