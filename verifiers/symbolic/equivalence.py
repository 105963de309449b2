"""Equivalence within epsilon: |f(x) - g(x)| <= eps for every output on a box.

f is an ONNX network; g is a module function or a second network. Dense sampling (exact)
finds a first deviation; z3 then decides `exists x, i: |f_i(x) - g_i(x)| > eps` (unsat:
`holds`). With the time left, the maximal deviation is pushed up by asking z3 for a larger
one until it answers unsat, which proves the deviation found is the maximum (to a relative
1e-3). The result's certificate reports `max_deviation` (attained at a replayed point) and,
when proved, `max_deviation_bound`.

SYSTEM.json: {"kind": "equivalence", "network": "net.onnx", "reference": {"module":
"ctrl.py", "function": "ctrl"} | {"onnx": "other.onnx"}, "box": [[lo, hi], ...], "epsilon": e}
"""

from __future__ import annotations

import random
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
from verifiers.smt.solver import SatOutcome, check, make_solver, model_value, rational
from verifiers.spec.property import round_down, round_up
from verifiers.symbolic import spec
from verifiers.symbolic.components import (
    Component,
    ModuleComponent,
    NetworkComponent,
    load_component,
)

EQUIVALENCE_KEYS = {"kind", "network", "reference", "box", "epsilon", "samples", "description"}
# Share of the time limit spent tightening the maximal deviation once the verdict is known.
IMPROVE_SHARE = 0.3
IMPROVE_ROUNDS = 12


@dataclass(frozen=True)
class Equivalence:
    network: NetworkComponent
    reference: Component
    box: list[spec.Interval]
    epsilon: Fraction
    samples: int


def parse_equivalence(raw: Mapping[str, Any], base_dir: Path) -> Equivalence:
    spec.require_keys(raw, EQUIVALENCE_KEYS, {"network", "reference", "box", "epsilon"})
    network = load_component("network", raw["network"], base_dir, "network")
    if not isinstance(network, NetworkComponent):
        raise SpecError("expected an ONNX network", field="network")
    reference = load_component("reference", raw["reference"], base_dir, "reference")
    if (reference.n_inputs, reference.n_outputs) != (network.n_inputs, network.n_outputs):
        raise SpecError(
            f"the network maps {network.n_inputs} inputs to {network.n_outputs} outputs, the "
            f"reference {reference.n_inputs} to {reference.n_outputs}",
            field="reference",
        )
    box_raw = raw["box"]
    if isinstance(box_raw, Mapping) and isinstance(reference, ModuleComponent):
        names = [p.name for p in reference.function.params]
        missing = [n for n in names if n not in box_raw]
        if missing or len(box_raw) != len(names):
            raise SpecError(f"give a range for each of {', '.join(names)}", field="box")
        box_raw = [box_raw[n] for n in names]
    if not isinstance(box_raw, list) or len(box_raw) != network.n_inputs:
        raise SpecError(f"expected {network.n_inputs} ranges [lower, upper]", field="box")
    box = [spec.domain(b, spec.Scalar.REAL, f"box[{i}]") for i, b in enumerate(box_raw)]
    epsilon = spec.number(raw["epsilon"], "epsilon")
    if epsilon < 0:
        raise SpecError("epsilon must be >= 0", field="epsilon")
    samples = raw.get("samples", 200)
    if isinstance(samples, bool) or not isinstance(samples, int) or not 0 <= samples <= 100_000:
        raise SpecError("expected an integer from 0 to 100000", field="samples")
    return Equivalence(network, reference, box, epsilon, samples)


def deviation(problem: Equivalence, x: list[Fraction]) -> tuple[Fraction, list, list]:
    """max_i |f_i(x) - g_i(x)| exactly, with both output vectors."""
    f, g = problem.network.evaluate(x), problem.reference.evaluate(x)
    return max(abs(a - b) for a, b in zip(f, g, strict=True)), f, g


def _sample_points(problem: Equivalence, seed: int) -> list[list[Fraction]]:
    rng = random.Random(seed)
    corners = [[b.lo for b in problem.box], [b.hi for b in problem.box]]
    mid = [[(b.lo + b.hi) / 2 for b in problem.box]]
    random_points = [
        [b.lo + (b.hi - b.lo) * Fraction(rng.randint(0, 1 << 20), 1 << 20) for b in problem.box]
        for _ in range(problem.samples)
    ]
    return corners + mid + random_points


