"""What an uploaded ONNX model may declare, checked before anything is allocated for it.

The protobuf is parsed (its size is bounded by the upload limit) and its shapes inferred
(symbolic: no tensor is materialised). Then every declared or inferred tensor shape, every
initializer and Constant tensor, and the outputs of the nodes that make large tensors out of
small ones (ConstantOfShape, Expand, Tile, ...) are held against the limits. A model that
passes is loaded (constants folded) only in a memory-limited child process.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import onnx
import onnx.shape_inference

from verifiers.errors import ModelError
from verifiers.model.onnx_loader import parse_bytes

# Ops whose output can be far larger than their inputs: their output shape must be known.
GENERATORS = {
    "ConstantOfShape",
    "Expand",
    "Tile",
    "Range",
    "Resize",
    "Upsample",
    "Pad",
    "OneHot",
    "EyeLike",
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
}


@dataclass(frozen=True)
class Budget:
    max_tensor_elements: int = 50_000_000
    max_io_elements: int = 1_000_000
    max_nodes: int = 100_000


def _dims(value: onnx.ValueInfoProto) -> list[int] | None:
    """The dims of a value (a symbolic or missing dim counts as 1, as the loader does for
    the batch axis); None when the shape is unknown."""
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else 1 for d in tensor.shape.dim]


def _elements(dims: Iterable[int]) -> int:
    return math.prod(max(int(d), 0) for d in dims)


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def _tensors(graph: onnx.GraphProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    for tensor in graph.initializer:
        yield f"initializer '{tensor.name}'", tensor
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield f"node '{node.name or node.output[0]}' ({node.op_type})", attr.t
            for tensor in attr.tensors:
                yield f"node '{node.name or node.output[0]}' ({node.op_type})", tensor


def check_model(data: bytes, budget: Budget) -> None:
    """Raise ModelError (naming the tensor or node) when the model exceeds the budget."""
    proto = parse_bytes(data)
    graphs = list(_graphs(proto.graph))
    nodes = sum(len(g.node) for g in graphs)
    if nodes > budget.max_nodes:
        raise ModelError(f"the model has {nodes} nodes; the limit is {budget.max_nodes}")
    _check_io(proto.graph, budget)
    for graph in graphs:
        for where, tensor in _tensors(graph):
            _held(where, list(tensor.dims), budget.max_tensor_elements)
    _check_inferred(proto, budget)


def _check_io(graph: onnx.GraphProto, budget: Budget) -> None:
    constants = {t.name for t in graph.initializer}
    for kind, values in (("input", graph.input), ("output", graph.output)):
        for value in values:
            if value.name in constants:
                continue
            dims = _dims(value) or []
            if any(d.HasField("dim_value") and d.dim_value < 0 for d in _shape_dims(value)):
                raise ModelError(f"{kind} '{value.name}' declares a negative dimension")
            _held(f"{kind} '{value.name}'", dims, budget.max_io_elements)


def _shape_dims(value: onnx.ValueInfoProto) -> Iterable[onnx.TensorShapeProto.Dimension]:
    return value.type.tensor_type.shape.dim


def _held(where: str, dims: list[int], limit: int) -> None:
    if any(d < 0 for d in dims):
        raise ModelError(f"{where} declares a negative dimension {dims}")
    count = _elements(dims)
    if count > limit:
        raise ModelError(
            f"{where} has shape {dims} ({count:,} elements); the limit is {limit:,} "
            "(PROOFWELL_MAX_TENSOR_ELEMENTS / PROOFWELL_MAX_IO_ELEMENTS)"
        )


def _check_inferred(proto: onnx.ModelProto, budget: Budget) -> None:
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except (onnx.shape_inference.InferenceError, RuntimeError, ValueError) as error:
        # ValueError: e.g. a UnicodeDecodeError on corrupted bytes (found by Hypothesis).
        raise ModelError(f"shape inference failed: {error}") from error
    shapes = {v.name: _dims(v) for v in inferred.graph.value_info}
    shapes |= {v.name: _dims(v) for v in inferred.graph.output}
    for name, dims in shapes.items():
        if dims is not None:
            _held(f"tensor '{name}'", dims, budget.max_tensor_elements)
    for node in inferred.graph.node:
        if node.op_type not in GENERATORS:
            continue
        for output in node.output:
            if output and shapes.get(output) is None:
                raise ModelError(
                    f"the size of {node.op_type} output '{output}' cannot be known before "
                    "running it; give its shape input as a constant",
                    node=node.name or output,
                )
