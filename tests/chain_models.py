"""Random Affine/ReLU/LeakyRelu chain models for the chain engine (the fast path), each with
an independent float64 reference (tests/graph_dags.py's Dag: the steps are written here from
the ONNX operator definitions and share no code with the loader, the normal form or the
engine).

`random_chain(seed)` builds a model of 1-40 inputs (flat, or an image flattened or reshaped)
whose linear stretches between activations are spelt in many ways the normal form must fold:
consecutive Gemms (transB, alpha, beta), MatMul + Add either way round, a transposed MatMul
with the weight on the left, Add/Sub/Mul/Div by constants (either operand first),
BatchNormalization on flat and image tensors, Reshape/Flatten/Identity round trips. Weights
range over 1e-3..1e3 with near-tie rows (duplicated and nudged) and zero rows; activations
are Relu or LeakyRelu, sometimes with slopes outside [0, 1) (the graph engine then takes the
model), sometimes at the very end.
"""

from __future__ import annotations

import numpy as np

from tests.graph_dags import Dag, f32

Shape = tuple[int, ...]
CHAIN_ALPHAS = [0.01, 0.1, 0.3, 0.5, 0.9, 0.0]
GRAPH_ALPHAS = [-0.5, 1.5, 1.0, -2.0]  # no chain normal form: the graph engine's


def weights(d: Dag, shape: Shape, scale: float) -> np.ndarray:
    """Normal weights of `scale`, sometimes a near-tie (a duplicated row, nudged) or a zero
    row; exactly float32."""
    w = d.rng.normal(scale=scale, size=shape)
    if shape[0] > 1 and d.rng.random() < 0.3:
        i, j = d.rng.choice(shape[0], 2, replace=False)
        w[j] = w[i] * (1 + d.rng.choice([0.0, 1e-6, 1e-3, -1.0]))
    if d.rng.random() < 0.08:
        w[d.rng.integers(shape[0])] = 0.0
    return f32(w)


def layer_scale(d: Dag) -> float:
    return float(10 ** d.rng.choice([-3.0, -1.0, 0.0, 0.0, 0.0, 0.5, 1.0, 3.0]))


def gemm(d: Dag, src: str, width: int) -> str:
    n = d.shapes[src][1]
    w = weights(d, (width, n), layer_scale(d))
    b = f32(d.rng.normal(scale=d.rng.choice([0.0, 0.3, 1.0, 30.0]), size=width))
    kind = d.rng.choice(["gemm", "gemm_t", "matmul_add", "add_matmul", "matmul", "left"])
    if kind in ("gemm", "gemm_t"):
        alpha, beta = (1.0, 1.0) if d.rng.random() < 0.5 else d.rng.choice([0.5, -1.0, 2.0, 0.1], 2)
        trans = kind == "gemm_t"
        wn, wv = d.const(w if trans else w.T, "W")
        with_c = d.rng.random() < 0.85
        bias_shape = [(width,), (1, width)][int(d.rng.integers(2))]
        bn, bv = d.const(b.reshape(bias_shape), "b") if with_c else ("", b * 0.0)
        a32, b32 = float(np.float32(alpha)), float(np.float32(beta))

        def step(x, wv=wv, bv=bv, trans=trans, a32=a32, b32=b32):
            return a32 * (x @ (wv.T if trans else wv)) + b32 * bv.reshape(1, -1)

        inputs = [src, wn, bn] if with_c else [src, wn]
        return d.add("Gemm", inputs, (1, width), step, alpha=alpha, beta=beta, transB=int(trans))
    if kind == "left":  # (W @ x^T)^T: the weight on the left of a transposed input
        column = d.add("Transpose", [src], (n, 1), lambda x: x[:, :, None], perm=[1, 0])
        wn, wv = d.const(w, "W")
        product = d.add("MatMul", [wn, column], (width, 1), lambda x, wv=wv: wv @ x)
        return d.add("Transpose", [product], (1, width), lambda x: x[:, :, 0], perm=[1, 0])
    wn, wv = d.const(w.T, "W")
    out = d.add("MatMul", [src, wn], (1, width), lambda x, wv=wv: x @ wv)
    if kind == "matmul":
        return out
    bn, bv = d.const(b, "b")
    order = [out, bn] if kind == "matmul_add" else [bn, out]
    return d.add("Add", order, (1, width), lambda x, bv=bv: x + bv)


def constant_op(d: Dag, src: str) -> str:
    """x+c, c+x, x-c, c-x, x*c, x/c with a per-element constant of a random scale."""
    shape = d.shapes[src]
    per = (shape[1],) if len(shape) == 2 else (shape[1], 1, 1)
    value = f32(d.rng.choice([0.5, -1.0, 2.0, 1e-3, 0.0, 3.0, -1e3, 7.0], size=per))
    kind = d.rng.choice(["Mul", "Div", "AddFirst", "Add", "SubFirst", "Sub"])
    if kind == "Div":
        value = np.where(value == 0.0, 4.0, value)
    cn, cv = d.const(value, "k")
    first = kind.endswith("First")
    op = kind.removesuffix("First")
    fn = {
        "Mul": lambda x, cv=cv: x * cv,
        "Div": lambda x, cv=cv: x / cv,
        "Add": lambda x, cv=cv: x + cv,
        "Sub": (lambda x, cv=cv: cv - x) if first else (lambda x, cv=cv: x - cv),
    }[op]
    return d.add(op, [cn, src] if first else [src, cn], shape, fn)