def verify_equivalence(raw: Mapping[str, Any], options: Options, *, base_dir: Path) -> Result:
    problem = parse_equivalence(raw, base_dir)
    start = time.monotonic()
    best_x, best = None, Fraction(-1)
    for x in _sample_points(problem, options.seed):
        d = deviation(problem, x)[0]
        if d > best:
            best_x, best = x, d
    query = _Query(problem, options)
    subproblems = 1
    if best > problem.epsilon:
        outcome = SatOutcome.SAT
        reason = ""
    else:
        outcome, reason, found = query.exceeds(problem.epsilon)
        subproblems += 1
        if found is not None:
            best_x, best = found
    bound = problem.epsilon if outcome == SatOutcome.UNSAT else None
    if outcome != SatOutcome.UNKNOWN:
        improved = _improve(query, best_x, best, start, options)
        best_x, best = improved[0], improved[1]
        bound = improved[2] if improved[2] is not None else bound
        subproblems += improved[3]
    seconds = time.monotonic() - start
    certificate = {
        "method": "equivalence",
        "epsilon": float(problem.epsilon),
        "max_deviation": float(best),
        "max_deviation_at": [float(v) for v in best_x] if best_x else None,
        "max_deviation_bound": None if bound is None else float(bound),
    }
    if outcome == SatOutcome.UNKNOWN:
        stats = Stats(seconds, "equivalence (z3)", subproblems, 0.0)
        return Result(
            Verdict.UNKNOWN, stats, reason=f"z3 returned unknown: {reason}", certificate=certificate
        )
    if best > problem.epsilon:
        stats = Stats(seconds, "equivalence (z3)", subproblems, 0.0)
        return Result(
            Verdict.VIOLATED,
            stats,
            counterexample=_counterexample(problem, best_x),
            certificate=certificate,
        )
    if outcome == SatOutcome.SAT:  # a candidate that did not replay exactly
        stats = Stats(seconds, "equivalence (z3)", subproblems, 0.0)
        return Result(
            Verdict.UNKNOWN,
            stats,
            reason="a candidate did not replay exactly",
            certificate=certificate,
        )
    return Result(
        Verdict.HOLDS, Stats(seconds, "equivalence (z3)", subproblems, 1.0), certificate=certificate
    )


class _Query:
    """One solver holding f and g on the box; each question is a push/pop."""

    def __init__(self, problem: Equivalence, options: Options) -> None:
        self.problem = problem
        self.options = options
        self.start = time.monotonic()
        logic = "QF_LRA"
        if isinstance(problem.reference, ModuleComponent):
            module, name = problem.reference.module, problem.reference.function.name
            logic = "QF_LRA" if module.is_linear(name) else None
        self.solver = make_solver(options.timeout_s, options.seed, logic=logic)
        self.x = [z3.Real(f"x_{i}") for i in range(problem.network.n_inputs)]
        for v, b in zip(self.x, problem.box, strict=True):
            self.solver.add(v >= rational(b.lo), v <= rational(b.hi))
        box = ([round_down(b.lo) for b in problem.box], [round_up(b.hi) for b in problem.box])
        f = problem.network.terms(self.x, self.solver, "f", box)
        g = problem.reference.terms(self.x, self.solver, "g", box)
        self.diffs = [a - b for a, b in zip(f, g, strict=True)]

    def remaining(self) -> float:
        return self.options.timeout_s - (time.monotonic() - self.start)

    def exceeds(self, threshold: Fraction, budget: float | None = None):
        """Is some deviation > threshold? (outcome, reason, replayed (x, deviation) or None)."""
        seconds = self.remaining() if budget is None else min(budget, self.remaining())
        if self.options.timeout_s > 0:
            if seconds <= 0:
                return SatOutcome.UNKNOWN, "timeout", None
            self.solver.set("timeout", max(1, int(seconds * 1000)))
        t = rational(threshold)
        self.solver.push()
        self.solver.add(z3.Or([z3.Or(d > t, d < -t) for d in self.diffs]))
        outcome, reason = check(self.solver)
        found = None
        if outcome == SatOutcome.SAT:
            model = self.solver.model()
            exact = [model_value(model, v) for v in self.x]
            for x in ([Fraction(float(v)) for v in exact], exact):
                if all(b.contains(v) for b, v in zip(self.problem.box, x, strict=True)):
                    d = deviation(self.problem, x)[0]
                    if d > threshold:
                        found = (x, d)
                        break
        self.solver.pop()
        return outcome, reason, found


def _improve(query: _Query, best_x, best: Fraction, start: float, options: Options):
    """Push the maximal deviation up; returns (x, deviation, proved bound or None, queries)."""
    budget = options.timeout_s * IMPROVE_SHARE if options.timeout_s > 0 else None
    deadline = None if budget is None else time.monotonic() + budget
    rounds = 0
    for _ in range(IMPROVE_ROUNDS):
        threshold = best + best / 1000 if best > 0 else Fraction(1, 10**9)
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        outcome, _, found = query.exceeds(threshold, left)
        rounds += 1
        if outcome == SatOutcome.UNSAT:
            return best_x, best, threshold, rounds
        if found is None:
            break
        best_x, best = found
    return best_x, best, None, rounds


def _counterexample(problem: Equivalence, x: list[Fraction]) -> Counterexample:
    d, f, g = deviation(problem, x)
    ort = problem.network.run_onnxruntime(x)
    return Counterexample(
        inputs=[float(v) for v in x],
        outputs=[float(v) for v in f],
        onnxruntime_outputs=ort,
        margin=float(d - problem.epsilon),
        trace=[
            {
                "inputs": [spec.json_value(v) for v in x],
                "network": [spec.json_value(v) for v in f],
                "reference": [spec.json_value(v) for v in g],
                "deviation": spec.json_value(d),
                "onnxruntime_deviation": max(
                    abs(a - float(b)) for a, b in zip(ort, g, strict=True)
                ),
            }
        ],
    )
