"""JSON property presets -> ``Property``.

- ``{"kind": "linf_robustness", "center": [...], "epsilon": e, "label": k, "clip": [lo, hi]}``:
  the box ``[center - e, center + e]`` (intersected with ``clip`` when given) is unsafe where
  some other output ``j`` has ``y_j >= y_k``; one case, ``n_outputs - 1`` conjunctions.
- ``{"kind": "output_range", "box": {"lower": [...], "upper": [...]}, "output": i,
  "lower": a, "upper": b}`` (at least one of ``lower``/``upper``): unsafe where ``y_i < a`` or
  ``y_i > b``.
- ``{"kind": "monotonicity", ...}``: needs two copies of the network; not supported yet.

Numbers may be JSON numbers or strings (``"1/3"``, ``"0.1"``) and are kept exactly; a JSON
float is read as the shortest decimal that prints it (``0.1`` is 1/10, as it was written).
Every error names the offending field, e.g. ``center[3]`` or ``box.lower[0]``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from verifiers.errors import SpecError
from verifiers.spec.property import Case, Conjunction, HalfSpace, Property
from verifiers.spec.sexpr import exact_number

# Free-text keys any preset may carry.
_DESCRIPTIVE = frozenset({"kind", "name", "description"})


def parse_preset(data: dict[str, Any], *, n_inputs: int, n_outputs: int) -> Property:
    """Build the property a JSON preset describes for a model of the given sizes."""
    if not isinstance(data, dict):
        raise SpecError(f"a preset must be a JSON object, not {type(data).__name__}")
    kind = data.get("kind")
    builder = _BUILDERS.get(kind) if isinstance(kind, str) else None
    if kind == "monotonicity":
        raise SpecError(
            "monotonicity needs a two-copy encoding of the network, which is not supported yet",
            field="kind",
        )
    if builder is None:
        known = ", ".join(sorted(_BUILDERS))
        raise SpecError(f"unknown preset kind {kind!r} (known: {known})", field="kind")
    cases = builder(data, n_inputs, n_outputs)
    source = json.dumps(data, sort_keys=True)
    return Property(n_inputs=n_inputs, n_outputs=n_outputs, cases=cases, source=source)


def _linf_robustness(data: dict[str, Any], n_inputs: int, n_outputs: int) -> tuple[Case, ...]:
    _check_keys(data, {"center", "epsilon", "label", "clip"}, {"center", "epsilon", "label"})
    center = _vector(data["center"], "center", n_inputs)
    epsilon = _number(data["epsilon"], "epsilon")
    if epsilon < 0:
        raise SpecError("epsilon must be >= 0", field="epsilon")
    label = _index(data["label"], "label", n_outputs)
    if n_outputs < 2:
        raise SpecError("robustness needs a model with at least two outputs", field="label")
    lower = [c - epsilon for c in center]
    upper = [c + epsilon for c in center]
    if "clip" in data:
        lo, hi = _pair(data["clip"], "clip")
        lower = [max(v, lo) for v in lower]
        upper = [min(v, hi) for v in upper]
        for i, (a, b) in enumerate(zip(lower, upper, strict=True)):
            if a > b:
                raise SpecError(
                    f"center[{i}] is further than epsilon outside clip [{lo}, {hi}]",
                    field=f"center[{i}]",
                )
    unsafe = tuple(
        Conjunction((_difference(label, other, n_outputs),))
        for other in range(n_outputs)
        if other != label
    )
    return (Case(tuple(lower), tuple(upper), unsafe),)


def _difference(label: int, other: int, n_outputs: int) -> HalfSpace:
    """``y_label - y_other <= 0``, i.e. output ``other`` reaches the label's score."""
    coeffs = [Fraction(0)] * n_outputs
    coeffs[label], coeffs[other] = Fraction(1), Fraction(-1)
    return HalfSpace(tuple(coeffs), Fraction(0))


