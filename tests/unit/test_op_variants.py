"""Generated attribute and optional-input variants of every supported op: each must be
modelled faithfully (IR against onnxruntime, graph bounds enclosing onnxruntime's outputs)
or refused with an error naming the node (tests/op_oracle.py). `expect` pins the variants
whose outcome is known; None leaves it to the oracle (faithful or refused, never wrong)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import onnx
import pytest
from onnx import helper

from tests.onnx_builders import make_model, single_op_model
from tests.op_oracle import Outcome, check_model

RNG = np.random.default_rng(2024)
MODELLED, REFUSED = Outcome.MODELLED, Outcome.REFUSED


def _w(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).astype(np.float32)


Case = tuple[Callable[[], onnx.ModelProto], Outcome | None]
CASES: dict[str, Case] = {}

# --- pooling: kernel, strides, explicit and automatic pads, dilations, count_include_pad ------
POOL_WINDOWS = [
    dict(kernel_shape=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 2, 1]),
    dict(kernel_shape=[2, 3], strides=[1, 2], dilations=[2, 1]),
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_LOWER"),
    dict(kernel_shape=[3, 2], strides=[1, 1], auto_pad="VALID"),
]
SAME_DILATED = [
    dict(kernel_shape=[3, 2], strides=[2, 1], dilations=[2, 2], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[3, 2], strides=[2, 1], dilations=[1, 2], auto_pad="SAME_LOWER"),
]
for i, window in enumerate(POOL_WINDOWS + SAME_DILATED):
    # onnxruntime sizes a SAME output without the dilation, the ONNX spec with it: refused.
    expect = REFUSED if window in SAME_DILATED else MODELLED
    CASES[f"maxpool{i}"] = (lambda w=window: single_op_model("MaxPool", [1, 2, 7, 6], **w), expect)
    for include in (0, 1):
        CASES[f"averagepool{i}_include{include}"] = (
            lambda w=window, c=include: single_op_model(
                "AveragePool", [1, 2, 7, 6], opset=19, count_include_pad=c, **w
            ),
            expect,
        )
for op, extra in itertools.product(
    ("MaxPool", "AveragePool"), (dict(ceil_mode=1), dict(pads=[2, 0, 0, 0]))
):
    CASES[f"{op}_{next(iter(extra))}"] = (
        lambda op=op, e=extra: single_op_model(op, [1, 1, 5, 5], kernel_shape=[2, 2], **e),
        REFUSED,
    )


CASES["maxpool_indices_output"] = (
    lambda: make_model(
        [helper.make_node("MaxPool", ["x"], ["v", "y"], name="pool", kernel_shape=[2, 2])],
        input_shape=[1, 1, 4, 4],
    ),
    REFUSED,
)
CASES["maxpool_indices_unused"] = (
    lambda: make_model(
        [helper.make_node("MaxPool", ["x"], ["y", "i"], name="pool", kernel_shape=[2, 2])],
        input_shape=[1, 1, 4, 4],
    ),
    MODELLED,
)

# --- Conv: group, dilations, auto_pad, asymmetric pads ----------------------------------------
CONV_WINDOWS = [
    dict(pads=[1, 0, 2, 1]),
    dict(strides=[2, 1], dilations=[1, 2]),
    dict(auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(auto_pad="SAME_LOWER", strides=[1, 1]),
    dict(auto_pad="VALID", strides=[2, 2]),
]
for (i, window), group in itertools.product(enumerate(CONV_WINDOWS), (1, 2)):
    CASES[f"conv{i}_group{group}"] = (
        lambda w=window, g=group: single_op_model(
            "Conv",
            [1, 4, 7, 6],
            inputs=["x", "W", "B"],
            initializers={"W": _w(4, 4 // g, 3, 2), "B": _w(4)},
            group=g,
            **w,
        ),
        MODELLED,
    )
for name, attrs in {
    "same_dilated": dict(auto_pad="SAME_UPPER", dilations=[2, 2]),
    "pads_and_auto_pad": dict(auto_pad="VALID", pads=[0, 0, 0, 0]),
    "kernel_shape_mismatch": dict(kernel_shape=[2, 2]),
    "group_mismatch": dict(group=2),
}.items():
    CASES[f"conv_{name}"] = (
        lambda a=attrs: single_op_model(
            "Conv", [1, 2, 5, 5], inputs=["x", "W"], initializers={"W": _w(2, 2, 3, 3)}, **a
        ),
        REFUSED,
    )

# --- Clip: bounds as inputs or attributes, either missing, min > max --------------------------
CLIP_BOUNDS = [(-0.5, 0.25), (0.5, -0.25), (0.3, 0.3), (None, 0.25), (-0.1, None), (None, None)]
for low, high in CLIP_BOUNDS:
    inputs, inits = ["x", "", ""], {}
    for position, (name, value) in enumerate((("lo", low), ("hi", high)), start=1):
        if value is not None:
            inputs[position], inits[name] = name, np.array(value, np.float32)
    CASES[f"clip_{low}_{high}"] = (
        lambda i=inputs, v=inits: single_op_model("Clip", [2, 5], inputs=i, initializers=v),
        MODELLED,
    )
    attrs = {k: v for k, v in (("min", low), ("max", high)) if v is not None}
    # Before opset 11 onnxruntime refuses min > max.
    expect = REFUSED if low is not None and high is not None and low > high else MODELLED
    CASES[f"clip6_{low}_{high}"] = (
        lambda a=attrs: single_op_model("Clip", [2, 5], opset=6, **a),
        expect,
    )
for shape, expect in (((1,), MODELLED), ((5,), REFUSED)):
    CASES[f"clip_min_shape{shape}"] = (
        lambda s=shape: single_op_model(
            "Clip", [1, 5], inputs=["x", "lo"], initializers={"lo": np.full(s, -0.2, np.float32)}
        ),
        expect,
    )

# --- PRelu slopes (broadcast shapes, > 1, negative); LeakyRelu alpha ----------------------------
for shape, scale in itertools.product([(3, 1, 1), (1,), (2,), (2, 2), (3, 2, 2)], (1.0, 3.0, -2.0)):
    CASES[f"prelu{shape}x{scale}"] = (
        lambda s=shape, k=scale: single_op_model(
            "PRelu", [1, 3, 2, 2], inputs=["x", "s"], initializers={"s": _w(*s) * k}
        ),
        MODELLED,
    )
for alpha in (None, 0.0, 0.5, 1.0, 1.5, -0.5, -3.0):
    attrs = {} if alpha is None else {"alpha": alpha}
    CASES[f"leakyrelu{alpha}"] = (
        lambda a=attrs: single_op_model("LeakyRelu", [1, 5], **a),
        MODELLED,
    )

# --- MatMul: 1-D operands, batch dims on either side --------------------------------------------
MATMULS = [
    ([3], (3, 2), False), ([3], (2, 3, 4), False), ([4], (2, 3, 4), True), ([4], (3, 4), True),
    ([4], (4,), True), ([2, 3], (3,), False), ([2, 3], (2,), True), ([2, 3, 4], (2, 4, 5), False),
    ([3, 4], (2, 4, 5), False), ([2, 3, 4], (2, 5, 3), True), ([2, 1, 3, 4], (5, 4, 2), False),
    ([5], (2, 1, 5, 3), False), ([5], (2, 1, 3, 5), True),
]  # fmt: skip
for x_shape, w_shape, left in MATMULS:
    CASES[f"matmul_x{x_shape}_w{w_shape}_{'left' if left else 'right'}"] = (
        lambda xs=x_shape, ws=w_shape, lft=left: single_op_model(
            "MatMul", xs, inputs=["W", "x"] if lft else ["x", "W"], initializers={"W": _w(*ws)}
        ),
        MODELLED,
    )

# --- Gemm: transA, transB, alpha, beta, C broadcasting -------------------------------------------
for ta, tb, c_shape, (alpha, beta) in itertools.product(
    (0, 1), (0, 1), (None, (4,), (1, 4), (3, 1), (3, 4)), ((1.0, 1.0), (0.5, -2.0))
):
    inits = {"B": _w(4, 2) if tb else _w(2, 4)}
    if c_shape is not None:
        inits["C"] = _w(*c_shape)
    CASES[f"gemm_a{ta}_b{tb}_c{c_shape}_{alpha}_{beta}"] = (
        lambda i=inits, ta=ta, tb=tb, al=alpha, be=beta: single_op_model(
            "Gemm",
            [2, 3] if ta else [3, 2],
            inputs=list(("x", *i)),
            initializers=i,
            transA=ta,
            transB=tb,
            alpha=al,
            beta=be,
        ),
        MODELLED,
    )

# --- Max / Min: one input, several, constants anywhere, broadcasting -----------------------------
for op in ("Max", "Min"):
    CASES[f"{op}_single"] = (lambda op=op: single_op_model(op, [1, 4]), MODELLED)
    CASES[f"{op}_const_broadcast"] = (
        lambda op=op: single_op_model(op, [4], inputs=["c", "x", "d"],
                                      initializers={"c": _w(3, 4), "d": _w(1)}),
        MODELLED,
    )  # fmt: skip
    CASES[f"{op}_four"] = (
        lambda op=op: make_model(
            [
                helper.make_node("Mul", ["x", "k"], ["x3"], name="scale"),
                helper.make_node("Reshape", ["x", "s"], ["xr"], name="column"),
                helper.make_node(op, ["x", "x3", "c", "xr"], ["y"], name="the_op"),
            ],
            input_shape=[1, 3],
            initializers={"k": [-3.0], "c": _w(3), "s": np.array([3, 1])},
        ),
        MODELLED,
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_variant_is_modelled_faithfully_or_refused(case: str) -> None:
    build, expect = CASES[case]
    proto = build()
    outcome, why = check_model(proto, proto.graph.node[-1].name, boxes=2)
    if expect is not None:
        assert outcome is expect, why
