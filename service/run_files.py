"""Verify files on disk: the dispatch shared by `proofwell verify` and `proofwell gate`.

ONNX model + property (VNN-LIB or JSON preset), module source + SPEC.json, or a SYSTEM.json
alone. Invalid input raises a VerifierError (or OSError); callers turn it into a verdict.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verifiers.components import OnnxComponent
from verifiers.errors import SpecError, VerifierError
from verifiers.options import Options
from verifiers.result import Result, Verdict

if TYPE_CHECKING:
    from verifiers.verify import ProgressCallback


def is_symbolic(model: Path, spec: Path | None) -> bool:
    """A module source, or a system description (a .json model without a property)."""
    suffix = model.suffix.lower()
    return suffix == ".py" or (suffix == ".json" and spec is None)


def verify_files(
    model: Path,
    spec: Path | None,
    options: Options,
    *,
    inputs: tuple[str, ...] | None = None,
    outputs: tuple[str, ...] | None = None,
    on_progress: ProgressCallback | None = None,
    started: float | None = None,
) -> Result:
    from verifiers.spec import load_property
    from verifiers.verify import verify

    if is_symbolic(model, spec):
        return _verify_symbolic(model, spec, options)
    if spec is None:
        raise VerifierError("a property file is needed: proofwell verify MODEL.onnx SPEC.vnnlib")
    component = OnnxComponent(model.read_bytes(), inputs or None, outputs or None)
    n_inputs = n_outputs = None
    if spec.suffix.lower() == ".json":
        from verifiers.model import load_model

        with named_file(model):
            loaded = load_model(
                component.source, inputs=component.inputs, outputs=component.outputs
            )
        n_inputs, n_outputs = loaded.n_inputs, loaded.n_outputs
    prop = load_property(spec, n_inputs=n_inputs, n_outputs=n_outputs)
    result = verify(component, prop, options, on_progress=on_progress, started=started)
    if result.verdict is Verdict.ERROR and str(model) not in (result.reason or ""):
        # verify() reports a model it cannot load as an error result; name the file.
        result = replace(result, reason=f"{model}: {result.reason}")
    return result


@contextmanager
def named_file(path: Path) -> Iterator[None]:
    """Name ``path`` in an error raised inside that does not name a file yet."""
    try:
        yield
    except VerifierError as exc:
        if exc.source is None:
            exc.source = str(path)
        raise


def read_json(path: Path) -> Any:
    """A JSON file; invalid JSON is a SpecError at its line and column."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"invalid JSON: {exc.msg}", source=str(path), line=exc.lineno, column=exc.colno
        ) from None


def _verify_symbolic(model: Path, spec: Path | None, options: Options) -> Result:
    from verifiers import symbolic

    if spec is None:
        with named_file(model):
            return symbolic.verify_system(read_json(model), options, base_dir=model.parent)
    with named_file(spec):
        return symbolic.verify_module(
            model.read_text(), read_json(spec), options, filename=str(model)
        )
