"""Every supported op: IR evaluation (float64) against onnxruntime (float32) at random points."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest
from onnx import helper

from tests.onnx_builders import make_model, single_op_model, to_bytes
from verifiers.model import SUPPORTED_OPS, load_model
from verifiers.model.op_table import CONSTANT_OPS, CONVERTERS

RNG = np.random.default_rng(1234)


def _w(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).astype(np.float32)


def assert_matches_onnxruntime(proto: onnx.ModelProto, n: int = 16) -> None:
    model = load_model(to_bytes(proto))
    x = np.random.default_rng(7).normal(size=(n, model.n_inputs))
    ours = model.evaluate(x)
    theirs = model.run_onnxruntime(x)
    assert ours.shape == theirs.shape == (n, model.n_outputs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def _two_var(op_type: str, swap: bool = False) -> onnx.ModelProto:
    """op(x, 3x) or op(3x, x): two variable operands."""
    scaled = helper.make_node("Mul", ["x", "three"], ["x3"], name="scale")
    inputs = ["x3", "x"] if swap else ["x", "x3"]
    node = helper.make_node(op_type, inputs, ["y"], name=f"the_{op_type.lower()}")
    return make_model([scaled, node], input_shape=[1, 4], initializers={"three": [3.0]})


def _constant_node() -> onnx.ModelProto:
    value = helper.make_tensor("c", onnx.TensorProto.FLOAT, [4], [1.0, -2.0, 3.0, 0.5])
    nodes = [
        helper.make_node("Constant", [], ["c"], name="const", value=value),
        helper.make_node("Add", ["x", "c"], ["y"], name="add"),
    ]
    return make_model(nodes, input_shape=[1, 4])


def _shape_reshape() -> onnx.ModelProto:
    """The exporter idiom Shape -> Gather -> Concat -> Reshape, folded at load time."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "zero_axis"], ["n1"], name="unsq"),
        helper.make_node("Concat", ["n1", "minus_one"], ["target"], name="cat", axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"], name="reshape"),
    ]
    inits = {"zero": np.array(0), "zero_axis": np.array([0]), "minus_one": np.array([-1])}
    return make_model(nodes, input_shape=[1, 2, 3, 2], initializers=inits)


