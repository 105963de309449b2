"""Subnetwork selection by input and output tensor names (as Marabou's ONNX front end)."""

from __future__ import annotations

from collections.abc import Sequence

import onnx
import onnx.utils

from verifiers.errors import ModelError


def tensor_names(graph: onnx.GraphProto) -> set[str]:
    """Every tensor a subnetwork may start or end at."""
    names = {value.name for value in graph.input}
    names |= {output for node in graph.node for output in node.output if output}
    return names


def _listed(graph: onnx.GraphProto, constants: set[str], limit: int = 40) -> str:
    """The tensor names a subnetwork may use, in graph order (the first ``limit``)."""
    names = [v.name for v in graph.input if v.name not in constants]
    names += [out for node in graph.node for out in node.output if out]
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def extract(
    model: onnx.ModelProto, inputs: Sequence[str] | None, outputs: Sequence[str] | None
) -> onnx.ModelProto:
    """The part of ``model`` computing ``outputs`` from ``inputs`` (defaults: the model's own).

    ``model`` must carry inferred shapes (value_info) so the new boundary tensors are typed."""
    constants = {tensor.name for tensor in model.graph.initializer}
    if inputs is None:
        inputs = [value.name for value in model.graph.input if value.name not in constants]
    if outputs is None:
        outputs = [value.name for value in model.graph.output]
    known = tensor_names(model.graph)
    unknown = [name for name in [*inputs, *outputs] if name not in known]
    if unknown:
        raise ModelError(
            f"unknown tensor name(s) for the subnetwork: {', '.join(unknown)}; "
            f"valid names: {_listed(model.graph, constants)}"
        )
    try:
        extracted = onnx.utils.Extractor(model).extract_model(list(inputs), list(outputs))
        # Before IR 4 every initializer had to be a graph input, which the extractor does not
        # keep; IR 4 lifted that rule without changing any operator's meaning.
        extracted.ir_version = max(extracted.ir_version, 4)
        onnx.checker.check_model(extracted)
    except (ValueError, onnx.checker.ValidationError) as error:
        raise ModelError(
            f"cannot extract the subnetwork {list(inputs)} -> {list(outputs)}: {error}"
        ) from error
    return extracted
