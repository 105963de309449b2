"""The one table of supported ONNX operators: op type -> converter to an IR op.

A converter reads one ONNX node (attributes, constant operands, input shapes) and returns
the op's dataclass, or raises UnsupportedError for a variant it does not handle (the loader
collects these so one error lists every bad node). Nodes whose inputs are all constants
never reach a converter: the loader folds them. To add an operator see docs/operators.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper

from verifiers.errors import UnsupportedError
from verifiers.model import ops
from verifiers.model.evaluate import Window
from verifiers.model.ir import Op, Shape


class UnsupportedVariant(UnsupportedError):
    """A supported op type used in a way the converter does not handle."""

    def __init__(self, op_type: str, node: str, why: str) -> None:
        super().__init__(f"{op_type} node '{node}': {why}", node=node)
        self.why = why


@dataclass(frozen=True)
class NodeContext:
    """What a converter may know about its node."""

    node: onnx.NodeProto
    constants: Mapping[str, np.ndarray]
    shapes: Mapping[str, Shape]  # ONNX shapes of the variable tensors computed so far
    opset: int

    @property
    def name(self) -> str:
        return self.node.name or self.node.output[0]

    def attr(self, name: str, default: Any = None) -> Any:
        for attribute in self.node.attribute:
            if attribute.name == name:
                return helper.get_attribute_value(attribute)
        return default

    def has_input(self, i: int) -> bool:
        return i < len(self.node.input) and bool(self.node.input[i])

    def const(self, i: int) -> np.ndarray | None:
        """Input i as a float64 constant, or None if it is absent or variable."""
        if not self.has_input(i) or self.node.input[i] not in self.constants:
            return None
        return np.asarray(self.constants[self.node.input[i]], dtype=np.float64)

    def required_const(self, i: int, what: str) -> np.ndarray:
        value = self.const(i)
        if value is None:
            raise self.unsupported(f"{what} (input {i}) must be a constant")
        return value

    def shape(self, i: int) -> Shape:
        name = self.node.input[i]
        if name in self.constants:
            return tuple(np.shape(self.constants[name]))
        return self.shapes[name]

    def unsupported(self, why: str) -> UnsupportedVariant:
        return UnsupportedVariant(self.node.op_type, self.name, why)


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


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
    return ops.Div(rank=_out_rank(ctx), const=ctx.required_const(1, "the divisor"))


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
    axis = _axis(int(ctx.attr("axis", 1)), len(shape))
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
    drop |= {_axis(a, len(shape)) for a in axes or []}
    return ops.Squeeze(shape=tuple(d for i, d in enumerate(shape) if i not in drop))


def _unsqueeze(ctx: NodeContext) -> Op:
    axes = _axes(ctx)
    if axes is None:
        raise ctx.unsupported("missing axes")
    dims = list(ctx.shape(0))
    rank = len(dims) + len(axes)
    for axis in sorted(_axis(a, rank) for a in axes):
        dims.insert(axis, 1)
    return ops.Unsqueeze(shape=tuple(dims))


def _transpose(ctx: NodeContext) -> Op:
    rank = len(ctx.shape(0))
    perm = ctx.attr("perm") or list(reversed(range(rank)))
    return ops.Transpose(perm=tuple(int(p) for p in perm))


def _concat(ctx: NodeContext) -> Op:
    parts = tuple(ctx.const(i) for i in range(len(ctx.node.input)))
    axis = _axis(int(ctx.attr("axis")), len(ctx.shape(0)))
    return ops.Concat(axis=axis, parts=parts)


# --- convolution, normalisation and pooling ----------------------------------------------------


def _window(ctx: NodeContext, kernel: tuple[int, int]) -> ops.Window:
    if ctx.attr("ceil_mode", 0):
        raise ctx.unsupported("ceil_mode=1 is not supported")
    strides = tuple(ctx.attr("strides", (1, 1)))
    dilations = tuple(ctx.attr("dilations", (1, 1)))
    pads = tuple(ctx.attr("pads", (0, 0, 0, 0)))
    auto_pad = ctx.attr("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad == "VALID":
        pads = (0, 0, 0, 0)
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = _same_pads(ctx.shape(0)[-2:], kernel, strides, dilations, auto_pad == "SAME_UPPER")
    return Window(kernel, strides, pads, dilations)  # type: ignore[arg-type]


def _same_pads(
    size: Shape, kernel: tuple[int, int], strides: tuple, dilations: tuple, upper: bool
) -> tuple[int, int, int, int]:
    begins, ends = [], []
    for n, k, s, d in zip(size, kernel, strides, dilations, strict=True):
        total = max(0, (-(-n // s) - 1) * s + (k - 1) * d + 1 - n)
        small, large = total // 2, total - total // 2
        begins.append(small if upper else large)
        ends.append(large if upper else small)
    return (begins[0], begins[1], ends[0], ends[1])


def _kernel(ctx: NodeContext) -> tuple[int, int]:
    kernel = tuple(int(k) for k in ctx.attr("kernel_shape"))
    if len(kernel) != 2:
        raise ctx.unsupported("only 2-D pooling is supported")
    return kernel  # type: ignore[return-value]


def _conv(ctx: NodeContext) -> Op:
    weight = ctx.required_const(1, "the weight")
    if weight.ndim != 4:
        raise ctx.unsupported("only 2-D convolutions are supported")
    bias = ctx.required_const(2, "the bias") if ctx.has_input(2) else None
    window = _window(ctx, (weight.shape[2], weight.shape[3]))
    return ops.Conv(weight=weight, bias=bias, window=window, group=int(ctx.attr("group", 1)))


def _batch_normalization(ctx: NodeContext) -> Op:
    if ctx.attr("training_mode", 0) or len(ctx.node.output) > 1:
        raise ctx.unsupported("only inference mode (one output) is supported")
    scale, bias, mean, var = (ctx.required_const(i, "a parameter") for i in range(1, 5))
    epsilon = float(ctx.attr("epsilon", 1e-5))
    return ops.BatchNormalization(scale=scale, bias=bias, mean=mean, var=var, epsilon=epsilon)


def _average_pool(ctx: NodeContext) -> Op:
    window = _window(ctx, _kernel(ctx))
    return ops.AveragePool(window=window, count_include_pad=bool(ctx.attr("count_include_pad", 0)))


def _max_pool(ctx: NodeContext) -> Op:
    return ops.MaxPool(window=_window(ctx, _kernel(ctx)))


def _leaky_relu(ctx: NodeContext) -> Op:
    return ops.LeakyRelu(alpha=float(ctx.attr("alpha", 0.01)))


Converter = Callable[[NodeContext], Op]


def _dropout(ctx: NodeContext) -> ops.Op:
    """Inference-mode Dropout is the identity; in training mode it draws a random mask."""
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


CONVERTERS: Mapping[str, Converter] = {
    "Add": _add,
    "AveragePool": _average_pool,
    "BatchNormalization": _batch_normalization,
    "Concat": _concat,
    "Conv": _conv,
    "Div": _div,
    "Dropout": _dropout,
    "Flatten": _flatten,
    "Gemm": _gemm,
    "Identity": lambda ctx: ops.Identity(),
    "LeakyRelu": _leaky_relu,
    "MatMul": _matmul,
    "MaxPool": _max_pool,
    "Mul": _mul,
    "Relu": lambda ctx: ops.Relu(),
    "Reshape": _reshape,
    "Sigmoid": lambda ctx: ops.Sigmoid(),
    "Squeeze": _squeeze,
    "Sub": _sub,
    "Tanh": lambda ctx: ops.Tanh(),
    "Transpose": _transpose,
    "Unsqueeze": _unsqueeze,
}

# Ops that can only yield constants here (shapes are static), so the loader always folds them.
CONSTANT_OPS = frozenset({"Constant", "Shape"})

SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(set(CONVERTERS) | CONSTANT_OPS))
