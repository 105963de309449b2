"""ONNX bytes -> validated ModelProto -> graph IR.

Validation happens here, once, with errors that say what and where: unparsable bytes,
external data, custom domains, non-float inputs, the wrong number of inputs or outputs and
every unsupported node at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx.shape_inference
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from verifiers.errors import ModelError, UnsupportedError
from verifiers.model import subgraph
from verifiers.model.ir import Graph, Node, Op, Shape
from verifiers.model.op_table import (
    CONVERTERS,
    NONDETERMINISTIC_OPS,
    NONDETERMINISTIC_WHY,
    SUPPORTED_OPS,
    NodeContext,
    UnsupportedVariant,
)
from verifiers.model.runtime import Model

STANDARD_DOMAINS = ("", "ai.onnx")
UNMODELLED = "which is not supported (only output 0 is modelled)"


def load_model(
    source: str | Path | bytes,
    *,
    inputs: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
) -> Model:
    """Load, validate and convert an ONNX model, optionally narrowed to a subnetwork."""
    data = _read(source)
    proto = parse_bytes(data)
    _reject_external_data(proto)
    _reject_custom_domains(proto)
    _check(proto)
    proto = _infer_shapes(_with_batch_one(proto))
    onnx_bytes = data
    if inputs is not None or outputs is not None:
        proto = subgraph.extract(proto, inputs, outputs)
        onnx_bytes = proto.SerializeToString()
    graph = build_graph(proto)
    return Model(graph=graph, onnx_bytes=onnx_bytes, sha256=hashlib.sha256(data).hexdigest())


def _read(source: str | Path | bytes) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError as error:
        raise ModelError(f"cannot read the model: {error}", source=str(source)) from error


def parse_bytes(data: bytes) -> onnx.ModelProto:
    """ONNX bytes -> ModelProto, or a ModelError saying they are none."""
    try:
        proto = onnx.ModelProto.FromString(data)
    except (DecodeError, RuntimeWarning, ValueError) as error:
        raise ModelError(f"not an ONNX model: {error}") from error
    # Protobuf decodes many byte strings leniently; a real model has a version and a graph.
    if proto.ir_version == 0 or not proto.graph.node:
        raise ModelError("not an ONNX model: no IR version or no graph nodes")
    return proto


def _all_tensors(proto: onnx.ModelProto) -> list[onnx.TensorProto]:
    tensors = list(proto.graph.initializer)
    for node in proto.graph.node:
        tensors += [a.t for a in node.attribute if a.type == onnx.AttributeProto.TENSOR]
    return tensors


def _reject_external_data(proto: onnx.ModelProto) -> None:
    external = [t.name for t in _all_tensors(proto) if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise ModelError(
            f"external-data tensors are not supported (embed them): {', '.join(external)}"
        )


def _reject_custom_domains(proto: onnx.ModelProto) -> None:
    custom = [n for n in proto.graph.node if n.domain not in STANDARD_DOMAINS]
    if custom:
        listed = ", ".join(f"'{n.name}' ({n.domain}::{n.op_type})" for n in custom)
        raise ModelError(
            f"custom operator domains are not supported: {listed}", node=custom[0].name
        )


def _check(proto: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as error:
        raise ModelError(f"invalid ONNX model: {error}") from error


def _with_batch_one(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy where a symbolic or unknown leading dimension of the inputs and outputs is 1.

    Other symbolic input dimensions have no safe default, so they are rejected."""
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    constants = {t.name for t in proto.graph.initializer}
    for value in [v for v in proto.graph.input if v.name not in constants]:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if not dim.HasField("dim_value") and axis > 0:
                raise ModelError(f"input '{value.name}' has a symbolic dimension at axis {axis}")
            if not dim.HasField("dim_value"):
                dim.dim_value = 1
    for value in proto.graph.output:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    return proto


