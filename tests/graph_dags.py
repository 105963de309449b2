"""Random small DAG models for the graph engine, each with an independent float64 reference.

`random_dag(seed)` builds a model of 1-6 inputs and a few dozen neurons from a random mix of
the ops the graph engine bounds (Gemm/MatMul/Conv, Relu, LeakyRelu, PRelu, Clip, Sigmoid,
Tanh, Add/Sub/Max/Min joins across activations, Concat, MaxPool/AveragePool, constant scales,
an optional final Softmax), with random attributes and weights of varied scales, including
near-ties (duplicated rows, equal operands). Its `reference` evaluates the model in float64
with plain numpy, written here from the ONNX operator definitions: it shares no code with the
loader or the engine, so it can refute both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from tests.onnx_builders import make_model

Array = np.ndarray
Shape = tuple[int, ...]
MAX_WIDTH = 8
S_SHAPED = ("Sigmoid", "Tanh")


def f32(value) -> np.ndarray:
    """A float32 constant, returned as the float64 array of its exact values."""
    return np.asarray(value, dtype=np.float32).astype(np.float64)


@dataclass
class Dag:
    """A model under construction: ONNX nodes and, per node, its float64 reference step."""

    rng: np.random.Generator
    input_shape: Shape
    nodes: list = field(default_factory=list)
    init: dict = field(default_factory=dict)
    shapes: dict[str, Shape] = field(default_factory=dict)
    steps: list[tuple[Callable, tuple[str, ...], str]] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)
    softmax: bool = False
    final_bias: tuple = ()
    # Draws for variants (broadcast joins, constant Concat parts, Pad) from their own stream,
    # so that adding them left the main stream's models as they were.
    extra: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def __post_init__(self) -> None:
        self.shapes["x"] = self.input_shape

    def const(self, value, name_hint: str = "c") -> tuple[str, np.ndarray]:
        name = f"{name_hint}{len(self.init)}"
        array = np.asarray(value, dtype=np.float32)
        self.init[name] = array
        return name, array.astype(np.float64)

    def add(self, op: str, inputs: list[str], shape: Shape, fn: Callable, **attrs) -> str:
        out = f"t{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"n{len(self.nodes)}", **attrs))
        self.shapes[out] = shape
        variable = tuple(i for i in inputs if i in self.shapes)
        self.steps.append((fn, variable, out))
        self.ops.append(op)
        return out

    def weights(self, shape: Shape) -> np.ndarray:
        """Weights of a random scale, sometimes with a near-tie: a duplicated row, nudged."""
        scale = self.rng.choice(
            [0.1, 0.5, 1.0, 3.0, 1e-4, 30.0], p=[0.2, 0.2, 0.3, 0.2, 0.05, 0.05]
        )
        w = self.rng.normal(scale=scale, size=shape)
        if shape[0] > 1 and self.rng.random() < 0.3:
            i, j = self.rng.choice(shape[0], 2, replace=False)
            w[j] = w[i] * (1 + self.rng.choice([0.0, 1e-6, 1e-3]))
        if self.rng.random() < 0.1:
            w[self.rng.integers(shape[0])] = 0.0
        return w

    def reference(self, x: Array) -> Array:
        """The model's output (batch, n_outputs) at x (batch, n_inputs), in float64."""
        values = {"x": np.asarray(x, dtype=np.float64).reshape(-1, *self.input_shape[1:])}
        for fn, inputs, out in self.steps:
            values[out] = fn(*(values[i] for i in inputs))
        return values[self.steps[-1][2]].reshape(len(values["x"]), -1)

    @property
    def output(self) -> str:
        return f"t{len(self.nodes) - 1}"

    def model(self, opset: int = 13) -> onnx.ModelProto:
        return make_model(
            self.nodes,
            input_shape=list(self.input_shape),
            output=self.output,
            initializers=self.init,
            opset=opset,
        )


# --- flat layers ---------------------------------------------------------------------------


