"""Verify files on disk: the dispatch shared by `proofwell verify` and `proofwell gate`.

ONNX model + property (VNN-LIB or JSON preset), module source + SPEC.json, or a SYSTEM.json
alone. Invalid input raises a VerifierError (or OSError); callers turn it into a verdict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from verifiers.components import OnnxComponent
from verifiers.errors import VerifierError
from verifiers.options import Options
from verifiers.result import Result

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

        loaded = load_model(component.source, inputs=component.inputs, outputs=component.outputs)
        n_inputs, n_outputs = loaded.n_inputs, loaded.n_outputs
    prop = load_property(spec, n_inputs=n_inputs, n_outputs=n_outputs)
    return verify(component, prop, options, on_progress=on_progress, started=started)


def _verify_symbolic(model: Path, spec: Path | None, options: Options) -> Result:
    from verifiers import symbolic

    if spec is None:
        return symbolic.verify_system(json.loads(model.read_text()), options, base_dir=model.parent)
    return symbolic.verify_module(
        model.read_text(), json.loads(spec.read_text()), options, filename=str(model)
    )
