"""Closed-loop systems: components wired by signal name, a feedback loop unrolled K steps.

SYSTEM.json (see docs/modules.md):

    {"components": {"controller": {"onnx": "controller.onnx"},
                    "plant": {"module": "plant.py", "function": "step"}},
     "state": {"dist": [40, 50], "speed": [8, 10]},      # initial box of the fed-back signals
     "inputs": {"wind": [-0.1, 0.1]},                     # fresh every step (optional)
     "wiring": [{"component": "controller", "inputs": ["speed", "dist"], "outputs": ["u"]},
                {"component": "plant", "inputs": ["dist", "speed", "u"],
                 "outputs": ["dist", "speed"]}],
     "steps": 20,
     "invariant": ["dist >= 0"],        # over the state, at steps 0..K
     "ensures": ["u <= 1"]}             # over every signal of a step, at steps 1..K (optional)

Each step runs the wiring in order; a component's outputs become signals, and the state
signals it overwrites are the next state. The check is bounded model checking (bmc.py's
scheme); a violation is replayed exactly, and again with onnxruntime driving the network
parts, whose outputs are recorded in the trace.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import z3

from verifiers.errors import SpecError
from verifiers.options import Options
from verifiers.result import Counterexample, Result, Stats, Verdict
from verifiers.smt.solver import SatOutcome, make_solver, model_value, refute
from verifiers.spec.property import round_down, round_up
from verifiers.symbolic import evaluate, ir, spec
from verifiers.symbolic.components import Component, ModuleComponent, load_component
from verifiers.symbolic.ir import Scalar

SYSTEM_KEYS = {
    "kind",
    "components",
    "state",
    "inputs",
    "wiring",
    "steps",
    "invariant",
    "ensures",
    "description",
}
MAX_STEPS = 200


@dataclass(frozen=True)
class Wire:
    component: Component
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class System:
    components: dict[str, Component]
    state: dict[str, spec.Interval]
    inputs: dict[str, spec.Interval]
    wiring: tuple[Wire, ...]
    steps: int
    invariant: list[tuple[str, ir.Expr]]
    ensures: list[tuple[str, ir.Expr]]


def parse_system(raw: Mapping[str, Any], base_dir: Path) -> System:
    spec.require_keys(raw, SYSTEM_KEYS, {"components", "state", "wiring", "steps"})
    comps_raw = raw["components"]
    if not isinstance(comps_raw, Mapping) or not comps_raw:
        raise SpecError("expected an object naming the components", field="components")
    components = {
        str(n): load_component(str(n), c, base_dir, f"components.{n}") for n, c in comps_raw.items()
    }
    state = _intervals(raw["state"], "state")
    inputs = _intervals(raw.get("inputs", {}), "inputs")
    if state.keys() & inputs.keys():
        raise SpecError("a name is both a state and an input", field="inputs")
    wiring, signals = _wiring(raw["wiring"], components, set(state) | set(inputs))
    steps = raw["steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise SpecError(f"expected an integer from 1 to {MAX_STEPS}", field="steps")
    empty = ir.Module({})
    invariant = spec.expressions(
        raw.get("invariant"), dict.fromkeys(state, Scalar.REAL), empty, "invariant"
    )
    ensures = spec.expressions(
        raw.get("ensures"), dict.fromkeys(signals, Scalar.REAL), empty, "ensures"
    )
    if not invariant and not ensures:
        raise SpecError("give an invariant or ensures", field="invariant")
    return System(components, state, inputs, wiring, steps, invariant, ensures)


def _intervals(raw: object, field: str) -> dict[str, spec.Interval]:
    if not isinstance(raw, Mapping):
        raise SpecError("expected an object mapping names to [lower, upper]", field=field)
    return {str(n): spec.domain(v, Scalar.REAL, f"{field}.{n}") for n, v in raw.items()}


def _wiring(raw: object, components: dict[str, Component], known: set[str]):
    if not isinstance(raw, list) or not raw:
        raise SpecError("expected a list of component calls", field="wiring")
    wires, signals = [], set(known)
    for i, item in enumerate(raw):
        where = f"wiring[{i}]"
        if not isinstance(item, Mapping) or item.get("component") not in components:
            raise SpecError(f"name a component: {', '.join(components)}", field=where)
        comp = components[item["component"]]
        ins, outs = item.get("inputs"), item.get("outputs")
        if not isinstance(ins, list) or not all(isinstance(n, str) for n in ins):
            raise SpecError("expected a list of signal names", field=f"{where}.inputs")
        if not isinstance(outs, list) or not all(isinstance(n, str) for n in outs):
            raise SpecError("expected a list of signal names", field=f"{where}.outputs")
        for name in ins:
            if name not in signals:
                raise SpecError(f"signal '{name}' is not defined yet", field=f"{where}.inputs")
        if len(ins) != comp.n_inputs or len(outs) != comp.n_outputs:
            raise SpecError(
                f"'{comp.name}' takes {comp.n_inputs} inputs and gives {comp.n_outputs} outputs",
                field=where,
            )
        signals |= set(outs)
        wires.append(Wire(comp, tuple(ins), tuple(outs)))
    return tuple(wires), signals


def verify_closed_loop(raw: Mapping[str, Any], options: Options, *, base_dir: Path) -> Result:
    system = parse_system(raw, base_dir)
    start = time.monotonic()
    deadline = start + options.timeout_s if options.timeout_s > 0 else None
    nonlinear = any(
        isinstance(c, ModuleComponent) and not c.module.is_linear(c.function.name)
        for c in system.components.values()
    )
    solver = make_solver(options.timeout_s, options.seed, logic=None if nonlinear else "QF_LRA")
    state = {n: z3.Real(f"s0_{n}") for n in system.state}
    for n, dom in system.state.items():
        solver.add(*spec.domain_constraint(state[n], dom))
    variables: dict[str, Any] = {"init": state, "inputs": []}
    # Sound boxes of the state, stepped with interval arithmetic (None once unknown).
    boxes: Any = {n: (d.lo, d.hi) for n, d in system.state.items()}
    signals: dict[str, Any] = {}
    for k in range(system.steps + 1):
        checks = [_expr(e, state) for _, e in system.invariant]
        if k > 0:
            checks += [_expr(e, signals) for _, e in system.ensures]
        if checks:
            outcome, reason, model = refute(solver, checks, deadline)
            if outcome == SatOutcome.SAT:
                return _violation(system, model, variables, start, k)
            if outcome == SatOutcome.UNKNOWN:
                return _unknown(system, k, start, reason)
            solver.add(*checks)
        if k == system.steps:
            break
        exo = {n: z3.Real(f"u{k}_{n}") for n in system.inputs}
        for n, dom in system.inputs.items():
            solver.add(*spec.domain_constraint(exo[n], dom))
        variables["inputs"].append(exo)
        signals = state | exo
        boxes = _step_boxes(system, boxes) if boxes is not None else None
        for w, wire in enumerate(system.wiring):
            args = [signals[n] for n in wire.inputs]
            box = boxes[w] if boxes is not None else None
            terms = wire.component.terms(args, solver, f"k{k}_w{w}", box)
            for name, term in zip(wire.outputs, terms, strict=True):
                fresh = z3.Real(f"k{k}_w{w}_{name}")
                solver.add(fresh == term)
                signals[name] = fresh
        state = {n: signals[n] for n in system.state}
        boxes = boxes["next"] if boxes is not None else None
    stats = Stats(time.monotonic() - start, "bmc (system)", system.steps + 1, 1.0)
    return Result(Verdict.HOLDS, stats, certificate={"method": "bmc", "steps": system.steps})


def _step_boxes(system: System, state_boxes: Any) -> Any:
    """Per wire, the (lower, upper) float box of its inputs for this step, then the next
    state's boxes under key "next"; None when a component cannot be bounded."""
    signals = dict(state_boxes) | {n: (d.lo, d.hi) for n, d in system.inputs.items()}
    per_wire: dict[Any, Any] = {}
    for w, wire in enumerate(system.wiring):
        args = [signals[n] for n in wire.inputs]
        per_wire[w] = ([round_down(a[0]) for a in args], [round_up(a[1]) for a in args])
        outs = wire.component.output_box(args, per_wire[w])
        if outs is None:
            return None
        signals.update(zip(wire.outputs, outs, strict=True))
    per_wire["next"] = {n: signals[n] for n in system.state}
    return per_wire