def _infer_shapes(proto: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    except (onnx.shape_inference.InferenceError, RuntimeError, ValueError) as error:
        # ValueError: e.g. a UnicodeDecodeError on corrupted bytes (found by Hypothesis).
        raise ModelError(f"shape inference failed: {error}") from error


# --- ModelProto -> IR --------------------------------------------------------------------------


def build_graph(proto: onnx.ModelProto) -> Graph:
    """Convert a validated, shape-inferred model with one float input and one output."""
    graph = proto.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    input_value = _single_input(graph, constants)
    output_name = _single_output(graph)
    input_shape = tuple(d.dim_value for d in input_value.type.tensor_type.shape.dim)
    builder = _Builder(constants, {input_value.name: input_shape}, _opset(proto))
    for node in _needed_nodes(graph, output_name):
        builder.add(node)
    if output_name in builder.unmodelled:
        node_name, op_type, position = builder.unmodelled[output_name]
        why = f"the model output '{output_name}' is its output {position}, {UNMODELLED}"
        builder.unsupported.append((node_name, op_type, why))
    builder.raise_unsupported()
    if output_name not in builder.shapes:
        raise ModelError(f"output '{output_name}' does not depend on input '{input_value.name}'")
    return Graph(
        input_name=input_value.name,
        input_shape=input_shape,
        output_name=output_name,
        output_shape=builder.shapes[output_name],
        nodes=tuple(builder.nodes),
        shapes=dict(builder.shapes),
    )


def _single_input(graph: onnx.GraphProto, constants: dict) -> onnx.ValueInfoProto:
    # Old exporters list initializers as graph inputs: those are constants, not inputs.
    inputs = [value for value in graph.input if value.name not in constants]
    if len(inputs) != 1:
        names = ", ".join(f"'{v.name}'" for v in inputs) or "none"
        raise ModelError(f"expected exactly one input tensor, found {len(inputs)}: {names}")
    elem_type = inputs[0].type.tensor_type.elem_type
    if elem_type != onnx.TensorProto.FLOAT:
        type_name = onnx.TensorProto.DataType.Name(elem_type)
        raise ModelError(f"input '{inputs[0].name}' has type {type_name}; only float is supported")
    return inputs[0]


def _single_output(graph: onnx.GraphProto) -> str:
    if len(graph.output) != 1:
        names = ", ".join(f"'{v.name}'" for v in graph.output) or "none"
        raise ModelError(f"expected exactly one output tensor, found {len(graph.output)}: {names}")
    return graph.output[0].name


def _opset(proto: onnx.ModelProto) -> int:
    return max((o.version for o in proto.opset_import if o.domain in STANDARD_DOMAINS), default=1)


def _needed_nodes(graph: onnx.GraphProto, output_name: str) -> list[onnx.NodeProto]:
    """The nodes the output depends on, in the graph's (topological) order."""
    needed, keep = {output_name}, []
    for node in reversed(graph.node):
        if needed.intersection(node.output):
            keep.append(node)
            needed.update(name for name in node.input if name)
    return keep[::-1]


class _Builder:
    """Folds constant nodes, converts the others through the op table, tracks shapes."""

    def __init__(self, constants: dict[str, np.ndarray], shapes: dict[str, Shape], opset: int):
        self.constants = constants
        self.shapes = shapes
        self.opset = opset
        self.nodes: list[Node] = []
        self.unsupported: list[tuple[str, str, str]] = []  # node name, op type, why
        self.broken: set[str] = set()  # outputs of unsupported nodes: shape unknown
        # Outputs a converted node has but its IR op does not compute (MaxPool's Indices,
        # Dropout's mask): tensor name -> (node name, op type, output position).
        self.unmodelled: dict[str, tuple[str, str, int]] = {}

    def add(self, node: onnx.NodeProto) -> None:
        names = [name for name in node.input if name]
        variables = [name for name in names if name not in self.constants]
        if node.op_type in NONDETERMINISTIC_OPS or _training_dropout(node, self.constants):
            self._unsupported(node, NONDETERMINISTIC_WHY)
        elif unmodelled := [n for n in names if n in self.unmodelled]:
            self._unsupported(node, _unmodelled_why(unmodelled[0], self.unmodelled))
        elif bad := _non_finite_attribute(node):
            self._unsupported(node, f"attribute '{bad}' is inf or NaN: no real-valued function")
        elif non_finite := [n for n in names if not _finite_constant(self.constants.get(n))]:
            self._unsupported(
                node, f"constant '{non_finite[0]}' holds inf or NaN: no real-valued function"
            )
        elif not variables or (node.op_type == "Shape" and variables[0] in self.shapes):
            self._fold(node)
        elif node.op_type not in CONVERTERS:
            self._unsupported(node, "unsupported operator")
        else:
            self._convert(node, variables)

    def _unsupported(self, node: onnx.NodeProto, why: str) -> None:
        self.unsupported.append((node.name or node.output[0], node.op_type, why))
        self.broken.update(node.output)

    def _fold(self, node: onnx.NodeProto) -> None:
        name = node.name or node.output[0]
        if node.op_type == "Shape":
            shape = np.array(self.shapes.get(node.input[0], ()), dtype=np.int64)
            start, end = _attr(node, "start", 0), _attr(node, "end", None)
            self.constants[node.output[0]] = shape[start:end]
            return
        try:
            from onnx.reference import ReferenceEvaluator  # rarely needed: keep start-up fast

            evaluator = ReferenceEvaluator(node, opsets={"": self.opset})
            values = evaluator.run(None, {n: self.constants[n] for n in node.input if n})
        except Exception as error:  # the reference runtime raises many types
            raise ModelError(f"cannot fold constant node: {error}", node=name) from error
        self.constants.update(zip(node.output, (np.asarray(v) for v in values), strict=False))

    def _convert(self, node: onnx.NodeProto, variables: list[str]) -> None:
        unknown = [name for name in variables if name not in self.shapes.keys() | self.broken]
        if unknown:
            raise ModelError(
                f"tensor '{unknown[0]}' is neither the input, an initializer nor computed",
                node=node.name or node.output[0],
            )
        ctx = NodeContext(node, self.constants, self.shapes, self.opset)
        try:
            op = CONVERTERS[node.op_type](ctx)
        except UnsupportedVariant as error:
            self._unsupported(node, error.why)
            return
        except KeyError:
            # An input comes from an unsupported node, so its shape is unknown; the converter
            # found nothing to report before it needed that shape.
            self.broken.update(node.output)
            return
        if self.broken.intersection(variables):
            self.broken.update(node.output)
            return
        self.shapes[node.output[0]] = self._output_shape(ctx, op, variables)
        for position, name in enumerate(node.output[1:], start=1):
            if name:
                self.unmodelled[name] = (ctx.name, node.op_type, position)
        self.nodes.append(Node(ctx.name, node.op_type, op, tuple(variables), node.output[0]))

    def _output_shape(self, ctx: NodeContext, op: Op, variables: list[str]) -> Shape:
        # Evaluating on zeros is the simplest shape rule that cannot disagree with evaluate().
        zeros = [np.zeros((1, *self.shapes[name])) for name in variables]
        try:
            return tuple(op.evaluate(*zeros).shape[1:])
        except (ValueError, IndexError) as error:
            raise ModelError(
                f"cannot evaluate {ctx.node.op_type}: {error}", node=ctx.name
            ) from error

    def raise_unsupported(self) -> None:
        if self.unsupported:
            listed = "; ".join(f"'{name}' ({op}): {why}" for name, op, why in self.unsupported)
            unknown_ops = any(why == "unsupported operator" for _, _, why in self.unsupported)
            supported = f". Supported operators: {', '.join(SUPPORTED_OPS)}" if unknown_ops else ""
            raise UnsupportedError(
                f"{len(self.unsupported)} unsupported node(s): {listed}{supported}",
                node=self.unsupported[0][0],
            )


def _training_dropout(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> bool:
    """A Dropout whose training_mode input is absent-false or a constant false is the
    identity; anything else may draw a random mask."""
    if node.op_type != "Dropout" or len(node.input) < 3 or not node.input[2]:
        return False
    mode = constants.get(node.input[2])
    return mode is None or bool(np.any(mode))


def _unmodelled_why(name: str, unmodelled: dict[str, tuple[str, str, int]]) -> str:
    node_name, op_type, position = unmodelled[name]
    return f"it reads '{name}', output {position} of {op_type} node '{node_name}', {UNMODELLED}"


def _non_finite_attribute(node: onnx.NodeProto) -> str | None:
    """The name of a float attribute holding inf or NaN, if any."""
    for attribute in node.attribute:
        values = list(attribute.floats) if attribute.type == onnx.AttributeProto.FLOATS else []
        if attribute.type == onnx.AttributeProto.FLOAT:
            values = [attribute.f]
        if not np.all(np.isfinite(values)):
            return attribute.name
    return None


def _finite_constant(value: np.ndarray | None) -> bool:
    if value is None or not np.issubdtype(np.asarray(value).dtype, np.floating):
        return True
    return bool(np.all(np.isfinite(value)))


def _attr(node: onnx.NodeProto, name: str, default: int | None) -> int | None:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(attribute.i)
    return default
