"""The piecewise-linear normal form: differential tests against onnxruntime and exact
rational arithmetic, layer structure, and the rejections."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import onnx
import pytest
from onnx import helper

from tests.onnx_builders import dense_relu_model, make_model, random_dense, to_bytes
from verifiers.errors import UnsupportedError
from verifiers.model import Model, load_model
from verifiers.model.evaluate import run_nodes
from verifiers.model.network import AffineLayer, ReluLayer


def _load(proto: onnx.ModelProto) -> Model:
    return load_model(to_bytes(proto))


def assert_network_matches_onnxruntime(model: Model, n: int = 32) -> None:
    x = np.random.default_rng(3).normal(size=(n, model.n_inputs))
    np.testing.assert_allclose(
        model.network.evaluate(x), model.run_onnxruntime(x), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(model.network.evaluate(x), model.evaluate(x), rtol=1e-12, atol=1e-12)


def assert_alternates(model: Model) -> None:
    layers = model.network.layers
    assert isinstance(layers[0], AffineLayer) and isinstance(layers[-1], AffineLayer)
    for i, layer in enumerate(layers):
        assert isinstance(layer, AffineLayer if i % 2 == 0 else ReluLayer)


@pytest.mark.parametrize("spelling", ["gemm", "gemm_transb", "matmul_add", "matmul_add_flipped"])
def test_dense_spellings_match_onnxruntime(spelling: str) -> None:
    weights, biases = random_dense([4, 8, 6, 3])
    model = _load(dense_relu_model(weights, biases, spelling=spelling))  # type: ignore[arg-type]
    assert_alternates(model)
    assert len(model.network.layers) == 5
    assert_network_matches_onnxruntime(model)
    first = model.network.affine_layers[0]
    np.testing.assert_array_equal(first.weight, weights[0].astype(np.float64))


def test_leaky_relu_and_final_activation_get_identity_affine() -> None:
    weights, biases = random_dense([3, 5, 2], seed=1)
    proto = dense_relu_model(
        weights, biases, activation="LeakyRelu", alpha=0.25, final_activation=True
    )
    model = _load(proto)
    assert_alternates(model)
    relus = model.network.relu_layers
    assert [r.alpha for r in relus] == [0.25, 0.25]
    last = model.network.layers[-1]
    assert isinstance(last, AffineLayer) and last.exact
    np.testing.assert_array_equal(last.weight, np.eye(2))
    assert_network_matches_onnxruntime(model)


def test_sub_constant_minus_input_is_not_flipped() -> None:
    """DNNV's simplifier rewrote Sub(c, x) as x - c; the normal form must keep c - x."""
    c = np.array([1.5, -2.0, 0.25], dtype=np.float32)
    w = np.arange(6, dtype=np.float32).reshape(3, 2) - 2.5
    nodes = [
        helper.make_node("Sub", ["c", "x"], ["d"], name="flip"),
        helper.make_node("MatMul", ["d", "W"], ["y"], name="mm"),
    ]
    model = _load(make_model(nodes, input_shape=[1, 3], initializers={"c": c, "W": w}))
    (layer,) = model.network.layers
    assert isinstance(layer, AffineLayer)
    np.testing.assert_array_equal(layer.weight, -w.T.astype(np.float64))
    np.testing.assert_allclose(layer.bias, c.astype(np.float64) @ w.astype(np.float64))
    assert_network_matches_onnxruntime(model)


def _conv_net() -> onnx.ModelProto:
    rng = np.random.default_rng(5)
    inits = {
        "W": rng.normal(size=(3, 2, 3, 3)),
        "B": rng.normal(size=3),
        "s": rng.normal(size=3),
        "b": rng.normal(size=3),
        "m": rng.normal(size=3),
        "v": rng.uniform(0.5, 2.0, size=3),
        "G": rng.normal(size=(12, 4)),
        "c": rng.normal(size=4),
    }
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c1"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "s", "b", "m", "v"], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node(
            "AveragePool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "G", "c"], ["y"], name="fc"),
    ]
    return make_model(nodes, input_shape=[1, 2, 4, 4], initializers=inits)


def test_conv_batchnorm_pool_network_matches_onnxruntime() -> None:
    model = _load(_conv_net())
    assert_alternates(model)
    assert [type(layer).__name__ for layer in model.network.layers] == [
        "AffineLayer",
        "ReluLayer",
        "AffineLayer",
    ]
    assert model.network.n_inputs == 32 and model.network.n_outputs == 4
    assert_network_matches_onnxruntime(model)