def _expr(expr: ir.Expr, env: dict[str, Any]) -> Any:
    from verifiers.symbolic import to_z3

    return to_z3.expression(ir.Module({}), expr, env)


def _unknown(system: System, k: int, start: float, reason: str) -> Result:
    stats = Stats(time.monotonic() - start, "bmc (system)", k + 1, k / (system.steps + 1))
    proved = f"; the property is proved for steps 0..{k - 1}" if k else ""
    return Result(
        Verdict.UNKNOWN, stats, reason=f"z3 returned unknown ({reason}) at step {k}{proved}"
    )


def _violation(system: System, model: z3.ModelRef, variables: dict, start: float, k: int) -> Result:
    init = {n: model_value(model, t) for n, t in variables["init"].items()}
    steps = [{n: model_value(model, t) for n, t in u.items()} for u in variables["inputs"]]
    stats = Stats(time.monotonic() - start, "bmc (system)", k + 1, k / (system.steps + 1))
    rounded = (
        {n: Fraction(float(v)) for n, v in init.items()},
        [{n: Fraction(float(v)) for n, v in s.items()} for s in steps],
    )
    for candidate in (rounded, (init, steps)):
        cex = replay(system, *candidate)
        if cex is not None:
            return Result(Verdict.VIOLATED, stats, counterexample=cex)
    return Result(
        Verdict.UNKNOWN, stats, reason=f"a candidate violation at step {k} did not replay exactly"
    )


