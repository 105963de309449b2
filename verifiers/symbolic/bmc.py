"""Bounded model checking of a stateful module `step(state..., inputs...) -> state`.

The state parameters are the ones named in `init`; the others are inputs, fresh at every
step. The invariant is checked at steps 0..K, one z3 query per step (so the shortest
violation is found), each proved step assumed afterwards (sound: it holds on every reachable
state there). A violation is a trace of states and inputs, replayed by the exact evaluator.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import z3

from verifiers.errors import SpecError
from verifiers.options import Options
from verifiers.result import Counterexample, Result, Stats, Verdict
from verifiers.smt.solver import SatOutcome, refute
from verifiers.symbolic import evaluate, ir, spec, to_z3
from verifiers.symbolic.ir import Scalar, TupleType

BMC_KEYS = {"step", "init", "inputs", "invariant", "steps", "requires", "description"}
MAX_STEPS = 1000


@dataclass(frozen=True)
class BmcProblem:
    function: ir.Function
    state: tuple[ir.Param, ...]
    inputs: tuple[ir.Param, ...]
    init: dict[str, spec.Domain]
    domains: dict[str, spec.Domain]
    invariant: list[tuple[str, ir.Expr]]
    requires: list[tuple[str, ir.Expr]]  # over state and inputs, at every step
    steps: int


def parse_bmc(module: ir.Module, raw: Mapping[str, Any]) -> BmcProblem:
    spec.require_keys(raw, BMC_KEYS, {"step", "init", "invariant", "steps"})
    fn = module.function(raw["step"]) if isinstance(raw["step"], str) else None
    if fn is None:
        raise SpecError(f"no function {raw['step']!r} in the module", field="step")
    init = spec.domains(raw["init"], fn.params, "init")
    if not init:
        raise SpecError("name the state parameters and their initial domains", field="init")
    state = tuple(p for p in fn.params if p.name in init)
    inputs = tuple(p for p in fn.params if p.name not in init)
    _check_return(fn, state)
    steps = raw["steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= MAX_STEPS:
        raise SpecError(f"expected an integer from 0 to {MAX_STEPS}", field="steps")
    state_types = {p.name: p.type for p in state}
    all_types = {p.name: p.type for p in fn.params}
    return BmcProblem(
        fn,
        state,
        inputs,
        init,
        spec.domains(raw.get("inputs"), inputs, "inputs"),
        spec.expressions(raw["invariant"], state_types, module, "invariant"),
        spec.expressions(raw.get("requires"), all_types, module, "requires"),
        steps,
    )


def _check_return(fn: ir.Function, state: tuple[ir.Param, ...]) -> None:
    if len(state) == 1:
        expected: ir.Type = state[0].type
    elif all(isinstance(p.type, Scalar) for p in state):
        expected = TupleType(tuple(p.type for p in state))  # type: ignore[misc]
    else:
        raise SpecError("with several state parameters, each must be a scalar", field="init")
    if not ir.assignable(fn.return_type, expected):
        names = ", ".join(p.name for p in state)
        raise SpecError(
            f"'{fn.name}' returns {fn.return_type} but the state ({names}) is {expected}",
            field="step",
        )


def _split(problem: BmcProblem, value: Any) -> dict[str, Any]:
    """The returned value as a state dict."""
    if len(problem.state) == 1:
        return {problem.state[0].name: value}
    return {p.name: v for p, v in zip(problem.state, value, strict=True)}


def verify_bmc(module: ir.Module, problem: BmcProblem, options: Options) -> Result:
    start = time.monotonic()
    deadline = start + options.timeout_s if options.timeout_s > 0 else None
    fn = problem.function
    solver = to_z3.solver_for(module, [fn.name], options.timeout_s, options.seed)
    states = [{p.name: to_z3.variable(f"s0_{p.name}", p.type) for p in problem.state}]
    inputs: list[dict[str, Any]] = []
    for name, dom in problem.init.items():
        solver.add(*spec.domain_constraint(states[0][name], dom))
    for k in range(problem.steps + 1):
        invariant = [to_z3.expression(module, e, states[k]) for _, e in problem.invariant]
        outcome, reason, model = refute(solver, invariant, deadline)
        if outcome == SatOutcome.SAT:
            return _violation(module, problem, model, states, inputs, start, k)
        if outcome == SatOutcome.UNKNOWN:
            return _unknown(problem, k, start, reason)
        solver.add(*invariant)
        if k == problem.steps:
            break
        step_inputs = {p.name: to_z3.variable(f"u{k}_{p.name}", p.type) for p in problem.inputs}
        for name, dom in problem.domains.items():
            solver.add(*spec.domain_constraint(step_inputs[name], dom))
        env = states[k] | step_inputs
        solver.add(*[to_z3.expression(module, e, env) for _, e in problem.requires])
        nxt = _split(problem, to_z3.call(module, fn.name, [env[p.name] for p in fn.params]))
        fresh = {p.name: to_z3.variable(f"s{k + 1}_{p.name}", p.type) for p in problem.state}
        for name, term in nxt.items():
            solver.add(_equal(fresh[name], term))
        states.append(fresh)
        inputs.append(step_inputs)
    stats = Stats(time.monotonic() - start, "bmc", problem.steps + 1, 1.0)
    certificate = {"method": "bmc", "steps": problem.steps, "function": fn.name}
    return Result(Verdict.HOLDS, stats, certificate=certificate)


def _equal(a: Any, b: Any) -> z3.BoolRef:
    if isinstance(a, tuple):
        return z3.And([_equal(x, y) for x, y in zip(a, b, strict=True)])
    return a == b


def _unknown(problem: BmcProblem, k: int, start: float, reason: str) -> Result:
    fraction = k / (problem.steps + 1)
    stats = Stats(time.monotonic() - start, "bmc", k + 1, fraction)
    return Result(
        Verdict.UNKNOWN,
        stats,
        reason=f"z3 returned unknown ({reason}) at step {k}; the invariant is proved for "
        f"steps 0..{k - 1}"
        if k
        else f"z3 returned unknown ({reason}) at step 0",
    )


def _violation(
    module: ir.Module,
    problem: BmcProblem,
    model: z3.ModelRef,
    states: list[dict[str, Any]],
    inputs: list[dict[str, Any]],
    start: float,
    k: int,
) -> Result:
    init = {p.name: to_z3.model_value(model, states[0][p.name], p.type) for p in problem.state}
    steps = [
        {p.name: to_z3.model_value(model, u[p.name], p.type) for p in problem.inputs}
        for u in inputs
    ]
    stats = Stats(time.monotonic() - start, "bmc", k + 1, k / (problem.steps + 1))
    for candidate in (_rounded(init, steps), (init, steps)):
        cex = replay(module, problem, *candidate)
        if cex is not None:
            return Result(Verdict.VIOLATED, stats, counterexample=cex)
    return Result(
        Verdict.UNKNOWN, stats, reason=f"a candidate violation at step {k} did not replay exactly"
    )


def _rounded(init: dict[str, Any], steps: list[dict[str, Any]]) -> tuple[dict, list]:
    def rnd(v: Any) -> Any:
        if isinstance(v, tuple):
            return tuple(rnd(x) for x in v)
        return Fraction(float(v)) if isinstance(v, Fraction) else v

    return {n: rnd(v) for n, v in init.items()}, [{n: rnd(v) for n, v in s.items()} for s in steps]


def replay(
    module: ir.Module, problem: BmcProblem, init: dict[str, Any], steps: list[dict[str, Any]]
) -> Counterexample | None:
    """Run the trace exactly; a Counterexample if it stays in the domains and breaks the
    invariant (at its last state), else None."""
    values = list(init.values()) + [v for s in steps for v in s.values()]
    if any(v is None for v in values):
        return None
    if not all(spec.in_domain(init[n], d) for n, d in problem.init.items()):
        return None
    state, trace = dict(init), []
    for k in range(len(steps) + 1):
        failed = [t for t, e in problem.invariant if not evaluate.expression(module, e, state)]
        entry: dict[str, Any] = {
            "step": k,
            "state": {n: spec.json_value(v) for n, v in state.items()},
        }
        trace.append(entry)
        if failed:
            entry["failed"] = failed
            if k != len(steps):
                return None  # the shortest violation is reported; an earlier one is a bug
            flat = [f for v in values for f in spec.flat_floats(v)]
            margin = spec.violation_margin(
                next(e for t, e in problem.invariant if t == failed[0]), module, state
            )
            outputs = [f for v in state.values() for f in spec.flat_floats(v)]
            return Counterexample(flat, outputs, None, margin, trace)
        if k == len(steps):
            return None
        u = steps[k]
        if not all(spec.in_domain(u[n], d) for n, d in problem.domains.items()):
            return None
        env = state | u
        if not all(evaluate.expression(module, e, env) for _, e in problem.requires):
            return None
        entry["inputs"] = {n: spec.json_value(v) for n, v in u.items()}
        fn = problem.function
        state = _split(problem, evaluate.call(module, fn.name, [env[p.name] for p in fn.params]))
    return None
