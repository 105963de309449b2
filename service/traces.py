"""Counterexample traces of modules and systems, read for people: the CLI and the dashboard.

A symbolic result's counterexample carries a ``trace`` (see verifiers/symbolic): one entry
per step for bounded model checking and closed loops (``step``, ``state``, ``inputs``,
``failed``), one entry with ``reference`` and ``deviation`` for an equivalence check, and one
with ``result`` for a module contract. Values are JSON numbers or exact rationals written
``"p/q"``. Nothing here re-checks anything: it only names, orders and formats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

_BOUND = re.compile(r"^\s*([A-Za-z_]\w*)\s*(<=|>=|<|>)\s*(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$")


def number(value: Any) -> float | None:
    """A trace value as a float: numbers, booleans and ``"p/q"`` rationals; else None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(Fraction(value))
        except (ValueError, ZeroDivisionError):
            return None
    return None


@dataclass(frozen=True)
class Signal:
    """One named signal over the steps, with the bounds the invariants put on it."""

    name: str
    values: tuple[float | None, ...]
    lower: float | None = None
    upper: float | None = None


@dataclass(frozen=True)
class StepTrace:
    """A bounded-model-checking or closed-loop trace: which invariant failed, at which step."""

    steps: int
    failed_step: int | None
    failed: tuple[str, ...]
    signals: tuple[Signal, ...]
    inputs: tuple[Signal, ...] = field(default=())


@dataclass(frozen=True)
class EquivalenceTrace:
    names: tuple[str, ...]
    inputs: tuple[float, ...]
    network: tuple[float, ...]
    reference: tuple[float, ...]
    deviation: float | None
    onnxruntime_deviation: float | None
    epsilon: float | None


def bounds_of(invariants: list[str]) -> dict[str, tuple[float | None, float | None]]:
    """The constant bounds simple invariants (``x >= 1.5``, ``v <= 3``) put on a name."""
    found: dict[str, tuple[float | None, float | None]] = {}
    for text in invariants:
        m = _BOUND.match(text)
        if m is None:
            continue
        name, op, value = m.group(1), m.group(2), float(m.group(3))
        lower, upper = found.get(name, (None, None))
        if op.startswith(">"):
            lower = value if lower is None else max(lower, value)
        else:
            upper = value if upper is None else min(upper, value)
        found[name] = (lower, upper)
    return found


def _series(entries: list[dict[str, Any]], key: str) -> dict[str, list[float | None]]:
    names: list[str] = []
    for entry in entries:
        for name in entry.get(key) or {}:
            if name not in names:
                names.append(name)
    return {n: [number((e.get(key) or {}).get(n)) for e in entries] for n in names}


def step_trace(trace: list[dict[str, Any]], invariants: list[str] | None = None) -> StepTrace:
    """The per-step view of a BMC or closed-loop trace (entries carry ``step``)."""
    failed_at = next((i for i, e in enumerate(trace) if e.get("failed")), None)
    failed = tuple(trace[failed_at]["failed"]) if failed_at is not None else ()
    bounds = bounds_of(list(invariants or []) + list(failed))

    def signals(key: str) -> tuple[Signal, ...]:
        return tuple(
            Signal(name, tuple(values), *bounds.get(name, (None, None)))
            for name, values in _series(trace, key).items()
        )

    state = signals("state")
    known = {s.name for s in state}
    extra = tuple(s for s in signals("inputs") + signals("signals") if s.name not in known)
    return StepTrace(len(trace) - 1, failed_at, failed, state, extra)


def equivalence_trace(
    entry: dict[str, Any], epsilon: float | None, names: list[str] | None = None
) -> EquivalenceTrace:
    def floats(key: str) -> tuple[float, ...]:
        return tuple(number(v) or 0.0 for v in entry.get(key) or [])

    inputs = floats("inputs")
    named = list(names or [])[: len(inputs)]
    named += [f"x{i}" for i in range(len(named), len(inputs))]
    return EquivalenceTrace(
        tuple(named),
        inputs,
        floats("network"),
        floats("reference"),
        number(entry.get("deviation")),
        number(entry.get("onnxruntime_deviation")),
        epsilon,
    )


