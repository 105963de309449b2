"""The one table of supported ONNX operators: op type -> converter to an IR op.

A converter reads one ONNX node (attributes, constant operands, input shapes) and returns
the op's dataclass, or raises UnsupportedError for a variant it does not handle (the loader
collects these so one error lists every bad node). Nodes whose inputs are all constants
never reach a converter: the loader folds them. To add an operator see docs/operators.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from verifiers.model import ops, ops_graph
from verifiers.model.convert_windows import average_pool, conv, max_pool
from verifiers.model.ir import Op
from verifiers.model.node_context import NodeContext, UnsupportedVariant, axis_of

__all__ = ["CONVERTERS", "SUPPORTED_OPS", "NodeContext", "UnsupportedVariant"]


# Float attribute defaults as onnxruntime uses them: float32 (0.01f is not 0.01). The model
# proved is the one the float32 values define, so a default must be rounded like a weight.
F32_DEFAULTS = {"alpha": float(np.float32(0.01)), "epsilon": float(np.float32(1e-5))}


def _out_rank(ctx: NodeContext) -> int:
    return max(len(ctx.shape(i)) for i in range(len(ctx.node.input)))


# --- elementwise -------------------------------------------------------------------------------


def _add(ctx: NodeContext) -> Op:
    const = ctx.const(0) if ctx.const(0) is not None else ctx.const(1)
    return ops.Add(rank=_out_rank(ctx), const=const)


def _sub(ctx: NodeContext) -> Op:
    first, second = ctx.const(0), ctx.const(1)
    if first is not None:
        return ops.Sub(rank=_out_rank(ctx), const=first, const_first=True)
    return ops.Sub(rank=_out_rank(ctx), const=second)


def _mul(ctx: NodeContext) -> Op:
    const = ctx.const(0) if ctx.const(0) is not None else ctx.const(1)
    if const is None:
        raise ctx.unsupported("a product of two variable tensors is not linear")
    return ops.Mul(rank=_out_rank(ctx), const=const)


def _div(ctx: NodeContext) -> Op:
    divisor = ctx.required_const(1, "the divisor")
    if np.any(divisor == 0):
        raise ctx.unsupported("the divisor holds a zero: no real-valued function")
    return ops.Div(rank=_out_rank(ctx), const=divisor)


# --- dense layers ------------------------------------------------------------------------------


def _matmul(ctx: NodeContext) -> Op:
    left = ctx.const(0)
    if left is not None:
        return ops.MatMul(const=left, const_left=True, var_rank=len(ctx.shape(1)))
    right = ctx.required_const(1, "one MatMul operand")
    return ops.MatMul(const=right, const_left=False, var_rank=len(ctx.shape(0)))


def _gemm(ctx: NodeContext) -> Op:
    if ctx.const(0) is not None:
        raise ctx.unsupported("the variable operand must be A (input 0)")
    c = ctx.required_const(2, "C") if ctx.has_input(2) else None
    return ops.Gemm(
        b=ctx.required_const(1, "B"),
        c=c,
        alpha=float(ctx.attr("alpha", 1.0)),
        beta=float(ctx.attr("beta", 1.0)),
        trans_a=bool(ctx.attr("transA", 0)),
        trans_b=bool(ctx.attr("transB", 0)),
    )


# --- shapes and data movement ------------------------------------------------------------------


def _flatten(ctx: NodeContext) -> Op:
    shape = ctx.shape(0)
    axis = axis_of(int(ctx.attr("axis", 1)), len(shape))
    return ops.Flatten(shape=(int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))))


def _reshape(ctx: NodeContext) -> Op:
    target = ctx.attr("shape") if ctx.opset < 5 else ctx.required_const(1, "the shape")
    dims = [int(d) for d in np.asarray(target).ravel()]
    source = ctx.shape(0)
    if not ctx.attr("allowzero", 0):
        dims = [source[i] if d == 0 else d for i, d in enumerate(dims)]
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1]))
        dims[dims.index(-1)] = int(np.prod(source)) // max(known, 1)
    return ops.Reshape(shape=tuple(dims))


def _axes(ctx: NodeContext) -> list[int] | None:
    """Squeeze/Unsqueeze axes: an attribute before opset 13, an optional input from 13."""
    if ctx.opset < 13:
        axes = ctx.attr("axes")
        return None if axes is None else list(axes)
    if not ctx.has_input(1):
        return None
    return [int(a) for a in ctx.required_const(1, "the axes").ravel()]


def _squeeze(ctx: NodeContext) -> Op:
    shape = ctx.shape(0)
    axes = _axes(ctx)
    drop = {i for i, d in enumerate(shape) if d == 1} if axes is None else set()
    drop |= {axis_of(a, len(shape)) for a in axes or []}
    return ops.Squeeze(shape=tuple(d for i, d in enumerate(shape) if i not in drop))


def _unsqueeze(ctx: NodeContext) -> Op:
    axes = _axes(ctx)
    if axes is None:
        raise ctx.unsupported("missing axes")
    dims = list(ctx.shape(0))
    rank = len(dims) + len(axes)
    for axis in sorted(axis_of(a, rank) for a in axes):
        dims.insert(axis, 1)
    return ops.Unsqueeze(shape=tuple(dims))


def _transpose(ctx: NodeContext) -> Op:
    rank = len(ctx.shape(0))
    perm = ctx.attr("perm") or list(reversed(range(rank)))
    return ops.Transpose(perm=tuple(int(p) for p in perm))


def _concat(ctx: NodeContext) -> Op:
    parts = tuple(ctx.const(i) for i in range(len(ctx.node.input)))
    axis = axis_of(int(ctx.attr("axis")), len(ctx.shape(0)))
    return ops.Concat(axis=axis, parts=parts)


# --- convolution, normalisation and pooling ----------------------------------------------------


def _batch_normalization(ctx: NodeContext) -> Op:
    if ctx.attr("training_mode", 0) or len(ctx.node.output) > 1:
        raise ctx.unsupported("only inference mode (one output) is supported")
    if ctx.opset < 7 and not ctx.attr("is_test", 0):
        raise ctx.unsupported("is_test=0 (training mode) is not supported")
    if not ctx.attr("spatial", 1):
        raise ctx.unsupported("spatial=0 (statistics per activation) is not supported")
    scale, bias, mean, var = (ctx.required_const(i, "a parameter") for i in range(1, 5))
    channels = ctx.shape(0)[1] if len(ctx.shape(0)) > 1 else 1
    if any(p.shape != (channels,) for p in (scale, bias, mean, var)):
        raise ctx.unsupported(f"scale, B, mean and var must each have shape ({channels},)")
    epsilon = float(ctx.attr("epsilon", F32_DEFAULTS["epsilon"]))
    if np.any(var + epsilon <= 0):
        raise ctx.unsupported("var + epsilon is not positive: no real-valued function")
    return ops.BatchNormalization(scale=scale, bias=bias, mean=mean, var=var, epsilon=epsilon)


def _leaky_relu(ctx: NodeContext) -> Op:
    return ops.LeakyRelu(alpha=float(ctx.attr("alpha", F32_DEFAULTS["alpha"])))


# --- ops only the graph engine bounds ----------------------------------------------------------


def _clip(ctx: NodeContext) -> Op:
    if ctx.opset < 11:
        low, high = ctx.attr("min"), ctx.attr("max")
        low, high = (None if v is None else float(v) for v in (low, high))
        if low is not None and high is not None and low > high:
            raise ctx.unsupported(f"min {low} > max {high} (onnxruntime refuses it)")
    else:
        low = ctx.scalar_const(1, "min") if ctx.has_input(1) else None
        high = ctx.scalar_const(2, "max") if ctx.has_input(2) else None
        if low is not None and high is not None and low > high:
            # ONNX (opset 11+) and onnxruntime: every output is max. So is max(x, max).
            low = high
    return ops_graph.Clip(low=low, high=high)


def _prelu(ctx: NodeContext) -> Op:
    slope = ctx.required_const(1, "the slope")
    return ops_graph.PRelu(rank=_out_rank(ctx), slope=slope)


def _max_min(cls: type) -> Callable[[NodeContext], Op]:
    def convert(ctx: NodeContext) -> Op:
        consts = [ctx.const(i) for i in range(len(ctx.node.input))]
        consts = [c for c in consts if c is not None]
        const = None
        if consts:
            const = consts[0]
            for c in consts[1:]:
                const = np.maximum(const, c) if cls is ops_graph.Max else np.minimum(const, c)
        return cls(rank=_out_rank(ctx), const=const)

    return convert


def _pad(ctx: NodeContext) -> Op:
    mode = ctx.attr("mode", "constant")
    if mode != "constant":
        raise ctx.unsupported(f"mode '{mode}' is not supported (only 'constant')")
    if ctx.opset < 11:
        pads, value = ctx.attr("pads"), float(ctx.attr("value", 0.0))
    else:
        pads = ctx.required_const(1, "the pads")
        value = ctx.scalar_const(2, "the value") if ctx.has_input(2) else 0.0
        if ctx.has_input(3):
            raise ctx.unsupported("the axes input is not supported")
    pads = tuple(int(p) for p in np.asarray(pads).ravel())
    if any(p < 0 for p in pads):
        raise ctx.unsupported("negative pads (cropping) are not supported")
    return ops_graph.Pad(pads=pads, value=value)


def _softmax(ctx: NodeContext) -> Op:
    rank = len(ctx.shape(0))
    default = -1 if ctx.opset >= 13 else 1
    axis = axis_of(int(ctx.attr("axis", default)), rank)
    if ctx.opset < 13 and axis != rank - 1:
        raise ctx.unsupported("before opset 13, only a Softmax over the last axis is supported")
    return ops_graph.Softmax(axis=axis)


Converter = Callable[[NodeContext], Op]


def _dropout(ctx: NodeContext) -> ops.Op:
    """Inference-mode Dropout is the identity; in training mode it draws a random mask."""
    if ctx.opset < 7 and not ctx.attr("is_test", 0):
        raise ctx.unsupported(NONDETERMINISTIC_WHY + " (is_test=0 before opset 7)")
    if ctx.has_input(2):
        training = ctx.const(2)
        if training is None or bool(np.any(training)):
            raise ctx.unsupported(NONDETERMINISTIC_WHY)
    return ops.Identity()


NONDETERMINISTIC_WHY = (
    "nondeterministic: it draws random numbers on every run, so no single function can be "
    "verified (proofwell never folds it into a constant)"
)
# Ops whose output is random. They are rejected even where every input is constant: folding
# one draw at load would verify a network onnxruntime does not compute twice.
NONDETERMINISTIC_OPS = frozenset(
    {
        "RandomUniform",
        "RandomNormal",
        "RandomUniformLike",
        "RandomNormalLike",
        "Bernoulli",
        "Multinomial",
    }
)


def _data_on_input_0(convert: Converter) -> Converter:
    """For ops whose other inputs are parameters: input 0 alone may depend on the model
    input (the IR op is evaluated on the variable inputs, so a variable parameter would
    silently take the data's place)."""

    def checked(ctx: NodeContext) -> Op:
        variables = ctx.variable_inputs()
        for i in variables:
            if i != 0:
                raise ctx.unsupported(
                    f"input {i} ('{ctx.node.input[i]}') depends on the model input; "
                    "only input 0 may"
                )
        return convert(ctx)

    return checked


# Ops that combine several variable inputs (or a constant on either side) check their own.
_SEVERAL_INPUTS: Mapping[str, Converter] = {
    "Add": _add,
    "Concat": _concat,
    "MatMul": _matmul,
    "Max": _max_min(ops_graph.Max),
    "Min": _max_min(ops_graph.Min),
    "Mul": _mul,
    "Sub": _sub,
}
_ONE_DATA_INPUT: Mapping[str, Converter] = {
    "AveragePool": average_pool,
    "BatchNormalization": _batch_normalization,
    "Clip": _clip,
    "Conv": conv,
    "Div": _div,
    "Dropout": _dropout,
    "Flatten": _flatten,
    "Gemm": _gemm,
    "Identity": lambda ctx: ops.Identity(),
    "LeakyRelu": _leaky_relu,
    "MaxPool": max_pool,
    "PRelu": _prelu,
    "Pad": _pad,
    "Relu": lambda ctx: ops.Relu(),
    "Reshape": _reshape,
    "Sigmoid": lambda ctx: ops.Sigmoid(),
    "Softmax": _softmax,
    "Squeeze": _squeeze,
    "Tanh": lambda ctx: ops.Tanh(),
    "Transpose": _transpose,
    "Unsqueeze": _unsqueeze,
}
CONVERTERS: Mapping[str, Converter] = dict(
    sorted(
        [*_SEVERAL_INPUTS.items(), *((k, _data_on_input_0(v)) for k, v in _ONE_DATA_INPUT.items())]
    )
)

# Ops that can only yield constants here (shapes are static), so the loader always folds them.
CONSTANT_OPS = frozenset({"Constant", "Shape"})

SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(set(CONVERTERS) | CONSTANT_OPS))
