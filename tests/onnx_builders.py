"""Tiny ONNX models built in code with onnx.helper, shared by the tests.

Everything returns a checked ``onnx.ModelProto``; ``to_bytes`` serializes one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

Spelling = Literal["gemm", "gemm_transb", "matmul_add", "matmul_add_flipped"]
DEFAULT_OPSET = 17


def to_bytes(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()


def tensor(name: str, value: np.ndarray | Sequence[float]) -> TensorProto:
    """An initializer; floats become float32, integers int64 (as ONNX expects for shapes)."""
    array = np.asarray(value)
    dtype = np.int64 if np.issubdtype(array.dtype, np.integer) else np.float32
    return numpy_helper.from_array(array.astype(dtype), name)


def make_model(
    nodes: Sequence[onnx.NodeProto],
    *,
    input_shape: Sequence[int | str],
    output: str = "y",
    input_name: str = "x",
    initializers: Mapping[str, np.ndarray | Sequence[float]] | None = None,
    opset: int = DEFAULT_OPSET,
    input_type: int = TensorProto.FLOAT,
    check: bool = True,
) -> onnx.ModelProto:
    """A one-input, one-output model; the output shape is left to shape inference."""
    graph = helper.make_graph(
        list(nodes),
        "test",
        [helper.make_tensor_value_info(input_name, input_type, list(input_shape))],
        [helper.make_empty_tensor_value_info(output)],
        initializer=[tensor(name, value) for name, value in (initializers or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # readable by every onnxruntime we support
    _type_output(model)
    if check:
        onnx.checker.check_model(model)
    return model


def single_op_model(
    op_type: str,
    input_shape: Sequence[int],
    *,
    inputs: Sequence[str] = ("x",),
    initializers: Mapping[str, np.ndarray | Sequence[float]] | None = None,
    opset: int = DEFAULT_OPSET,
    **attributes: object,
) -> onnx.ModelProto:
    """One node ``op_type(inputs) -> y``; inputs other than "x" come from ``initializers``."""
    node = helper.make_node(
        op_type, list(inputs), ["y"], name=f"the_{op_type.lower()}", **attributes
    )
    return make_model([node], input_shape=input_shape, initializers=initializers, opset=opset)


def _dense(
    i: int, source: str, weight: np.ndarray, bias: np.ndarray, spelling: Spelling
) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray], str]:
    """One dense layer ``W x + b`` (weight shaped (n_out, n_in)) in the given spelling."""
    out, w, b = f"dense{i}", f"W{i}", f"b{i}"
    if spelling == "gemm":
        nodes = [helper.make_node("Gemm", [source, w, b], [out], name=f"gemm{i}")]
        return nodes, {w: weight.T, b: bias}, out
    if spelling == "gemm_transb":
        nodes = [helper.make_node("Gemm", [source, w, b], [out], name=f"gemm{i}", transB=1)]
        return nodes, {w: weight, b: bias}, out
    add_inputs = [b, f"mm{i}"] if spelling == "matmul_add_flipped" else [f"mm{i}", b]
    nodes = [
        helper.make_node("MatMul", [source, w], [f"mm{i}"], name=f"matmul{i}"),
        helper.make_node("Add", add_inputs, [out], name=f"add{i}"),
    ]
    return nodes, {w: weight.T, b: bias}, out


def dense_relu_model(
    weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    *,
    spelling: Spelling = "gemm",
    activation: Literal["Relu", "LeakyRelu"] = "Relu",
    alpha: float = 0.1,
    final_activation: bool = False,
) -> onnx.ModelProto:
    """A fully connected network ``x -> W1 x + b1 -> relu -> ... -> Wn x + bn`` with input
    shape (1, n_in); weights are (n_out, n_in) as in the math, stored per ``spelling``."""
    nodes: list[onnx.NodeProto] = []
    initializers: dict[str, np.ndarray] = {}
    source = "x"
    for i, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
        layer_nodes, layer_inits, source = _dense(
            i, source, np.asarray(weight), np.asarray(bias), spelling
        )
        nodes += layer_nodes
        initializers.update(layer_inits)
        if i < len(weights) - 1 or final_activation:
            extra = {"alpha": alpha} if activation == "LeakyRelu" else {}
            nodes.append(
                helper.make_node(activation, [source], [f"act{i}"], name=f"act{i}", **extra)
            )
            source = f"act{i}"
    nodes.append(helper.make_node("Identity", [source], ["y"], name="output"))
    n_in = np.asarray(weights[0]).shape[1]
    return make_model(nodes, input_shape=[1, n_in], initializers=initializers)


def random_dense(sizes: Sequence[int], seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Random float32 weights (n_out, n_in) and biases for layer sizes [n_in, ..., n_out]."""
    rng = np.random.default_rng(seed)
    weights = [
        rng.normal(size=(n_out, n_in)).astype(np.float32)
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    biases = [rng.normal(size=n).astype(np.float32) for n in sizes[1:]]
    return weights, biases


def _type_output(model: onnx.ModelProto) -> None:
    """Give the graph output the type shape inference finds (the checker requires one)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    known = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output]}
    output = model.graph.output[0]
    if output.name in known and known[output.name].type.HasField("tensor_type"):
        output.type.CopyFrom(known[output.name].type)
    else:
        output.type.tensor_type.elem_type = TensorProto.FLOAT