@pytest.mark.parametrize("op_type", ["Sigmoid", "Tanh", "MaxPool"])
def test_non_piecewise_linear_ops_are_rejected_by_name(op_type: str) -> None:
    attrs = {"kernel_shape": [2, 2]} if op_type == "MaxPool" else {}
    nodes = [helper.make_node(op_type, ["x"], ["y"], name="squash", **attrs)]
    model = _load(make_model(nodes, input_shape=[1, 1, 4, 4]))
    model.evaluate(np.zeros((1, 16)))  # evaluation still works
    with pytest.raises(UnsupportedError, match="piecewise-linear normal form") as info:
        _ = model.network
    assert info.value.node == "squash" and op_type in str(info.value)


def test_residual_connection_across_activations_is_a_topology_error() -> None:
    weights, biases = random_dense([3, 3, 3], seed=2)
    nodes = [
        helper.make_node("Gemm", ["x", "W0", "b0"], ["h"], name="fc0", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "W1", "b1"], ["g"], name="fc1", transB=1),
        helper.make_node("Add", ["g", "x"], ["y"], name="skip"),
    ]
    inits = {"W0": weights[0], "b0": biases[0], "W1": weights[1], "b1": biases[1]}
    model = _load(make_model(nodes, input_shape=[1, 3], initializers=inits))
    with pytest.raises(UnsupportedError, match="topology") as info:
        _ = model.network
    assert info.value.node == "skip"


def test_skip_connection_inside_one_linear_region_is_fine() -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "x"], ["s"], name="skip"),
        helper.make_node("Relu", ["s"], ["y"], name="relu"),
    ]
    w = np.random.default_rng(4).normal(size=(3, 3))
    model = _load(make_model(nodes, input_shape=[1, 3], initializers={"W": w}))
    assert_network_matches_onnxruntime(model)


# --- the rounding bound against exact rational arithmetic -----------------------------------


def _normalising_net(const_first: bool) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    rng = np.random.default_rng(11)
    p = {
        "mean": rng.normal(size=4).astype(np.float32),
        "std": rng.uniform(0.3, 3.0, size=4).astype(np.float32),
        "W0": rng.normal(size=(4, 6)).astype(np.float32),
        "b0": rng.normal(size=6).astype(np.float32),
        "W1": rng.normal(size=(6, 2)).astype(np.float32),
        "b1": rng.normal(size=2).astype(np.float32),
    }
    sub_inputs = ["mean", "x"] if const_first else ["x", "mean"]
    nodes = [
        helper.make_node("Sub", sub_inputs, ["centred"], name="centre"),
        helper.make_node("Div", ["centred", "std"], ["scaled"], name="scale"),
        helper.make_node("MatMul", ["scaled", "W0"], ["h"], name="mm0"),
        helper.make_node("Add", ["h", "b0"], ["a0"], name="add0"),
        helper.make_node("Relu", ["a0"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "W1"], ["h1"], name="mm1"),
        helper.make_node("Add", ["h1", "b1"], ["y"], name="add1"),
    ]
    return make_model(nodes, input_shape=[1, 4], initializers=p), p


def _exact(value: np.ndarray) -> list:
    return [Fraction(float(v)) for v in np.ravel(value)]


def _exact_first_region(
    x: list[Fraction], p: dict[str, np.ndarray], const_first: bool
) -> list[Fraction]:
    mean, std = _exact(p["mean"]), _exact(p["std"])
    centred = [m - v if const_first else v - m for v, m in zip(x, mean, strict=True)]
    scaled = [c / s for c, s in zip(centred, std, strict=True)]
    w0, b0 = p["W0"].astype(np.float64), _exact(p["b0"])
    return [sum(scaled[i] * Fraction(float(w0[i, j])) for i in range(4)) + b0[j] for j in range(6)]


def _exact_affine(layer: AffineLayer, x: list[Fraction]) -> tuple[list[Fraction], list[Fraction]]:
    """The layer's float64 map and its error bound, both evaluated exactly at x."""
    value, bound = [], []
    for j in range(layer.n_out):
        value.append(
            sum(Fraction(float(w)) * v for w, v in zip(layer.weight[j], x, strict=True))
            + Fraction(float(layer.bias[j]))
        )
        err = sum(Fraction(float(e)) * abs(v) for e, v in zip(layer.weight_err[j], x, strict=True))
        bound.append(err + Fraction(float(layer.bias_err[j])))
    return value, bound


