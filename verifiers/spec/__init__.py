"""Properties: VNN-LIB 1.0 text and JSON presets, parsed into ``Property``."""

from __future__ import annotations

import json
from pathlib import Path

from verifiers.errors import SpecError
from verifiers.spec.presets import parse_preset
from verifiers.spec.property import Case, Conjunction, HalfSpace, Property
from verifiers.spec.vnnlib import parse_vnnlib, to_vnnlib

__all__ = [
    "Case",
    "Conjunction",
    "HalfSpace",
    "Property",
    "load_property",
    "parse_preset",
    "parse_vnnlib",
    "to_vnnlib",
]


def load_property(
    path: str | Path, *, n_inputs: int | None = None, n_outputs: int | None = None
) -> Property:
    """Read a ``.vnnlib`` file or a ``.json`` preset (which needs the model's sizes)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".vnnlib", ".json"):
        raise SpecError(
            f"unknown property format {suffix!r}: expected .vnnlib or .json", source=str(path)
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read the property file: {exc}", source=str(path)) from None
    if suffix == ".vnnlib":
        return parse_vnnlib(text, source=str(path), n_inputs=n_inputs, n_outputs=n_outputs)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"invalid JSON: {exc.msg}", source=str(path), line=exc.lineno, column=exc.colno
        ) from None
    except ValueError as exc:  # e.g. an integer literal beyond Python's digit limit
        raise SpecError(f"invalid JSON: {exc}", source=str(path)) from None
    if n_inputs is None or n_outputs is None:
        raise SpecError(
            "a JSON preset needs the model's number of inputs and outputs", source=str(path)
        )
    try:
        return parse_preset(data, n_inputs=n_inputs, n_outputs=n_outputs)
    except SpecError as exc:
        exc.source = str(path)
        raise