def dense(d: Dag, src: str, width: int) -> str:
    n = d.shapes[src][1]
    w = d.weights((width, n))
    b = d.rng.normal(scale=d.rng.choice([0.0, 0.3, 1.0]), size=width)
    kind = d.rng.choice(["gemm", "gemm_t", "matmul_add", "matmul"])
    if kind.startswith("gemm"):
        alpha, beta = (1.0, 1.0) if d.rng.random() < 0.6 else d.rng.choice([0.5, -1.0, 2.0], 2)
        trans = kind == "gemm_t"
        wn, wv = d.const(w if trans else w.T, "W")
        bias_shape = [(width,), (1, width)][int(d.rng.integers(2))]
        bn, bv = d.const(b.reshape(bias_shape), "b")
        a32, b32 = float(np.float32(alpha)), float(np.float32(beta))

        def gemm(x, wv=wv, bv=bv, trans=trans, a32=a32, b32=b32):
            return a32 * (x @ (wv.T if trans else wv)) + b32 * bv.reshape(1, -1)

        return d.add("Gemm", [src, wn, bn], (1, width), gemm, alpha=alpha, beta=beta, transB=trans)
    wn, wv = d.const(w.T, "W")
    out = d.add("MatMul", [src, wn], (1, width), lambda x, wv=wv: x @ wv)
    if kind == "matmul":
        return out
    bn, bv = d.const(b, "b")
    order = [out, bn] if d.rng.random() < 0.5 else [bn, out]
    return d.add("Add", order, (1, width), lambda x, bv=bv: x + bv)


def final_layer(d: Dag, src: str, width: int) -> str:
    """A Gemm whose bias `shift_logit` can move (boundary placement under a Softmax)."""
    wn, wv = d.const(d.weights((width, d.shapes[src][1])), "W")
    bn, bv = d.const(d.rng.normal(size=width), "b")
    d.final_bias = (bn, bv)
    return d.add("Gemm", [src, wn, bn], (1, width), lambda x: x @ wv.T + bv, transB=1)


def shift_logit(d: Dag, index: int, amount: float) -> float:
    """Add about `amount` to the final bias at `index` (rounded to float32): the shift made."""
    name, bv = d.final_bias
    new = np.float32(bv[index] + amount)
    made = float(new) - bv[index]
    bv[index] = float(new)
    d.init[name] = bv.astype(np.float32)
    return made


# --- elementwise activations (any shape) ---------------------------------------------------


def channel_shape(shape: Shape) -> Shape:
    """A per-channel constant's shape broadcasting over `shape` (per element for flat)."""
    return (shape[1],) if len(shape) == 2 else (shape[1], 1, 1)


def activation(d: Dag, src: str, kind: str) -> str:
    shape = d.shapes[src]
    if kind == "Relu":
        return d.add("Relu", [src], shape, lambda x: np.maximum(x, 0.0))
    if kind == "LeakyRelu":
        alpha = float(d.rng.choice([0.01, 0.1, 0.5, 1.0, 2.0, -0.5, 0.0]))
        a = float(np.float32(alpha))
        return d.add("LeakyRelu", [src], shape, lambda x: np.where(x >= 0, x, a * x), alpha=alpha)
    if kind == "PRelu":
        per = channel_shape(shape) if d.rng.random() < 0.7 else (1,)
        sn, sv = d.const(d.rng.choice([0.0, 0.05, 0.3, 1.5, -0.4], size=per), "s")
        return d.add("PRelu", [src, sn], shape, lambda x, sv=sv: np.where(x >= 0, x, sv * x))
    if kind == "Clip":
        lo, hi = np.sort(d.rng.normal(size=2))
        r = d.rng.random()
        if r < 0.1:
            hi = lo  # a degenerate clip: constant output
        elif r < 0.2:
            lo, hi = hi, lo  # min > max: the constant max (ONNX's order)
        keep_lo, keep_hi = d.rng.random(2) < 0.8
        names = [src, "", ""]
        low, high = -np.inf, np.inf
        if keep_lo:
            names[1], low = d.const(np.float32(lo), "lo")
        if keep_hi:
            names[2], high = d.const(np.float32(hi), "hi")
        while names[-1] == "":
            names.pop()
        low, high = float(low), float(high)
        return d.add("Clip", names, shape, lambda x: np.minimum(np.maximum(x, low), high))
    if kind == "Sigmoid":
        return d.add("Sigmoid", [src], shape, lambda x: 0.5 * (1.0 + np.tanh(0.5 * x)))
    return d.add("Tanh", [src], shape, np.tanh)


