"""The registry: IR op class -> builder of its bound op (every analysis in one class).

A builder gets the IR node and the ONNX shapes of its inputs and output. An IR op class
missing here is unsupported by the graph engine; NO_BOUNDS lists those that are evaluated
(for replay and falsification) but never bounded, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from verifiers.bounds.graph.ops.base import BoundOp
from verifiers.bounds.graph.ops.linear import Alias, Linear
from verifiers.bounds.graph.ops.maxes import MaxOf
from verifiers.bounds.graph.ops.piecewise import PiecewiseLinear, clip, prelu, relu
from verifiers.bounds.graph.ops.sshaped import SShaped
from verifiers.model import ops, ops_graph
from verifiers.model.evaluate import _windows
from verifiers.model.ir import Node, Shape

Builder = Callable[[Node, list[Shape], Shape], BoundOp]


def _size(shape: Shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _linear(node: Node, in_shapes: list[Shape], out_shape: Shape) -> BoundOp:
    return Linear.of(node.op, in_shapes)  # type: ignore[arg-type]


def _max_pool(node: Node, in_shapes: list[Shape], out_shape: Shape) -> BoundOp:
    shape = in_shapes[0]
    image = np.arange(_size(shape), dtype=np.float64).reshape(-1, *shape[-3:])
    windows = _windows(image, node.op.window, -1.0)  # type: ignore[attr-defined]
    index = windows.reshape(_size(out_shape), -1).astype(np.int64)
    return MaxOf((index,), (_size(shape),), None)


def _max_min(node: Node, in_shapes: list[Shape], out_shape: Shape) -> BoundOp:
    op = node.op
    rank = len(out_shape)
    index = []
    for shape in in_shapes:
        lifted = (1,) * (rank - len(shape)) + tuple(shape)
        grid = np.broadcast_to(np.arange(_size(shape)).reshape(lifted), out_shape)
        index.append(grid.reshape(-1, 1).astype(np.int64))
    negate = isinstance(op, ops_graph.Min)
    const = None
    if op.const is not None:  # type: ignore[attr-defined]
        const = np.broadcast_to(op.const, out_shape).reshape(-1)  # type: ignore[attr-defined]
        const = -const if negate else const.copy()
    return MaxOf(tuple(index), tuple(_size(s) for s in in_shapes), const, negate)


def _prelu(node: Node, in_shapes: list[Shape], out_shape: Shape) -> BoundOp:
    # The slope of each element: the op at -1 (exact: a product by -1).
    slope = -node.op.evaluate(-np.ones((1, *in_shapes[0]))).reshape(-1)
    return prelu(slope)


def _clip(node: Node, in_shapes: list[Shape], out_shape: Shape) -> BoundOp:
    return clip(node.op.low, node.op.high)  # type: ignore[attr-defined]


LINEAR_IR_OPS = (
    ops.Add, ops.Sub, ops.Mul, ops.Div, ops.MatMul, ops.Gemm, ops.Conv,
    ops.BatchNormalization, ops.AveragePool, ops.Transpose, ops.Concat, ops_graph.Pad,
)  # fmt: skip
ALIAS_IR_OPS = (ops.Flatten, ops.Reshape, ops.Squeeze, ops.Unsqueeze, ops.Identity)

RULES: Mapping[type, Builder] = {
    **{cls: _linear for cls in LINEAR_IR_OPS},
    **{cls: (lambda node, i, o: Alias()) for cls in ALIAS_IR_OPS},
    ops.Relu: lambda node, i, o: relu(_size(o)),
    ops.LeakyRelu: lambda node, i, o: relu(_size(o), node.op.alpha),  # type: ignore[attr-defined]
    ops_graph.PRelu: _prelu,
    ops_graph.Clip: _clip,
    ops.Sigmoid: lambda node, i, o: SShaped("Sigmoid"),
    ops.Tanh: lambda node, i, o: SShaped("Tanh"),
    ops.MaxPool: _max_pool,
    ops_graph.Max: _max_min,
    ops_graph.Min: _max_min,
}

NO_BOUNDS: Mapping[type, str] = {
    ops_graph.Softmax: (
        "Softmax is supported only as the last op, under a property that compares outputs "
        "pairwise (y_i - y_j against 0), which it then leaves unchanged on the logits"
    ),
}

BOUND_OP_CLASSES = (Alias, Linear, PiecewiseLinear, SShaped, MaxOf)

__all__ = ["BOUND_OP_CLASSES", "NO_BOUNDS", "RULES", "BoundOp"]