@pytest.mark.parametrize("const_first", [False, True])
def test_rounding_bound_covers_exact_arithmetic(const_first: bool) -> None:
    proto, params = _normalising_net(const_first)
    layer = _load(proto).network.affine_layers[0]
    assert not layer.exact
    rng = np.random.default_rng(12)
    worst, seen = 0.0, Fraction(0)
    for x_row in rng.normal(scale=10.0, size=(25, 4)):
        x = _exact(x_row)
        exact = _exact_first_region(x, params, const_first)
        value, bound = _exact_affine(layer, x)
        for e, v, b in zip(exact, value, bound, strict=True):
            assert abs(e - v) <= b
            seen = max(seen, abs(e - v))
            worst = max(worst, float(b))
    assert seen > 0, "the test should exercise real rounding (Div by std)"
    assert worst < 1e-11, "the bound should stay tight enough to be useful"


def test_data_movement_only_region_is_exact() -> None:
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], name="flat"),
        helper.make_node("Relu", ["f"], ["y"], name="relu"),
    ]
    model = _load(make_model(nodes, input_shape=[1, 2, 2]))
    assert all(layer.exact for layer in model.network.affine_layers)


def _in_long_double(op: object) -> object:
    """The op with its constants in extended precision (float64 -> long double is exact)."""
    arrays = {
        f.name: np.asarray(getattr(op, f.name), dtype=np.longdouble)
        for f in dataclasses.fields(op)  # type: ignore[arg-type]
        if isinstance(getattr(op, f.name), np.ndarray)
    }
    return dataclasses.replace(op, **arrays)  # type: ignore[type-var]


@pytest.mark.skipif(np.finfo(np.longdouble).nmant <= 52, reason="long double is float64 here")
def test_rounding_bound_covers_extended_precision_for_conv_bn_pool_gemm() -> None:
    """A cheaper oracle than Fractions for the ops with deeper rounding: the region evaluated
    in 64-bit-mantissa long double is ~2000x closer to the exact value than float64 is."""
    nodes = [
        helper.make_node(
            "Conv", ["x", "W", "B"], ["c1"], name="conv", pads=[1, 1, 1, 1], strides=[2, 1]
        ),
        helper.make_node("BatchNormalization", ["c1", "s", "b", "m", "v"], ["bn"], name="bn"),
        helper.make_node("AveragePool", ["bn"], ["p"], name="pool", kernel_shape=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "G", "c"], ["y"], name="fc", alpha=0.3, beta=-1.7, transB=1),
    ]
    rng = np.random.default_rng(21)
    inits = {
        "W": rng.normal(size=(3, 2, 3, 3)),
        "B": rng.normal(size=3),
        "s": rng.normal(size=3),
        "b": rng.normal(size=3),
        "m": rng.normal(size=3),
        "v": rng.uniform(0.5, 2.0, size=3),
        "G": rng.normal(size=(4, 12)),
        "c": rng.normal(size=4),
    }
    model = _load(make_model(nodes, input_shape=[1, 2, 4, 5], initializers=inits))
    (layer,) = model.network.layers
    assert isinstance(layer, AffineLayer)
    graph = model.graph
    basis = np.eye(graph.n_inputs, dtype=np.longdouble).reshape(-1, *graph.input_shape)
    long_ops = lambda op: _in_long_double(op.without_bias())  # noqa: E731
    values = run_nodes(graph.nodes, {graph.input_name: basis}, long_ops)
    weight = values[graph.output_name].reshape(graph.n_inputs, -1).T
    zero = np.zeros((1, *graph.input_shape), dtype=np.longdouble)
    bias = run_nodes(graph.nodes, {graph.input_name: zero}, _in_long_double)[graph.output_name]
    slack = 1.0 + 2.0**-8  # long double's own rounding, far below float64's
    assert np.all(np.abs(weight - layer.weight) <= layer.weight_err * slack)
    assert np.all(np.abs(bias.ravel() - layer.bias) <= layer.bias_err * slack)
    assert np.any(weight != layer.weight), "the test should exercise real rounding"
