"""Names of a component's inputs and outputs, for people: a label map, else the ONNX graph.

A property may carry a label map. In VNN-LIB, comment lines of the form

    ; label X_0 = distance
    ; label Y_2 = turn right

(VNN-LIB tools ignore comments, so the file stays standard); in a JSON preset, a
``"labels": {"X_0": "distance", "Y_2": "turn right"}`` object. Without a label, an element is
named after its ONNX tensor (``scores[2]``; a one-element tensor by its name alone), and
always by its VNN-LIB variable too: ``X_0``/``Y_0`` are what the property speaks of.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_LABEL = re.compile(r"^\s*;+\s*label\s+([XY]_\d+)\s*[=:]\s*(.+?)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Names:
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def input(self, i: int) -> str:
        return self.inputs[i] if i < len(self.inputs) else f"X_{i}"

    def output(self, j: int) -> str:
        return self.outputs[j] if j < len(self.outputs) else f"Y_{j}"


def labels_of(prop: dict[str, Any] | str | None) -> dict[str, str]:
    """The label map of a property: VNN-LIB text, or a job property ``{"vnnlib"|"preset"}``."""
    if isinstance(prop, str):
        return {m.group(1): m.group(2) for m in _LABEL.finditer(prop)}
    if not isinstance(prop, dict):
        return {}
    if isinstance(prop.get("vnnlib"), str):
        return labels_of(prop["vnnlib"])
    preset = prop.get("preset") if isinstance(prop.get("preset"), dict) else prop
    labels = preset.get("labels") if isinstance(preset, dict) else None
    if not isinstance(labels, dict):
        return {}
    return {str(k): str(v) for k, v in labels.items() if re.fullmatch(r"[XY]_\d+", str(k))}


def tensor_elements(name: str, size: int) -> list[str]:
    """``name`` for a one-element tensor, else ``name[0]`` ... ``name[size-1]``."""
    return [name] if size == 1 else [f"{name}[{i}]" for i in range(size)]


def onnx_element_names(model: Any) -> tuple[list[str], list[str]]:
    """Element names of a loaded model's (or subnetwork's) input and output tensors."""
    graph = model.graph
    return (
        tensor_elements(graph.input_name, model.n_inputs),
        tensor_elements(graph.output_name, model.n_outputs),
    )


def names_for(
    n_inputs: int,
    n_outputs: int,
    labels: dict[str, str] | None = None,
    graph_inputs: list[str] | None = None,
    graph_outputs: list[str] | None = None,
) -> Names:
    """``X_0 (label)`` where labelled, else ``X_0 (tensor[0])`` when the graph is known."""
    labels = labels or {}

    def one(prefix: str, i: int, graph: list[str] | None) -> str:
        var = f"{prefix}_{i}"
        extra = labels.get(var) or (graph[i] if graph and len(graph) > i else None)
        return f"{var} ({extra})" if extra else var

    return Names(
        tuple(one("X", i, graph_inputs) for i in range(n_inputs)),
        tuple(one("Y", j, graph_outputs) for j in range(n_outputs)),
    )