def join(d: Dag, a: str, b: str) -> str:
    """A residual join of two tensors of one shape (possibly the same tensor twice)."""
    shape = d.shapes[a]
    kind = d.rng.choice(["Add", "Sub", "Max", "Min", "Max3"])
    if kind == "Max3":
        cn, cv = d.const(d.rng.normal(size=channel_shape(shape)), "m")
        return d.add("Max", [a, b, cn], shape, lambda x, y, cv=cv: np.maximum(np.maximum(x, y), cv))
    if len(shape) == 2 and d.extra.random() < 0.25:
        b = _scalar(d, b)  # (1, 1): broadcast against a
    if kind in ("Add", "Sub"):
        fn = np.add if kind == "Add" else np.subtract
        return d.add(kind, [a, b], shape, lambda x, y, fn=fn: fn(x, y))
    fn = np.maximum if kind == "Max" else np.minimum
    return d.add(kind, [a, b], shape, lambda x, y, fn=fn: fn(x, y))


def _scalar(d: Dag, src: str) -> str:
    """A (1, 1) tensor computed from a flat one (a MatMul by a column)."""
    wn, wv = d.const(d.extra.normal(size=(d.shapes[src][1], 1)), "w")
    return d.add("MatMul", [src, wn], (1, 1), lambda x, wv=wv: x @ wv)


def affine_const(d: Dag, src: str) -> str:
    shape = d.shapes[src]
    value = d.rng.choice([0.5, -1.0, 2.0, 1e-3, 0.0, 3.0], size=channel_shape(shape))
    kind = d.rng.choice(["Mul", "Div", "Add", "SubFirst"])
    if kind == "Div":
        value = np.where(value == 0.0, 4.0, value)
    cn, cv = d.const(value, "k")
    if kind == "Mul":
        return d.add("Mul", [src, cn], shape, lambda x, cv=cv: x * cv)
    if kind == "Div":
        return d.add("Div", [src, cn], shape, lambda x, cv=cv: x / cv)
    if kind == "Add":
        return d.add("Add", [cn, src], shape, lambda x, cv=cv: x + cv)
    return d.add("Sub", [cn, src], shape, lambda x, cv=cv: cv - x)


def concat(d: Dag, a: str, b: str) -> str:
    sa, sb = d.shapes[a], d.shapes[b]
    shape = (1, sa[1] + sb[1], *sa[2:])
    axis = int(d.rng.choice([1, 1 - len(sa)]))
    if d.extra.random() < 0.2:  # a constant part
        cn, cv = d.const(d.extra.normal(size=sb), "p")

        def joined(x, cv=cv):
            return np.concatenate([x, np.broadcast_to(cv, (len(x), *cv.shape[1:]))], axis=1)

        return d.add("Concat", [a, cn], shape, joined, axis=axis)
    return d.add("Concat", [a, b], shape, lambda x, y: np.concatenate([x, y], axis=1), axis=axis)


# --- image layers (batch, channels, height, width) -----------------------------------------


def _windows(x: Array, kernel, strides, dilations, out_hw):
    """Yield (i, j, slice of x) for every kernel offset: x[:, :, rows, cols]."""
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            r0, c0 = i * dilations[0], j * dilations[1]
            rows = slice(r0, r0 + strides[0] * (out_hw[0] - 1) + 1, strides[0])
            cols = slice(c0, c0 + strides[1] * (out_hw[1] - 1) + 1, strides[1])
            yield i, j, x[:, :, rows, cols]


def _out_hw(hw, kernel, strides, pads, dilations):
    return tuple(
        (hw[k] + pads[k] + pads[k + 2] - dilations[k] * (kernel[k] - 1) - 1) // strides[k] + 1
        for k in range(2)
    )


def _pad(x: Array, pads, value: float) -> Array:
    width = ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3]))
    return np.pad(x, width, constant_values=value)


def _window_attrs(d: Dag, hw, max_kernel: int):
    for _ in range(20):
        kernel = tuple(int(k) for k in d.rng.integers(1, max_kernel + 1, size=2))
        strides = tuple(int(s) for s in d.rng.integers(1, 3, size=2))
        pads = tuple(int(p) for p in d.rng.integers(0, 2, size=4))
        dilations = (
            (1, 1) if d.rng.random() < 0.7 else tuple(int(v) for v in d.rng.integers(1, 3, 2))
        )
        pads = tuple(min(p, kernel[k % 2] - 1) for k, p in enumerate(pads))  # MaxPool: pad < k
        out = _out_hw(hw, kernel, strides, pads, dilations)
        if min(out) >= 1:
            return kernel, strides, pads, dilations, out
    return (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), tuple(hw)


