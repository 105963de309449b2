"""The graph checker's own view of a model: the loader's graph IR (verifiers/model) as a
DAG of five kinds of node over flat tensors, built here and nowhere else.

- Alias: a reshape (flat order kept).
- Linear: y = sum_i W_i x_i + b, W_i the bias-free op evaluated on the identity basis of
  input i, b the op on zeros, both within the loader's composition error bound
  (|W_exact - W| <= 2 gamma_k |W|, k the op's rounding depth).
- Piecewise: Relu, LeakyRelu, PRelu, Clip: breakpoints and an exact line per piece.
- SShaped: Sigmoid, Tanh.
- Max: MaxPool, Max, Min: each output the max (min) of candidates (input entries or a
  constant).
It shares no code with the search's bound ops (verifiers/bounds/graph): only the IR.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from verifiers.model import ops, ops_graph
from verifiers.model.evaluate import _windows
from verifiers.model.ir import Graph, OpKind

UNIT = Fraction(1, 2**53)


class Unsupported(Exception):
    """An op the graph checker has no rule for (the message names it)."""


@dataclass(frozen=True, eq=False)
class Node:
    kind: str  # alias | linear | piecewise | sshaped | max
    inputs: tuple[str, ...]
    output: str
    weights: tuple[np.ndarray, ...] = ()  # linear: (n_out, n_in_i) each
    errs: tuple[np.ndarray, ...] = ()  # linear: entrywise bounds of W_exact - W
    bias: np.ndarray | None = None
    bias_err: np.ndarray | None = None
    breakpoints: tuple[float, ...] = ()  # piecewise: increasing
    slopes: np.ndarray | None = None  # piecewise: (pieces, n), exact floats
    icpts: np.ndarray | None = None  # piecewise: (pieces, n)
    function: str = ""  # sshaped: "Sigmoid" | "Tanh"
    index: tuple[np.ndarray, ...] = ()  # max: per input (n_out, k_i), -1 = no candidate
    const: np.ndarray | None = None  # max: (n_out,) a constant candidate (last), or None
    negate: bool = False  # max: Min

    def width(self) -> int:
        """Max: candidates per output (the constant last)."""
        return sum(i.shape[1] for i in self.index) + (self.const is not None)


@dataclass(frozen=True, eq=False)
class Net:
    input_name: str
    output: str  # the bounded tensor (the logits under a stripped final Softmax)
    nodes: tuple[Node, ...]
    sizes: dict[str, int]
    softmax: int | None  # the last axis size of a stripped final Softmax

    @classmethod
    def of(cls, graph: Graph) -> Net:
        sizes = {name: int(np.prod(s, dtype=np.int64)) for name, s in graph.shapes.items()}
        sizes[graph.input_name] = graph.n_inputs
        nodes, output, softmax = [], graph.output_name, None
        for node in graph.nodes:
            shapes = [graph.shapes[name] for name in node.inputs]
            out_shape = graph.shapes[node.output]
            if isinstance(node.op, ops_graph.Softmax) and node.output == graph.output_name:
                if node.op.axis != len(out_shape) - 1:
                    raise Unsupported(f"'{node.name}': Softmax not over the last axis")
                output, softmax = node.inputs[0], out_shape[-1]
                continue
            nodes.append(_node(node, shapes, out_shape))
        return cls(graph.input_name, output, tuple(nodes), sizes, softmax)

    def producer(self, name: str) -> int:
        for i, node in enumerate(self.nodes):
            if node.output == name:
                return i
        return -1


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _node(node, shapes, out_shape) -> Node:
    op, ins, out = node.op, tuple(node.inputs), node.output
    if isinstance(op, ops.Flatten | ops.Reshape | ops.Squeeze | ops.Unsqueeze | ops.Identity):
        return Node("alias", ins, out)
    if getattr(op, "kind", None) is OpKind.LINEAR:
        return _linear(op, ins, out, shapes)
    if isinstance(op, ops.Relu):
        return _piecewise(ins, out, [0.0], [[0.0], [1.0]], [[0.0], [0.0]])
    if isinstance(op, ops.LeakyRelu):
        return _piecewise(ins, out, [0.0], [[op.alpha], [1.0]], [[0.0], [0.0]])
    if isinstance(op, ops_graph.PRelu):
        # The slope of each element: the op at -1 (a product by -1, exact).
        slope = -op.evaluate(-np.ones((1, *shapes[0]))).reshape(-1)
        return _piecewise(ins, out, [0.0], [slope, np.ones_like(slope)], [[0.0], [0.0]])
    if isinstance(op, ops_graph.Clip):
        return _clip(ins, out, op.low, op.high)
    if isinstance(op, ops.Sigmoid | ops.Tanh):
        return Node("sshaped", ins, out, function=type(op).__name__)
    if isinstance(op, ops.MaxPool):
        image = np.arange(_size(shapes[0]), dtype=np.float64).reshape(-1, *shapes[0][-3:])
        index = _windows(image, op.window, -1.0).reshape(_size(out_shape), -1)
        return Node("max", ins, out, index=(index.astype(np.int64),))
    if isinstance(op, ops_graph.Max):  # Min is a subclass
        return _max(op, ins, out, shapes, out_shape)
    raise Unsupported(f"'{node.name}' ({node.op_type}): no rule in the graph checker")


def _piecewise(ins, out, points, slopes, icpts) -> Node:
    return Node("piecewise", ins, out, breakpoints=tuple(float(p) for p in points),
                slopes=_rows(slopes), icpts=_rows(icpts))  # fmt: skip


def _rows(values) -> np.ndarray:
    """(pieces, n) from per-piece scalars or vectors (n = 1: the same for every element)."""
    rows = [np.atleast_1d(np.asarray(v, dtype=np.float64)).reshape(-1) for v in values]
    width = max(len(r) for r in rows)
    return np.stack([np.broadcast_to(r, (width,)) for r in rows])


def _clip(ins, out, low, high) -> Node:
    """min(max(x, low), high): with low > high, the constant high (ONNX's order)."""
    if low is not None and high is not None and low > high:
        return _piecewise(ins, out, [], [[0.0]], [[high]])
    points, slopes, icpts = [], [[1.0]], [[0.0]]
    if low is not None:
        points, slopes, icpts = [low], [[0.0], [1.0]], [[low], [0.0]]
    if high is not None:
        points, slopes, icpts = [*points, high], [*slopes, [0.0]], [*icpts, [high]]
    return _piecewise(ins, out, points, slopes, icpts)


def _max(op, ins, out, shapes, out_shape) -> Node:
    index = []
    for shape in shapes:
        lifted = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
        grid = np.broadcast_to(np.arange(_size(shape)).reshape(lifted), out_shape)
        index.append(grid.reshape(-1, 1).astype(np.int64))
    const = None
    if op.const is not None:
        const = np.broadcast_to(op.const, out_shape).reshape(-1).astype(np.float64)
    return Node("max", ins, out, index=tuple(index), const=const,
                negate=isinstance(op, ops_graph.Min))  # fmt: skip


def _linear(op, ins, out, shapes) -> Node:
    sizes = [_size(s) for s in shapes]

    def run(variant, i: int, x: np.ndarray) -> np.ndarray:
        parts = [
            x.reshape(len(x), *s) if j == i else np.zeros((len(x), *s))
            for j, s in enumerate(shapes)
        ]
        return variant.evaluate(*parts).reshape(len(x), -1)

    bare, mag = op.without_bias(), op.without_bias().magnitude()
    weights = tuple(run(bare, i, np.eye(n)).T.copy() for i, n in enumerate(sizes))
    mags = [run(mag, i, np.eye(n)).T for i, n in enumerate(sizes)]
    bias = run(op, 0, np.zeros((1, sizes[0])))[0]
    bias_mag = np.abs(run(op.magnitude(), 0, np.zeros((1, sizes[0])))[0])
    factor = _factor(op.rounding_depth())
    errs = tuple(_times_up(factor, m) for m in mags)
    return Node("linear", ins, out, weights=weights, errs=errs, bias=bias,
                bias_err=_times_up(factor, bias_mag))  # fmt: skip


def _factor(k: int) -> float:
    """2 gamma_k rounded up (gamma_k = k u / (1 - k u), u = 2**-53)."""
    if k == 0:
        return 0.0
    if k * UNIT >= Fraction(1, 2):
        raise Unsupported(f"a linear op of rounding depth {k} is too deep")
    return up(2 * k * UNIT / (1 - k * UNIT))


def _times_up(factor: float, values: np.ndarray) -> np.ndarray:
    """factor * values rounded up (values >= 0): one product rounds by half an ulp."""
    if factor == 0.0:
        return np.zeros_like(values)
    return np.nextafter(factor * values, np.inf) * (values != 0)


def up(value: Fraction) -> float:
    """The least float >= value."""
    f = float(value)
    return float(np.nextafter(f, np.inf)) if Fraction(f) < value else f


def down(value: Fraction) -> float:
    f = float(value)
    return float(np.nextafter(f, -np.inf)) if Fraction(f) > value else f