def _run_step(system: System, signals: dict[str, Any], ort: bool) -> dict[str, dict]:
    """Run the wiring once, in place; returns each network's outputs by wire."""
    recorded = {}
    for w, wire in enumerate(system.wiring):
        args = [signals[n] for n in wire.inputs]
        if ort and hasattr(wire.component, "run_onnxruntime"):
            outs = [Fraction(v) for v in wire.component.run_onnxruntime(args)]
        else:
            outs = wire.component.evaluate(args)
        if hasattr(wire.component, "run_onnxruntime"):
            recorded[f"{w}:{wire.component.name}"] = [float(v) for v in outs]
        signals.update(zip(wire.outputs, outs, strict=True))
    return recorded


def replay(system: System, init: dict[str, Fraction], steps: list[dict[str, Fraction]]):
    """Replay exactly; a Counterexample if the trace breaks the property, else None.

    The same trace is run again with onnxruntime computing the network outputs (float32) and
    the modules exact; that run is recorded (per step, and its final state as
    `onnxruntime_outputs`), not required to fail.
    """
    if not all(system.state[n].contains(v) for n, v in init.items()):
        return None
    if not all(system.inputs[n].contains(v) for s in steps for n, v in s.items()):
        return None
    trace, state, violation = _trace(system, init, steps, ort=False)
    if violation is None:
        return None
    k, (_, expr, env) = violation
    deployed_trace, deployed_state, _ = _trace(system, init, steps[:k], ort=True)
    for entry, ort_entry in zip(trace, deployed_trace, strict=False):
        if "networks" in ort_entry:
            entry["onnxruntime"] = ort_entry["networks"]
            entry["onnxruntime_state"] = ort_entry["state"]
    inputs = [float(v) for v in init.values()] + [float(v) for s in steps[:k] for v in s.values()]
    return Counterexample(
        inputs=inputs,
        outputs=[float(v) for v in state.values()],
        onnxruntime_outputs=[float(v) for v in deployed_state.values()],
        margin=spec.violation_margin(expr, ir.Module({}), env),
        trace=trace[: k + 1],
    )


def _failed(
    props: list[tuple[str, ir.Expr]], env: dict[str, Any]
) -> list[tuple[str, ir.Expr, dict]]:
    return [(t, e, env) for t, e in props if not evaluate.expression(ir.Module({}), e, env)]


def _trace(system: System, init: dict, steps: list[dict], *, ort: bool):
    """Run the loop; (trace, last state, (step, first failure) or None)."""
    state, trace = dict(init), []
    signals: dict[str, Any] = {}
    for k in range(len(steps) + 1):
        entry: dict[str, Any] = {
            "step": k,
            "state": {n: spec.json_value(v) for n, v in state.items()},
        }
        trace.append(entry)
        failed = _failed(system.invariant, state) + (_failed(system.ensures, signals) if k else [])
        if failed:
            entry["failed"] = [t for t, _, _ in failed]
            return trace, state, (k, failed[0])
        if k == len(steps):
            return trace, state, None
        entry["inputs"] = {n: spec.json_value(v) for n, v in steps[k].items()}
        signals = state | steps[k]
        entry["networks"] = _run_step(system, signals, ort)
        entry["signals"] = {n: float(v) for n, v in signals.items()}
        state = {n: signals[n] for n in system.state}
    raise AssertionError("unreachable")