def kind_of(trace: list[dict[str, Any]] | None) -> str | None:
    """``steps``, ``equivalence``, ``contract`` or None (no trace)."""
    if not trace:
        return None
    if "step" in trace[0]:
        return "steps"
    if "reference" in trace[0]:
        return "equivalence"
    return "contract" if "result" in trace[0] else None


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def step_lines(view: StepTrace) -> list[str]:
    """The trace as a text table, one row per step, the failing row marked."""
    lines = []
    if view.failed_step is not None:
        which = ", ".join(f'"{f}"' for f in view.failed)
        lines.append(f"invariant {which} failed at step {view.failed_step}")
    columns = [*view.signals, *view.inputs]
    if not columns:
        return lines
    width = max(10, *(len(s.name) + 2 for s in columns))
    header = "step  " + "".join(s.name.rjust(width) for s in columns)
    lines.append(header)
    for k in range(view.steps + 1):
        cells = "".join(
            fmt(s.values[k] if k < len(s.values) else None).rjust(width) for s in columns
        )
        mark = "  <- fails" if k == view.failed_step else ""
        lines.append(f"{k:>4}  {cells}{mark}")
    lines.append("per step (lowest to highest value; ! marks the failing step):")
    lines += [f"  {s.name.ljust(width)}{sparkline(s, view.failed_step)}" for s in columns]
    bounded = [s for s in columns if s.lower is not None or s.upper is not None]
    for s in bounded:
        lines.append(f"bounds of {s.name}: [{fmt(s.lower)}, {fmt(s.upper)}]")
    return lines


BARS = "▁▂▃▄▅▆▇█"


def sparkline(signal: Signal, failed_step: int | None) -> str:
    """The signal over the steps as one bar per step, scaled to its own range and bounds;
    ``!`` after the failing step, ``·`` where the step has no value."""
    known = [v for v in signal.values if v is not None]
    scale = known + [b for b in (signal.lower, signal.upper) if b is not None]
    if not known:
        return ""
    lo, hi = min(scale), max(scale)
    cells = []
    for k, v in enumerate(signal.values):
        if v is None:
            cells.append("·")
            continue
        level = 0 if hi <= lo else round((v - lo) / (hi - lo) * (len(BARS) - 1))
        cells.append(BARS[level] + ("!" if k == failed_step else ""))
    return "".join(cells) + f"  {fmt(min(known))} .. {fmt(max(known))}"


def equivalence_lines(view: EquivalenceTrace) -> list[str]:
    eps = f" > epsilon {fmt(view.epsilon)}" if view.epsilon is not None else ""
    lines = [f"deviation {fmt(view.deviation)}{eps}"]
    pairs = zip(view.names, view.inputs, strict=True)
    lines.append("inputs:    " + ", ".join(f"{n}={fmt(v)}" for n, v in pairs))
    lines.append("network:   " + ", ".join(fmt(v) for v in view.network))
    lines.append("reference: " + ", ".join(fmt(v) for v in view.reference))
    if view.onnxruntime_deviation is not None:
        lines.append(f"deviation with onnxruntime's outputs: {fmt(view.onnxruntime_deviation)}")
    return lines


def text_lines(
    trace: list[dict[str, Any]] | None, system: dict[str, Any] | None = None
) -> list[str]:
    """Human lines for a counterexample's trace (empty when there is nothing to add)."""
    kind = kind_of(trace)
    system = system or {}
    if kind == "steps":
        return step_lines(step_trace(trace or [], _invariants(system)))
    if kind == "equivalence":
        names = list(system.get("box") or {})
        return equivalence_lines(equivalence_trace((trace or [{}])[0], _epsilon(system), names))
    if kind == "contract":
        entry = (trace or [{}])[0]
        given = entry.get("inputs") or {}
        named = ", ".join(f"{n}={fmt(number(v))}" for n, v in given.items())
        return [
            f"inputs: {named}",
            f"result: {entry.get('result')}",
            f"failed: {', '.join(entry.get('failed') or [])}",
        ]
    return []


def _invariants(system: dict[str, Any]) -> list[str]:
    return [str(x) for x in system.get("invariant") or []]


def _epsilon(system: dict[str, Any]) -> float | None:
    return number(system.get("epsilon"))
