"""VNN-LIB properties over a module function: X_i are its (flattened, Real) parameters, Y_i
its (flattened) result. Spec: {"function": "f", "vnnlib": "<text>"}. The VNN-LIB assertions
describe the unsafe set: `holds` when no input of a case's box reaches its unsafe outputs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import z3

from verifiers.errors import SpecError
from verifiers.options import Options
from verifiers.result import Counterexample, Result, Stats, Verdict
from verifiers.smt.encode_property import box_constraints
from verifiers.smt.solver import SatOutcome, check, rational
from verifiers.spec.vnnlib import parse_vnnlib
from verifiers.symbolic import evaluate, ir, spec, to_z3
from verifiers.symbolic.ir import Scalar


def verify_vnnlib(module: ir.Module, raw: Mapping[str, Any], options: Options) -> Result:
    spec.require_keys(raw, {"function", "vnnlib", "description"}, {"function", "vnnlib"})
    fn = module.function(raw["function"]) if isinstance(raw["function"], str) else None
    if fn is None:
        raise SpecError(f"no function {raw['function']!r} in the module", field="function")
    if any(p.type != Scalar.REAL for p in fn.params):
        raise SpecError("VNN-LIB needs Real parameters (X_i)", field="function")
    if not isinstance(raw["vnnlib"], str):
        raise SpecError("expected VNN-LIB text", field="vnnlib")
    n_out = len(ir.flatten_type(fn.return_type))
    prop = parse_vnnlib(raw["vnnlib"], n_inputs=len(fn.params), n_outputs=n_out)
    start = time.monotonic()
    xs = [z3.Real(f"X_{i}") for i in range(len(fn.params))]
    result = to_z3.call(module, fn.name, xs)
    ys = [
        z3.ToReal(t) if z3.is_int(t) else t
        for t in (result if isinstance(result, tuple) else (result,))
    ]
    solver = to_z3.solver_for(module, [fn.name], options.timeout_s, options.seed)
    cases = []
    for case in prop.cases:
        box = box_constraints(
            xs,
            case.lower_exact,
            case.upper_exact,
            [case.strict_at(i) for i in range(len(xs))],
        )
        unsafe = [
            z3.And(
                [
                    (
                        z3.Sum([rational(c) * y for c, y in zip(h.coeffs, ys, strict=True)])
                        < rational(h.rhs)
                    )
                    if h.strict
                    else (
                        z3.Sum([rational(c) * y for c, y in zip(h.coeffs, ys, strict=True)])
                        <= rational(h.rhs)
                    )
                    for h in conj.halfspaces
                ]
            )
            for conj in case.unsafe
        ]
        cases.append(z3.And(z3.And(box), z3.Or(unsafe)))
    solver.add(z3.Or(cases))
    outcome, reason = check(solver)
    stats = Stats(time.monotonic() - start, "z3", 1, 1.0 if outcome == SatOutcome.UNSAT else 0.0)
    if outcome == SatOutcome.UNSAT:
        return Result(Verdict.HOLDS, stats, certificate={"method": "z3", "function": fn.name})
    if outcome == SatOutcome.UNKNOWN:
        return Result(Verdict.UNKNOWN, stats, reason=f"z3 returned unknown: {reason}")
    model = solver.model()
    point = [to_z3.model_value(model, x, Scalar.REAL) for x in xs]
    if all(v is not None for v in point):
        for candidate in ([Fraction(float(v)) for v in point], point):
            out = evaluate.call(module, fn.name, candidate)
            flat = [Fraction(v) for v in (out if isinstance(out, tuple) else (out,))]
            if _exactly_violated(prop, candidate, flat):
                return Result(
                    Verdict.VIOLATED,
                    stats,
                    counterexample=Counterexample(
                        [float(v) for v in candidate],
                        [float(v) for v in flat],
                        None,
                        0.0,
                        [
                            {
                                "inputs": [spec.json_value(v) for v in candidate],
                                "outputs": [spec.json_value(v) for v in flat],
                            }
                        ],
                    ),
                )
    return Result(Verdict.UNKNOWN, stats, reason="a candidate violation did not replay exactly")


def _exactly_violated(prop: Any, x: list[Fraction], y: list[Fraction]) -> bool:
    """x lies in some case's input set (strict bounds strictly) and y in its unsafe set."""
    return any(
        case.contains_fractions(x) and any(conj.holds_for(y) for conj in case.unsafe)
        for case in prop.cases
    )
