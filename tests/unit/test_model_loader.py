"""Loading: validation errors, batch handling, subnetworks, and the ACAS Xu spelling."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.fixtures.make_fixtures import SUB5, onnx_network, random_layers
from tests.onnx_builders import dense_relu_model, make_model, random_dense, to_bytes
from verifiers.errors import ModelError, UnsupportedError
from verifiers.model import load_model


def _dense_bytes() -> bytes:
    weights, biases = random_dense([3, 5, 4, 2])
    return to_bytes(dense_relu_model(weights, biases, spelling="matmul_add"))


def test_model_api_from_bytes_and_path(tmp_path: Path) -> None:
    data = _dense_bytes()
    path = tmp_path / "net.onnx"
    path.write_bytes(data)
    for source in (data, path, str(path)):
        model = load_model(source)
        assert (model.n_inputs, model.n_outputs) == (3, 2)
        assert (model.input_name, model.output_name) == ("x", "y")
        assert (model.input_shape, model.output_shape) == ((1, 3), (1, 2))
        assert model.sha256 == hashlib.sha256(data).hexdigest()
        assert model.onnx_bytes == data
    out = model.run_onnxruntime(np.zeros((3, 3)))
    assert out.dtype == np.float32 and out.shape == (3, 2)


@pytest.mark.parametrize("garbage", [b"", b"hello, world", b"\x00\xff\x13garbage" * 5])
def test_garbage_bytes_are_not_a_model(garbage: bytes) -> None:
    with pytest.raises(ModelError, match="not an ONNX model"):
        load_model(garbage)


def test_missing_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read"):
        load_model(tmp_path / "absent.onnx")


def test_all_unsupported_nodes_are_listed_in_one_error() -> None:
    nodes = [
        helper.make_node("Sin", ["x"], ["a"], name="bad_sin"),
        helper.make_node("Relu", ["a"], ["b"], name="fine"),
        helper.make_node("Exp", ["b"], ["c"], name="bad_exp"),
        helper.make_node("Mul", ["c", "c"], ["y"], name="bad_square"),
    ]
    with pytest.raises(UnsupportedError) as info:
        load_model(to_bytes(make_model(nodes, input_shape=[1, 3])))
    message = str(info.value)
    for expected in ("'bad_sin' (Sin)", "'bad_exp' (Exp)", "'bad_square' (Mul)", "Gemm", "Conv"):
        assert expected in message
    assert "'fine'" not in message
    assert info.value.node == "bad_sin"


def test_custom_domain_is_rejected() -> None:
    node = helper.make_node("Fancy", ["x"], ["y"], name="custom", domain="com.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    with pytest.raises(ModelError, match="custom operator domains") as info:
        load_model(to_bytes(model))
    assert "com.example::Fancy" in str(info.value) and info.value.node == "custom"


def test_external_data_is_rejected() -> None:
    node = helper.make_node("Add", ["x", "c"], ["y"], name="add")
    model = make_model([node], input_shape=[1, 2], initializers={"c": [1.0, 2.0]})
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "weights.bin"
    with pytest.raises(ModelError, match="external-data tensors.*c"):
        load_model(to_bytes(model))


@pytest.mark.parametrize("elem_type", [TensorProto.INT64, TensorProto.DOUBLE])
def test_non_float_input_is_rejected(elem_type: int) -> None:
    node = helper.make_node("Identity", ["x"], ["y"], name="id")
    model = make_model([node], input_shape=[1, 2], input_type=elem_type)
    with pytest.raises(ModelError, match="input 'x' has type"):
        load_model(to_bytes(model))


def test_two_inputs_are_named_in_the_error() -> None:
    node = helper.make_node("Add", ["x", "z"], ["y"], name="add")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2]) for n in ("x", "z")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
    )
    with pytest.raises(ModelError, match="exactly one input tensor.*'x', 'z'"):
        load_model(to_bytes(helper.make_model(graph)))


def test_two_outputs_are_named_in_the_error_and_a_subnetwork_fixes_it() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Neg", ["x"], ["b"], name="neg"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2]) for n in ("a", "b")],
    )
    data = to_bytes(helper.make_model(graph))
    with pytest.raises(ModelError, match="exactly one output tensor.*'a', 'b'"):
        load_model(data)
    assert load_model(data, outputs=["a"]).n_outputs == 2


def test_initializers_listed_as_inputs_are_constants() -> None:
    node = helper.make_node("Add", ["x", "c"], ["y"], name="add")
    model = make_model([node], input_shape=[1, 2], initializers={"c": [1.0, 2.0]}, check=False)
    model.graph.input.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, [2]))
    model = load_model(to_bytes(model))
    assert model.input_name == "x"
    np.testing.assert_allclose(model.evaluate(np.array([[0.5, 0.5]])), [[1.5, 2.5]])


def test_symbolic_batch_dimension_becomes_one() -> None:
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    model = load_model(to_bytes(make_model([node], input_shape=["N", 3])))
    assert model.input_shape == (1, 3) and model.output_shape == (1, 3)
    x = np.random.default_rng(0).normal(size=(4, 3))
    np.testing.assert_allclose(model.evaluate(x), model.run_onnxruntime(x), atol=1e-6)


def test_symbolic_inner_dimension_is_rejected() -> None:
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    with pytest.raises(ModelError, match="symbolic dimension at axis 1"):
        load_model(to_bytes(make_model([node], input_shape=[1, "W"])))


def test_subnetwork_matches_onnxruntime_on_the_extracted_part() -> None:
    data = _dense_bytes()
    sub = load_model(data, inputs=["act0"], outputs=["dense1"])
    assert (sub.input_name, sub.output_name, sub.n_inputs, sub.n_outputs) == (
        "act0",
        "dense1",
        5,
        4,
    )
    assert sub.onnx_bytes != data and sub.sha256 == hashlib.sha256(data).hexdigest()
    x = np.random.default_rng(1).normal(size=(10, 5))
    np.testing.assert_allclose(sub.evaluate(x), sub.run_onnxruntime(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        sub.network.evaluate(x), sub.run_onnxruntime(x), rtol=1e-5, atol=1e-5
    )
    assert len(sub.network.layers) == 1


def test_subnetwork_with_unknown_tensor_name() -> None:
    with pytest.raises(ModelError, match="unknown tensor name.*no_such_tensor"):
        load_model(_dense_bytes(), outputs=["no_such_tensor"])


def test_acasxu_shaped_network_loads_and_matches_onnxruntime() -> None:
    """ACAS Xu's layout: Sub, Flatten, then MatMul + Add + Relu layers (6 x 50)."""
    weights, biases = random_layers(3, [5, 50, 50, 50, 50, 50, 50, 5])
    weights = [w / np.sqrt(w.shape[1]) for w in weights]  # outputs of order 1, as in ACAS Xu
    model = load_model(onnx_network(weights, biases, SUB5).SerializeToString())
    assert (model.n_inputs, model.n_outputs) == (5, 5)
    assert [n.op_type for n in model.graph.nodes[:4]] == ["Sub", "Flatten", "MatMul", "Add"]
    x = np.random.default_rng(2).uniform(-0.5, 0.5, size=(50, 5))
    expected = model.run_onnxruntime(x)
    np.testing.assert_allclose(model.evaluate(x), expected, rtol=1e-5, atol=1e-5)
    network = model.network
    assert len(network.relu_layers) == 6 and all(r.size == 50 for r in network.relu_layers)
    np.testing.assert_allclose(network.evaluate(x), expected, rtol=1e-5, atol=1e-5)


def test_model_proto_is_unchanged_by_loading() -> None:
    proto = dense_relu_model(*random_dense([2, 2]))
    before = proto.SerializeToString()
    load_model(proto.SerializeToString())
    assert onnx.ModelProto.FromString(before) == proto
