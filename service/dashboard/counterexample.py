"""A violated job's counterexample, drawn: inputs in their box, outputs against thresholds,
the unsafe condition met (view models for the job page; no database)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from markupsafe import Markup

from service.dashboard import charts
from verifiers.spec.property import Case, Conjunction, Property

MAX_ROWS = 64  # inputs or outputs drawn in a chart or table; the rest are counted


# -- the counterexample, drawn ---------------------------------------------------------
@dataclass(frozen=True)
class Constraint:
    text: str
    lhs: float
    rhs: float
    met: bool


@dataclass(frozen=True)
class CounterexampleView:
    inputs_svg: Markup
    outputs_svg: Markup
    hidden_inputs: int
    hidden_outputs: int
    margin: float | None
    constraints: list[Constraint]
    raw: str
    module: bool = False
    failed: list[str] = field(default_factory=list)  # a module's failed ensures/invariants


def _case_for(prop: Property, inputs: list[float]) -> Case | None:
    for case in prop.cases:
        if len(case.lower_exact) == len(inputs) and case.contains_exactly(inputs):
            return case
    return prop.cases[0] if prop.cases else None


def _violated(case: Case | None, outputs: list[float]) -> Conjunction | None:
    if case is None:
        return None
    for conj in case.unsafe:
        if len(conj.halfspaces) and len(conj.halfspaces[0].coeffs) != len(outputs):
            return None
        if conj.holds_exactly(outputs):
            return conj
    return case.unsafe[0] if case.unsafe else None


def _thresholds(conj: Conjunction | None, n_out: int) -> list[tuple[float, ...]]:
    found: list[list[float]] = [[] for _ in range(n_out)]
    for h in conj.halfspaces if conj else ():
        nz = [(i, c) for i, c in enumerate(h.coeffs) if c != 0]
        if len(nz) == 1 and nz[0][0] < n_out:
            i, c = nz[0]
            found[i].append(float(h.rhs / c))
    return [tuple(t) for t in found]


def _constraints(conj: Conjunction | None, outputs: list[float]) -> list[Constraint]:
    out = []
    from service.dashboard.views import halfspace_text  # views re-exports this module

    for h in conj.halfspaces if conj else ():
        lhs = float(sum(c * Fraction(float(y)) for c, y in zip(h.coeffs, outputs, strict=True)))
        out.append(Constraint(halfspace_text(h), lhs, float(h.rhs), h.holds_exactly(outputs)))
    return out


def _module_inputs(
    spec: dict[str, Any], n: int, order: list[str]
) -> list[tuple[str, float, float]] | None:
    """Names and intervals of a module contract's inputs, when they match the counterexample
    (in the order of the trace's inputs, which is the function's parameter order)."""
    box = spec.get("inputs")
    if "step" in spec or not isinstance(box, dict) or len(box) != n:
        return None
    names = order if sorted(order) == sorted(box) else list(box)
    try:
        return [(str(k), float(box[k][0]), float(box[k][1])) for k in names]
    except (TypeError, ValueError, IndexError, KeyError):
        return None


def _short_label(var: str, labels: dict[str, str]) -> str:
    """A chart label: the property's label for the variable (cut to fit), else its name."""
    label = labels.get(var)
    if not label:
        return var
    return label if len(label) <= 9 else label[:8] + "…"


def _input_rows(
    inputs: list[float],
    case: Case | None,
    spec: dict[str, Any] | None,
    order: list[str],
    labels: dict[str, str],
) -> list[charts.IntervalRow]:
    named = _module_inputs(spec, len(inputs), order) if spec else None
    if named:
        pairs = zip(named, inputs, strict=True)
        return [charts.IntervalRow(n, x, lo, hi) for (n, lo, hi), x in pairs]
    lower = [float(v) for v in case.lower] if case else inputs
    upper = [float(v) for v in case.upper] if case else inputs
    return [
        charts.IntervalRow(_short_label(f"X_{i}", labels), x, lower[i], upper[i])
        for i, x in enumerate(inputs)
    ]


def counterexample_view(
    cex: dict[str, Any],
    prop: Property | None,
    spec: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
) -> CounterexampleView:
    """The drawing of a counterexample; ``spec`` is a module's SPEC (inputs named there),
    ``labels`` the property's label map (``X_0`` -> ``distance``)."""
    labels = labels or {}
    inputs = [float(v) for v in cex.get("inputs") or []]
    outputs = [float(v) for v in cex.get("outputs") or []]
    ort = cex.get("onnxruntime_outputs")
    runtime = [float(v) for v in ort] if ort else None
    case = _case_for(prop, inputs) if prop else None
    conj = _violated(case, runtime or outputs)
    trace = cex.get("trace") or []
    first = trace[0].get("inputs") if trace and isinstance(trace[0], dict) else None
    order = list(first) if isinstance(first, dict) else []
    rows = _input_rows(inputs, case, spec, order, labels)[:MAX_ROWS]
    thresholds = _thresholds(conj, len(outputs))
    out_name = "result" if spec is not None and len(outputs) == 1 else None
    out_rows = [
        charts.OutputRow(
            out_name or (f"result[{i}]" if spec is not None else _short_label(f"Y_{i}", labels)),
            y,
            runtime[i] if runtime and i < len(runtime) else None,
            thresholds[i],
        )
        for i, y in enumerate(outputs[:MAX_ROWS])
    ]
    failed = trace[-1].get("failed", []) if trace and isinstance(trace[-1], dict) else []
    return CounterexampleView(
        inputs_svg=charts.interval_chart(rows, "Counterexample inputs within their intervals"),
        outputs_svg=charts.output_chart(
            out_rows, "Module result" if spec is not None else "Outputs: engine and onnxruntime"
        ),
        hidden_inputs=max(0, len(inputs) - MAX_ROWS),
        hidden_outputs=max(0, len(outputs) - MAX_ROWS),
        margin=cex.get("margin"),
        constraints=_constraints(conj, runtime or outputs) if conj else [],
        raw=json.dumps(cex, indent=2),
        module=spec is not None,
        failed=[str(f) for f in failed],
    )