CASES: dict[str, Callable[[], onnx.ModelProto]] = {
    "gemm": lambda: single_op_model(
        "Gemm", [2, 3], inputs=["x", "B", "C"], initializers={"B": _w(3, 4), "C": _w(4)}
    ),
    "gemm_trans_alpha_beta": lambda: single_op_model(
        "Gemm",
        [3, 2],
        inputs=["x", "B", "C"],
        initializers={"B": _w(4, 3), "C": _w(2, 4)},
        transA=1,
        transB=1,
        alpha=0.7,
        beta=-1.3,
    ),
    "gemm_no_c": lambda: single_op_model(
        "Gemm", [1, 3], inputs=["x", "B"], initializers={"B": _w(3, 2)}
    ),
    "matmul_right": lambda: single_op_model(
        "MatMul", [1, 2, 3], inputs=["x", "W"], initializers={"W": _w(3, 4)}
    ),
    "matmul_left": lambda: single_op_model(
        "MatMul", [4, 2], inputs=["W", "x"], initializers={"W": _w(3, 4)}
    ),
    "matmul_vector": lambda: single_op_model(
        "MatMul", [3], inputs=["x", "W"], initializers={"W": _w(3, 2)}
    ),
    "matmul_batched_const": lambda: single_op_model(
        "MatMul", [3, 4], inputs=["x", "W"], initializers={"W": _w(2, 4, 5)}
    ),
    "add_const": lambda: single_op_model(
        "Add", [1, 4], inputs=["x", "c"], initializers={"c": _w(4)}
    ),
    "add_const_first_broadcast": lambda: single_op_model(
        "Add", [4], inputs=["c", "x"], initializers={"c": _w(2, 4)}
    ),
    "add_two_variables": lambda: _two_var("Add"),
    "sub_x_minus_c": lambda: single_op_model(
        "Sub", [1, 4], inputs=["x", "c"], initializers={"c": _w(4)}
    ),
    "sub_c_minus_x": lambda: single_op_model(
        "Sub", [1, 4], inputs=["c", "x"], initializers={"c": _w(4)}
    ),
    "sub_two_variables": lambda: _two_var("Sub"),
    "sub_two_variables_swapped": lambda: _two_var("Sub", swap=True),
    "mul_const": lambda: single_op_model(
        "Mul", [1, 4], inputs=["c", "x"], initializers={"c": _w(4)}
    ),
    "div_const": lambda: single_op_model(
        "Div", [1, 4], inputs=["x", "c"], initializers={"c": [3.0, -7.0, 0.1, 2.5]}
    ),
    "relu": lambda: single_op_model("Relu", [1, 5]),
    "leaky_relu": lambda: single_op_model("LeakyRelu", [1, 5], alpha=0.2),
    "sigmoid": lambda: single_op_model("Sigmoid", [1, 5]),
    "tanh": lambda: single_op_model("Tanh", [1, 5]),
    "flatten": lambda: single_op_model("Flatten", [1, 2, 3, 4], axis=2),
    "flatten_negative_axis": lambda: single_op_model("Flatten", [1, 2, 3, 4], axis=-1),
    "reshape": lambda: single_op_model(
        "Reshape", [1, 2, 6], inputs=["x", "s"], initializers={"s": np.array([0, -1, 3])}
    ),
    "reshape_shape_chain": _shape_reshape,
    "identity": lambda: single_op_model("Identity", [1, 3]),
    "constant": _constant_node,
    "transpose": lambda: single_op_model("Transpose", [1, 2, 3, 4], perm=[0, 3, 1, 2]),
    "transpose_default": lambda: single_op_model("Transpose", [2, 3]),
    "squeeze_opset11": lambda: single_op_model("Squeeze", [1, 3, 1, 2], opset=11, axes=[2]),
    "squeeze_opset13": lambda: single_op_model(
        "Squeeze", [1, 3, 1, 2], inputs=["x", "a"], initializers={"a": np.array([-2])}
    ),
    "squeeze_all": lambda: single_op_model("Squeeze", [1, 3, 1, 2]),
    "unsqueeze_opset11": lambda: single_op_model("Unsqueeze", [1, 3], opset=11, axes=[1, -1]),
    "unsqueeze_opset13": lambda: single_op_model(
        "Unsqueeze", [1, 3], inputs=["x", "a"], initializers={"a": np.array([0, 3])}
    ),
    "concat": lambda: single_op_model(
        "Concat", [1, 2, 3], inputs=["c", "x", "x"], initializers={"c": _w(1, 1, 3)}, axis=1
    ),
    "conv": lambda: single_op_model(
        "Conv",
        [1, 2, 6, 7],
        inputs=["x", "W", "B"],
        initializers={"W": _w(4, 2, 3, 3), "B": _w(4)},
        pads=[1, 0, 2, 1],
    ),
    "conv_stride_dilation_groups": lambda: single_op_model(
        "Conv",
        [1, 4, 9, 8],
        inputs=["x", "W"],
        initializers={"W": _w(6, 2, 2, 3)},
        strides=[2, 1],
        dilations=[2, 1],
        group=2,
    ),
    "conv_same_upper": lambda: single_op_model(
        "Conv",
        [1, 1, 5, 5],
        inputs=["x", "W"],
        initializers={"W": _w(2, 1, 3, 3)},
        strides=[2, 2],
        auto_pad="SAME_UPPER",
    ),
    "batch_normalization": lambda: single_op_model(
        "BatchNormalization",
        [1, 3, 2, 2],
        inputs=["x", "s", "b", "m", "v"],
        initializers={"s": _w(3), "b": _w(3), "m": _w(3), "v": np.abs(_w(3)) + 0.1},
        epsilon=1e-3,
    ),
    "average_pool": lambda: single_op_model(
        "AveragePool", [1, 2, 5, 6], kernel_shape=[2, 3], strides=[2, 2]
    ),
    "average_pool_pads_exclude": lambda: single_op_model(
        "AveragePool", [1, 1, 5, 5], kernel_shape=[3, 3], pads=[1, 1, 1, 1]
    ),
    "average_pool_pads_include": lambda: single_op_model(
        "AveragePool", [1, 1, 5, 5], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1
    ),
    "dropout_inference": lambda: single_op_model("Dropout", [1, 5]),
    "max_pool": lambda: single_op_model(
        "MaxPool", [1, 2, 6, 6], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_onnxruntime(case: str) -> None:
    assert_matches_onnxruntime(CASES[case]())


def test_every_supported_op_has_a_test_case() -> None:
    covered = {node.op_type for build in CASES.values() for node in build().graph.node}
    assert set(SUPPORTED_OPS) <= covered


def test_table_is_the_single_source_of_supported_ops() -> None:
    assert set(SUPPORTED_OPS) == set(CONVERTERS) | CONSTANT_OPS
    assert list(SUPPORTED_OPS) == sorted(SUPPORTED_OPS)