def batch_norm(d: Dag, src: str) -> str:
    shape = d.shapes[src]
    c = shape[1]
    scale = f32(d.rng.normal(size=c) * d.rng.choice([1.0, 1e-3, 1e2]))
    bias, mean = f32(d.rng.normal(size=c)), f32(d.rng.normal(size=c))
    var = f32(d.rng.choice([d.rng.uniform(0.1, 2.0), 1e-6, 0.0, 1e3], size=c))
    eps = float(d.rng.choice([1e-5, 1e-3, 0.0 if np.all(var > 0) else 1e-5]))
    names = [d.const(v, "bn")[0] for v in (scale, bias, mean, var)]
    e32 = float(np.float32(eps))
    per = (1, -1) + (1,) * (len(shape) - 2)

    def step(x):
        std = np.sqrt(var.reshape(per) + e32)
        return (x - mean.reshape(per)) / std * scale.reshape(per) + bias.reshape(per)

    return d.add("BatchNormalization", [src, *names], shape, step, epsilon=eps)


def reshape(d: Dag, src: str, shape: Shape) -> str:
    name = f"shape{len(d.init)}"
    d.init[name] = np.array(shape, dtype=np.int64)
    return d.add("Reshape", [src, name], shape, lambda x, s=shape: x.reshape(len(x), *s[1:]))


def flatten(d: Dag, src: str) -> str:
    n = int(np.prod(d.shapes[src][1:]))
    return d.add("Flatten", [src], (1, n), lambda x: x.reshape(len(x), -1), axis=1)


def to_flat(d: Dag, src: str) -> str:
    if len(d.shapes[src]) == 2:
        return src
    if d.rng.random() < 0.5:
        return flatten(d, src)
    return reshape(d, src, (1, int(np.prod(d.shapes[src][1:]))))


def affine_block(d: Dag, src: str, width: int) -> str:
    """One linear stretch ending in `width` outputs, spelt in 1-4 folded ops."""
    src = to_flat(d, src)
    for _ in range(int(d.rng.integers(0, 3))):
        r = d.rng.random()
        if r < 0.3:
            src = gemm(d, src, int(d.rng.integers(1, 9)))  # consecutive Gemms
        elif r < 0.6:
            src = constant_op(d, src)
        elif r < 0.8:
            src = batch_norm(d, src)
        elif r < 0.9:
            n = d.shapes[src][1]
            src = to_flat(d, batch_norm(d, reshape(d, src, (1, n, 1, 1))))
        else:
            src = d.add("Identity", [src], d.shapes[src], lambda x: x)
    out = gemm(d, src, width)
    if d.rng.random() < 0.2:
        out = constant_op(d, out)
    return out


def activation(d: Dag, src: str) -> str:
    shape = d.shapes[src]
    r = d.rng.random()
    if r < 0.55:
        return d.add("Relu", [src], shape, lambda x: np.maximum(x, 0.0))
    pool = CHAIN_ALPHAS if r < 0.9 else GRAPH_ALPHAS
    alpha = float(d.rng.choice(pool))
    a = float(np.float32(alpha))
    return d.add("LeakyRelu", [src], shape, lambda x: np.where(x >= 0, x, a * x), alpha=alpha)


def _input_shape(rng: np.random.Generator, n: int) -> Shape:
    if rng.random() < 0.75:
        return (1, n)
    divisors = [c for c in range(1, n + 1) if n % c == 0]
    c = int(rng.choice(divisors))
    h = int(rng.choice([k for k in range(1, n // c + 1) if (n // c) % k == 0]))
    return (1, c, h, n // c // h)


def random_chain(seed: int) -> Dag:
    """A random chain model (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    n_in = int(
        rng.choice(
            [rng.integers(1, 7), rng.integers(7, 17), rng.integers(17, 41)], p=[0.6, 0.2, 0.2]
        )
    )
    d = Dag(rng, _input_shape(rng, n_in), extra=np.random.default_rng(seed + 1))
    src = "x"
    if len(d.input_shape) == 4 and rng.random() < 0.5:
        src = batch_norm(d, src) if rng.random() < 0.5 else constant_op(d, src)
    depth = int(rng.integers(0, 4))
    wide = 6 if n_in > 16 else 9
    for _ in range(depth):
        src = activation(d, affine_block(d, src, int(rng.integers(1, wide))))
    src = affine_block(d, src, int(rng.integers(1, 5)))
    if rng.random() < 0.1:
        src = activation(d, src)
    return d


def is_chain(d: Dag) -> bool:
    """Whether the normal form takes the model (every LeakyRelu slope in [0, 1))."""
    return all(
        op != "LeakyRelu" or 0.0 <= node.attribute[0].f < 1.0
        for op, node in zip(d.ops, d.nodes, strict=True)
    )