def conv(d: Dag, src: str) -> str:
    _, c, h, w = d.shapes[src]
    kernel, strides, pads, dilations, out = _window_attrs(d, (h, w), 3)
    group = c if c > 1 and d.rng.random() < 0.3 else 1
    m = int(d.rng.integers(1, 4)) * group
    weight = d.weights((m, c // group, *kernel))
    bias = d.rng.normal(scale=0.5, size=m)
    wn, wv = d.const(weight, "K")
    bn, bv = d.const(bias, "kb")

    def reference(x, wv=wv, bv=bv):
        xp = _pad(x, pads, 0.0)
        y = np.zeros((len(x), m, *out))
        per_group = m // group
        for i, j, part in _windows(xp, kernel, strides, dilations, out):
            for k in range(m):
                g = k // per_group
                channels = part[:, g * (c // group) : (g + 1) * (c // group)]
                y[:, k] += np.einsum("bchw,c->bhw", channels, wv[k, :, i, j])
        return y + bv.reshape(1, -1, 1, 1)

    attrs = dict(kernel_shape=list(kernel), strides=list(strides), pads=list(pads))
    attrs |= dict(dilations=list(dilations), group=group)
    return d.add("Conv", [src, wn, bn], (1, m, *out), reference, **attrs)


def pool(d: Dag, src: str) -> str:
    _, c, h, w = d.shapes[src]
    kernel, strides, pads, dilations, out = _window_attrs(d, (h, w), 2)
    if d.rng.random() < 0.6:

        def max_pool(x):
            parts = [
                p for *_, p in _windows(_pad(x, pads, -np.inf), kernel, strides, dilations, out)
            ]
            return np.max(np.stack(parts), axis=0)

        attrs = dict(kernel_shape=list(kernel), strides=list(strides), pads=list(pads))
        return d.add("MaxPool", [src], (1, c, *out), max_pool, dilations=list(dilations), **attrs)
    out = _out_hw((h, w), kernel, strides, pads, (1, 1))
    include = int(d.rng.integers(2))

    def average_pool(x):
        total = sum(p for *_, p in _windows(_pad(x, pads, 0.0), kernel, strides, (1, 1), out))
        ones = _pad(np.ones((1, 1, h, w)), pads, 0.0)
        count = sum(p for *_, p in _windows(ones, kernel, strides, (1, 1), out))
        return total / (kernel[0] * kernel[1] if include else count)

    attrs = dict(kernel_shape=list(kernel), strides=list(strides), pads=list(pads))
    return d.add(
        "AveragePool", [src], (1, c, *out), average_pool, count_include_pad=include, **attrs
    )


def pad(d: Dag, src: str) -> str:
    """A constant Pad of height and width (opset 11+: pads and value as inputs)."""
    _, c, h, w = d.shapes[src]
    p = [int(v) for v in d.extra.integers(0, 2, size=4)]  # top, left, bottom, right
    value = float(np.float32(d.extra.choice([0.0, -1.0, 0.5])))
    pn = f"pads{len(d.init)}"
    d.init[pn] = np.array([0, 0, p[0], p[1], 0, 0, p[2], p[3]], dtype=np.int64)
    vn, _ = d.const(np.float32(value), "v")
    shape = (1, c, h + p[0] + p[2], w + p[1] + p[3])
    return d.add("Pad", [src, pn, vn], shape, lambda x: _pad(x, p, value))


def batch_norm(d: Dag, src: str) -> str:
    shape = d.shapes[src]
    c = shape[1]
    scale, bias, mean = (f32(d.rng.normal(size=c)) for _ in range(3))
    var = f32(d.rng.uniform(0.1, 2.0, size=c))
    names = [d.const(v, "bn")[0] for v in (scale, bias, mean, var)]
    eps = float(np.float32(1e-5))

    def reference(x):
        per = (1, -1, 1, 1)
        return (x - mean.reshape(per)) / np.sqrt(var.reshape(per) + eps) * scale.reshape(
            per
        ) + bias.reshape(per)

    return d.add("BatchNormalization", [src, *names], shape, reference, epsilon=1e-5)


def flatten(d: Dag, src: str) -> str:
    shape = d.shapes[src]
    n = int(np.prod(shape[1:]))
    return d.add("Flatten", [src], (1, n), lambda x: x.reshape(len(x), -1), axis=1)


# --- whole models --------------------------------------------------------------------------

IMAGE_SHAPES = [(1, 1, 2, 3), (1, 1, 2, 2), (1, 2, 1, 3), (1, 1, 3, 2), (1, 1, 1, 4), (1, 2, 2, 1)]


def _pick(d: Dag, pool: list[str], shape: Shape | None = None) -> str:
    """A tensor of the pool, recent ones likelier; of `shape` if given (else any)."""
    choices = [t for t in pool if shape is None or d.shapes[t] == shape]
    if not choices:
        return ""
    weights = np.arange(1, len(choices) + 1, dtype=float) ** 2
    return choices[int(d.rng.choice(len(choices), p=weights / weights.sum()))]


def _size(d: Dag, t: str) -> int:
    return int(np.prod(d.shapes[t][1:]))


def _image_step(d: Dag, pool: list[str], acts: list[str]) -> str:
    src = _pick(d, [t for t in pool if len(d.shapes[t]) == 4])
    r = d.rng.random()
    if r < 0.3 and _size(d, src) <= 24:
        return conv(d, src)
    if r < 0.45:
        return pool_(d, src)
    if r < 0.5:
        return pad(d, src) if d.extra.random() < 0.5 else batch_norm(d, src)
    if r < 0.75:
        return activation(d, src, str(d.rng.choice(acts)))
    if r < 0.9:
        return join(d, src, _pick(d, pool, d.shapes[src]))
    partner = [t for t in pool if d.shapes[t][2:] == d.shapes[src][2:]]
    if _size(d, src) <= 18 and partner:
        return concat(d, src, _pick(d, partner))
    return affine_const(d, src)


pool_ = pool


def _flat_step(d: Dag, pool: list[str], acts: list[str]) -> str:
    src = _pick(d, [t for t in pool if len(d.shapes[t]) == 2])
    r = d.rng.random()
    if r < 0.25:
        return dense(d, src, int(d.rng.integers(1, MAX_WIDTH + 1)))
    if r < 0.55:
        return activation(d, src, str(d.rng.choice(acts)))
    if r < 0.75:
        partner = _pick(d, pool, d.shapes[src])
        if partner == src and d.rng.random() < 0.5:  # a join across a fresh activation
            partner = activation(d, src, str(d.rng.choice(acts)))
        return join(d, src, partner)
    if r < 0.88 and _size(d, src) <= MAX_WIDTH:
        return concat(d, src, _pick(d, [t for t in pool if len(d.shapes[t]) == 2]))
    return affine_const(d, src)


def random_dag(seed: int, acts: tuple[str, ...] | None = None, softmax: bool | None = None) -> Dag:
    """A random DAG model (see the module's docstring); `acts` limits the activations."""
    rng = np.random.default_rng(seed)
    if acts is None:
        every = ["Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh"]
        acts = tuple(rng.choice(every, size=int(rng.integers(1, 4)), replace=False))
    image = rng.random() < 0.35
    shape = (
        IMAGE_SHAPES[int(rng.integers(len(IMAGE_SHAPES)))]
        if image
        else (1, int(rng.integers(1, 7)))
    )
    d = Dag(rng, shape, extra=np.random.default_rng(seed + 1_000_003))
    pool = ["x"]
    steps = int(rng.integers(3, 9))
    for _ in range(steps):
        if len(d.shapes[pool[-1]]) == 4:
            t = _image_step(d, pool, list(acts))
        else:
            t = _flat_step(d, pool, list(acts))
        pool.append(t)
        if len(d.shapes[t]) == 4 and (_size(d, t) > 40 or rng.random() < 0.15):
            pool.append(flatten(d, t))
        if sum(_size(d, t) for t in pool) > 60:
            break
    last = pool[-1]
    if len(d.shapes[last]) == 4:
        last = flatten(d, last)
    n_out = int(rng.integers(1, 5))
    out = final_layer(d, last, n_out)
    if d.extra.random() < 0.15:  # the outputs themselves through an activation or a join
        if d.extra.random() < 0.5:
            activation(d, out, str(d.extra.choice(acts)))
        else:
            join(d, out, out if d.extra.random() < 0.3 else final_layer(d, last, n_out))
    d.softmax = bool(rng.random() < 0.15 if softmax is None else softmax) and n_out >= 2
    if d.softmax:
        axis = int(rng.choice([1, -1]))

        def soft(z):
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)

        d.add("Softmax", [d.output], (1, n_out), soft, axis=axis)
    return d


def logits(d: Dag, x: Array) -> Array:
    """The reference's output before a final Softmax (the output itself without one)."""
    if not d.softmax:
        return d.reference(x)
    fn, inputs, out = d.steps.pop()
    try:
        return d.reference(x)
    finally:
        d.steps.append((fn, inputs, out))
