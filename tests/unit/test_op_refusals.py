"""Variants the loader must refuse with an error naming the node and the attribute or input
(never a traceback, never a silent model), generated over ops and values; float attribute
defaults as onnxruntime's float32; Clip with min > max never proved wrongly."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import onnx
import pytest
from onnx import helper

from tests.onnx_builders import make_model, single_op_model, to_bytes
from verifiers.components import OnnxComponent
from verifiers.errors import VerifierError
from verifiers.model import load_model
from verifiers.model.support import support_report
from verifiers.options import Options
from verifiers.result import Verdict
from verifiers.spec.vnnlib import parse_vnnlib
from verifiers.verify import verify

RNG = np.random.default_rng(7)


def _w(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).astype(np.float32)


def assert_refused(proto: onnx.ModelProto, *words: str) -> str:
    """load_model and `proofwell supports` both refuse, the message naming every word."""
    data = to_bytes(proto)
    with pytest.raises(VerifierError) as caught:
        load_model(data)
    message = str(caught.value)
    for word in words:
        assert word in message, f"'{word}' not in: {message}"
    report = support_report(data)
    assert not report.supported and report.error == message
    return message


# --- float attributes holding inf or NaN ---------------------------------------------------------
def _bn(**attrs: object) -> onnx.ModelProto:
    inits = {"s": _w(3), "b": _w(3), "m": _w(3), "v": np.abs(_w(3)) + 0.1}
    return single_op_model("BatchNormalization", [1, 3], inputs=list(("x", *inits)),
                           initializers=inits, **attrs)  # fmt: skip


def _gemm(**attrs: object) -> onnx.ModelProto:
    inits = {"B": _w(2, 3), "C": _w(3)}
    return single_op_model("Gemm", [1, 2], inputs=["x", "B", "C"], initializers=inits, **attrs)


FLOAT_ATTRIBUTES: dict[str, Callable[[float], onnx.ModelProto]] = {
    "LeakyRelu.alpha": lambda v: single_op_model("LeakyRelu", [1, 4], alpha=v),
    "Gemm.alpha": lambda v: _gemm(alpha=v),
    "Gemm.beta": lambda v: _gemm(beta=v),
    "BatchNormalization.epsilon": lambda v: _bn(epsilon=v),
    "Clip.min": lambda v: single_op_model("Clip", [1, 4], opset=6, min=v, max=1.0),
    "Clip.max": lambda v: single_op_model("Clip", [1, 4], opset=6, max=v),
    "Pad.value": lambda v: single_op_model("Pad", [1, 4], opset=2, pads=[0, 1, 0, 1], value=v),
}


@pytest.mark.parametrize(
    ("where", "value"),
    list(itertools.product(sorted(FLOAT_ATTRIBUTES), (math.nan, math.inf, -math.inf))),
)
def test_non_finite_float_attribute_is_refused(where: str, value: float) -> None:
    op_type, attribute = where.split(".")
    assert_refused(FLOAT_ATTRIBUTES[where](value), f"the_{op_type.lower()}", f"'{attribute}'")


# --- constants that define no real-valued function, or attributes onnxruntime refuses -----------
REFUSALS: dict[str, tuple[Callable[[], onnx.ModelProto], tuple[str, ...]]] = {
    "div_by_zero": (
        lambda: single_op_model("Div", [1, 2], inputs=["x", "c"], initializers={"c": [0.0, 2.0]}),
        ("the_div", "divisor"),
    ),
    "batchnorm_var_negative": (
        lambda: single_op_model(
            "BatchNormalization",
            [1, 2],
            inputs=["x", "s", "b", "m", "v"],
            initializers={"s": _w(2), "b": _w(2), "m": _w(2), "v": [-1.0, 0.5]},
        ),
        ("the_batchnormalization", "var + epsilon"),
    ),  # fmt: skip
    "batchnorm_spatial0": (
        lambda: single_op_model(
            "BatchNormalization",
            [1, 2, 2, 2],
            inputs=["x", "s", "b", "m", "v"],
            opset=7,
            initializers={"s": _w(2), "b": _w(2), "m": _w(2), "v": [1.0, 0.5]},
            spatial=0,
        ),
        ("the_batchnormalization", "spatial"),
    ),  # fmt: skip
    "dropout_opset6_training": (
        lambda: single_op_model("Dropout", [1, 4], opset=6),
        ("the_dropout", "is_test"),
    ),
    "clip_min_not_scalar": (
        lambda: single_op_model(
            "Clip", [1, 3], inputs=["x", "lo"], initializers={"lo": np.zeros(3, np.float32)}
        ),
        ("the_clip", "min (input 1)"),
    ),
    "pool_kernel_beyond_input": (
        lambda: single_op_model("MaxPool", [1, 1, 2, 2], kernel_shape=[3, 3]),
        ("the_maxpool", "kernel"),
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_variant_is_refused_by_name(case: str) -> None:
    build, words = REFUSALS[case]
    assert_refused(build(), *words)


# --- outputs beyond the first (MaxPool's Indices, Dropout's mask) --------------------------------
def _second_output(op_type: str, consumed: bool) -> onnx.ModelProto:
    attrs = {"kernel_shape": [1, 1]} if op_type == "MaxPool" else {}
    extra = "extra" if consumed else "y"
    nodes = [helper.make_node(op_type, ["x"], ["first", extra], name="producer", **attrs)]
    if consumed:
        nodes.append(
            helper.make_node("Cast", [extra], ["y"], name="reader", to=onnx.TensorProto.FLOAT)
        )
    return make_model(nodes, input_shape=[1, 1, 2, 2])


@pytest.mark.parametrize(
    ("op_type", "consumed"), list(itertools.product(("MaxPool", "Dropout"), (False, True)))
)
def test_a_used_second_output_is_refused_by_name(op_type: str, consumed: bool) -> None:
    proto = _second_output(op_type, consumed)
    assert_refused(proto, "'producer'", "output 1", "only output 0 is modelled")


# --- parameters computed from the model input ----------------------------------------------------
VARIABLE_PARAMETERS: dict[str, tuple[str, list[int], list[str], list[int], dict]] = {
    # op type, input shape, inputs ("p" computed from x), p's shape, other initializers
    "Dropout.ratio": ("Dropout", [1], ["x", "p"], [], {}),
    "Clip.min": ("Clip", [1], ["x", "p"], [], {}),
    "Pad.value": ("Pad", [1], ["x", "pads", "p"], [], {"pads": np.array([0, 1])}),
    "PRelu.slope": ("PRelu", [1, 4], ["x", "p"], [4], {}),
    "Gemm.C": ("Gemm", [1, 4], ["x", "B", "p"], [4], {"B": _w(4, 4)}),
    "BatchNormalization.scale": (
        "BatchNormalization", [1, 4], ["x", "p", "b", "m", "v"], [4],
        {"b": _w(4), "m": _w(4), "v": np.ones(4, np.float32)},
    ),
    "Conv.bias": ("Conv", [1, 1, 1, 4], ["x", "W", "p"], [4], {"W": _w(4, 1, 1, 1)}),
}  # fmt: skip


@pytest.mark.parametrize("where", sorted(VARIABLE_PARAMETERS))
def test_a_parameter_computed_from_the_input_is_refused(where: str) -> None:
    op_type, shape, inputs, p_shape, inits = VARIABLE_PARAMETERS[where]
    nodes = [
        helper.make_node("Reshape", ["x", "p_shape"], ["p"], name="param"),
        helper.make_node(op_type, inputs, ["y"], name="the_op"),
    ]
    proto = make_model(
        nodes, input_shape=shape, initializers={**inits, "p_shape": np.array(p_shape, np.int64)}
    )
    assert_refused(proto, "'the_op'", f"input {inputs.index('p')} ('p')")


# --- float attribute defaults are onnxruntime's float32 values -----------------------------------
@pytest.mark.parametrize(
    ("build", "op_type", "attribute"),
    [
        (lambda: single_op_model("LeakyRelu", [1, 3]), "LeakyRelu", "alpha"),
        (lambda: _bn(), "BatchNormalization", "epsilon"),
    ],
)
def test_float_attribute_defaults_are_float32(build, op_type: str, attribute: str) -> None:
    default = onnx.defs.get_schema(op_type, 17).attributes[attribute].default_value.f
    assert default == float(np.float32(default))  # the schema's default is a float32
    op = load_model(to_bytes(build())).graph.nodes[-1].op
    assert getattr(op, attribute) == default


# --- Clip with min > max: every output is max, and no property is proved against that ----------
def test_clip_with_min_above_max_is_never_proved_wrongly() -> None:
    proto = single_op_model(
        "Clip", [1, 2], inputs=["x", "lo", "hi"], initializers={"lo": 0.5, "hi": -0.25}
    )
    declared = "".join(f"(declare-const {v} Real)" for v in ("X_0", "X_1", "Y_0", "Y_1"))
    box = "".join(f"(assert (>= X_{i} -1))(assert (<= X_{i} -0.5))" for i in range(2))
    # onnxruntime: Y_0 = -0.25 everywhere, so the unsafe Y_0 <= -0.2 is reached.
    result = verify(
        OnnxComponent(to_bytes(proto)), parse_vnnlib(declared + box + "(assert (<= Y_0 -0.2))")
    )
    assert result.verdict is Verdict.VIOLATED


def _old_opset(op_type: str) -> onnx.ModelProto:
    """Models the loader reads (the op's semantics did not change) at opsets onnxruntime
    does not implement."""
    if op_type == "PRelu":
        nodes = [helper.make_node("PRelu", ["x", "s"], ["y"])]
        return make_model(nodes, input_shape=[1, 2], initializers={"s": [0.25, 0.25]}, opset=6)
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["h"], transB=1)]
    nodes.append(helper.make_node("Relu", ["h"], ["y"]))
    init = {"W": _w(2, 2), "b": np.zeros(2, np.float32)}
    return make_model(nodes, input_shape=[1, 2], initializers=init, opset=6, check=False)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("op_type", ["PRelu", "Gemm"])
def test_a_model_onnxruntime_cannot_run_is_an_error_naming_it(op_type: str, workers: int) -> None:
    """A counterexample must replay in onnxruntime: where it cannot run the model, the
    answer is a clear error, not an internal one."""
    data = to_bytes(_old_opset(op_type))
    load_model(data)  # our loader reads it
    text = "\n".join(
        ["(declare-const X_0 Real)", "(declare-const X_1 Real)"]
        + ["(declare-const Y_0 Real)", "(declare-const Y_1 Real)"]
        + [f"(assert ({op} X_{i} {v}))" for i in (0, 1) for op, v in ((">=", -1), ("<=", 1))]
        + ["(assert (<= Y_0 100.0))"]  # every input is unsafe: falsification replays one
    )
    result = verify(OnnxComponent(data), parse_vnnlib(text), Options(timeout_s=10, workers=workers))
    assert result.verdict is Verdict.ERROR
    assert "onnxruntime cannot run this model" in result.reason and op_type in result.reason