def _output_range(data: dict[str, Any], n_inputs: int, n_outputs: int) -> tuple[Case, ...]:
    _check_keys(data, {"box", "output", "lower", "upper"}, {"box", "output"})
    lower, upper = _box(data["box"], n_inputs)
    output = _index(data["output"], "output", n_outputs)
    if "lower" not in data and "upper" not in data:
        raise SpecError("output_range needs 'lower', 'upper' or both", field="lower")
    unit = [Fraction(0)] * n_outputs
    unit[output] = Fraction(1)
    unsafe: list[Conjunction] = []
    if "lower" in data:
        a = _number(data["lower"], "lower")
        unsafe.append(Conjunction((HalfSpace(tuple(unit), a, strict=True),)))
    if "upper" in data:
        b = _number(data["upper"], "upper")
        if "lower" in data and b < _number(data["lower"], "lower"):
            raise SpecError("upper must be >= lower", field="upper")
        unsafe.append(Conjunction((HalfSpace(tuple(-c for c in unit), -b, strict=True),)))
    return (Case(lower, upper, tuple(unsafe)),)


_Builder = Callable[[dict[str, Any], int, int], tuple[Case, ...]]
_BUILDERS: dict[str, _Builder] = {
    "linf_robustness": _linf_robustness,
    "output_range": _output_range,
}


# --- validation helpers ----------------------------------------------------------------------


def _check_keys(data: dict[str, Any], allowed: set[str], required: set[str]) -> None:
    missing = sorted(required - data.keys())
    if missing:
        raise SpecError(f"missing required field {missing[0]!r}", field=missing[0])
    unknown = sorted(data.keys() - allowed - _DESCRIPTIVE)
    if unknown:
        raise SpecError(f"unknown field {unknown[0]!r} for kind {data['kind']!r}", field=unknown[0])


def _number(value: Any, field: str) -> Fraction:
    """An exact finite number from a JSON number or a numeric string."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SpecError(f"expected a number, got {json.dumps(value)}", field=field)
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError("expected a finite number", field=field)
    if isinstance(value, int):
        return Fraction(value)
    text = repr(value) if isinstance(value, float) else value.strip()
    numerator, slash, denominator = text.partition("/")
    try:
        if slash:
            return exact_number(numerator) / int(denominator)
        return exact_number(text)
    except ZeroDivisionError:
        raise SpecError(f"division by zero in {value!r}", field=field) from None
    except ValueError as exc:
        raise SpecError(f"expected a number, got {value!r} ({exc})", field=field) from None


def _vector(value: Any, field: str, length: int) -> tuple[Fraction, ...]:
    if not isinstance(value, list):
        raise SpecError(f"expected a list of {length} numbers", field=field)
    if len(value) != length:
        raise SpecError(
            f"expected {length} numbers (one per model input), got {len(value)}", field=field
        )
    return tuple(_number(v, f"{field}[{i}]") for i, v in enumerate(value))


def _pair(value: Any, field: str) -> tuple[Fraction, Fraction]:
    if not isinstance(value, list) or len(value) != 2:
        raise SpecError("expected [lower, upper]", field=field)
    lo, hi = _number(value[0], f"{field}[0]"), _number(value[1], f"{field}[1]")
    if lo > hi:
        raise SpecError(f"lower {lo} is above upper {hi}", field=field)
    return lo, hi


def _index(value: Any, field: str, size: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"expected an integer index, got {json.dumps(value)}", field=field)
    if not 0 <= value < size:
        raise SpecError(f"index {value} is out of range: the model has {size} outputs", field=field)
    return value


def _box(value: Any, n_inputs: int) -> tuple[tuple[Fraction, ...], tuple[Fraction, ...]]:
    if not isinstance(value, dict):
        raise SpecError('expected {"lower": [...], "upper": [...]}', field="box")
    missing = sorted({"lower", "upper"} - value.keys())
    if missing:
        raise SpecError(f"missing required field {missing[0]!r}", field=f"box.{missing[0]}")
    unknown = sorted(value.keys() - {"lower", "upper"})
    if unknown:
        raise SpecError(f"unknown field {unknown[0]!r}", field=f"box.{unknown[0]}")
    lower = _vector(value["lower"], "box.lower", n_inputs)
    upper = _vector(value["upper"], "box.upper", n_inputs)
    for i, (lo, hi) in enumerate(zip(lower, upper, strict=True)):
        if lo > hi:
            raise SpecError(
                f"box.lower[{i}] = {lo} is above box.upper[{i}] = {hi}", field=f"box.upper[{i}]"
            )
    return lower, upper
