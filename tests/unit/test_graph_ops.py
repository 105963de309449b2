"""Every graph bound op against the truth: dense sampling in float64 and exact evaluation
(rationals for piecewise-linear and linear ops, 60-digit decimals for Sigmoid/Tanh) at
random points of random boxes. Intervals and the linear bounds that back-substitution
produces (coefficients +-1 on each output) must always enclose. Plus: the registry covers
every IR op, and every bound op has every analysis."""

from __future__ import annotations

import decimal
import inspect
from fractions import Fraction

import numpy as np
import pytest

from verifiers.bounds.graph.ops import BOUND_OP_CLASSES, NO_BOUNDS, RULES
from verifiers.bounds.graph.ops.linear import Alias, Linear
from verifiers.bounds.graph.ops.maxes import MaxOf
from verifiers.bounds.graph.ops.piecewise import PiecewiseLinear, clip, prelu, relu
from verifiers.bounds.graph.ops.sshaped import SShaped
from verifiers.model import ops, ops_graph
from verifiers.model.evaluate import Window

decimal.getcontext().prec = 60
N = 6


def _dec_exp(x: Fraction) -> decimal.Decimal:
    return (decimal.Decimal(x.numerator) / decimal.Decimal(x.denominator)).exp()


def exact_sshaped(name: str, x: float) -> Fraction:
    if name == "Sigmoid":
        value = 1 / (1 + _dec_exp(-Fraction(x)))
    else:
        e = _dec_exp(2 * Fraction(x))
        value = (e - 1) / (e + 1)
    return Fraction(value)  # within 1e-58 of the truth: far below every margin tested


def exact_pl(op: PiecewiseLinear, x: float, j: int) -> Fraction:
    piece = int(np.sum(x > op.breakpoints))
    slopes = np.broadcast_to(op.slopes, (len(op.slopes), N))
    icpts = np.broadcast_to(op.icpts, (len(op.icpts), N))
    return Fraction(float(slopes[piece, j])) * Fraction(x) + Fraction(float(icpts[piece, j]))


def instances(rng):
    """(op, exact evaluation on a list of input rows of Fractions -> output Fractions)."""
    gemm = ops.Gemm(
        b=rng.normal(size=(N, 4)).astype(np.float32).astype(np.float64),
        c=rng.normal(size=4).astype(np.float32).astype(np.float64),
        alpha=1.0,
        beta=1.0,
        trans_a=False,
        trans_b=False,
    )

    def gemm_exact(xs):
        return [
            sum((Fraction(float(gemm.b[i, o])) * xs[0][i] for i in range(N)), Fraction(0))
            + Fraction(float(gemm.c[o]))
            for o in range(4)
        ]

    yield Linear.of(gemm, [(1, N)]), gemm_exact
    yield Alias(), lambda xs: list(xs[0])
    pls = [
        relu(N),
        relu(N, 0.3),
        relu(N, -0.5),
        relu(N, 2.0),
        prelu(rng.uniform(-1, 2, size=N)),
        clip(-0.25, 0.5),
        clip(None, 0.1),
    ]
    for op in pls:
        yield op, lambda xs, op=op: [exact_pl(op, float(x), j) for j, x in enumerate(xs[0])]
    for name in ("Sigmoid", "Tanh"):
        yield SShaped(name), lambda xs, name=name: [exact_sshaped(name, float(x)) for x in xs[0]]
    index = np.array([[0, 1, 2], [2, 3, -1], [3, 4, 5], [5, 0, 1]])
    yield (
        MaxOf((index,), (N,), None),
        lambda xs: [max(xs[0][k] for k in row if k >= 0) for row in index],
    )
    pair = np.arange(N)[:, None]
    const = rng.normal(size=N)
    yield (
        MaxOf((pair, pair), (N, N), const),
        lambda xs: [max(xs[0][j], xs[1][j], Fraction(float(const[j]))) for j in range(N)],
    )
    yield (
        MaxOf((pair, pair), (N, N), -const, negate=True),
        lambda xs: [min(xs[0][j], xs[1][j], Fraction(float(const[j]))) for j in range(N)],
    )


def n_inputs(op) -> int:
    return len(op.index) if isinstance(op, MaxOf) else 1


def random_boxes(rng, batch: int, scale: float):
    centre = rng.normal(size=(batch, N)) * scale
    width = rng.exponential(scale, size=(batch, N)) * rng.integers(0, 2, size=(batch, N))
    return centre - width / 2, centre + width / 2


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("scale", [0.05, 1.0, 8.0])
def test_every_op_encloses_sampled_and_exact_values(seed: int, scale: float) -> None:
    rng = np.random.default_rng(seed)
    for op, exact in instances(rng):
        k = n_inputs(op)
        boxes = [random_boxes(rng, 3, scale) for _ in range(k)]
        low, high = op.interval(boxes)
        relaxed = op.relax(boxes)
        n_out = low.shape[1]
        rows = np.concatenate([np.eye(n_out), -np.eye(n_out)])[None].repeat(3, axis=0)
        parts, const, slack = relaxed.back(rows)
        samples = [
            b[0][:, None, :] + (b[1] - b[0])[:, None, :] * rng.random((3, 400, N)) for b in boxes
        ]
        for b in range(3):
            xs = [s[b] for s in samples]
            ys = op.evaluate(*xs)
            assert np.all(low[b] <= ys) and np.all(ys <= high[b]), type(op)
            linear = sum(x @ p[b].T for x, p in zip(xs, parts, strict=True)) + const[b] - slack[b]
            assert np.all(linear[:, :n_out] <= ys + 1e-12) and np.all(
                -linear[:, n_out:] >= ys - 1e-12
            )
            for point in range(0, 400, 50):
                fx = [[Fraction(float(v)) for v in x[point]] for x in xs]
                truth = exact(fx)
                for o in range(n_out):
                    assert Fraction(float(low[b, o])) <= truth[o] <= Fraction(float(high[b, o]))
                    for sign, row in ((1, o), (-1, n_out + o)):
                        bound = sum(
                            (
                                Fraction(float(p[b, row, i])) * fx[q][i]
                                for q, p in enumerate(parts)
                                for i in range(p.shape[2])
                            ),
                            Fraction(float(const[b, row])) - Fraction(float(slack[b, row])),
                        )
                        assert sign * bound <= truth[o] if sign > 0 else -bound >= truth[o], (
                            type(op),
                            o,
                        )


def test_degenerate_and_huge_intervals_stay_sound() -> None:
    for op in (SShaped("Sigmoid"), SShaped("Tanh"), relu(N, 0.1), clip(0, 1)):
        lo = np.array([[-1e6, 0.0, 3.0, -40.0, 1e-300, -2.0]])
        hi = np.array([[1e6, 0.0, 3.0, 40.0, 2e-300, -2.0]])
        low, high = op.interval([(lo, hi)])
        relaxed = op.relax([(lo, hi)])
        parts, const, slack = relaxed.back(np.eye(N)[None])
        xs = lo + (hi - lo) * np.random.default_rng(0).random((1000, N))
        ys = op.evaluate(xs)
        assert np.all(np.isfinite(const)) and np.all(low <= ys) and np.all(ys <= high)
        assert np.all(xs @ parts[0][0].T + const[0] - slack[0] <= ys + 1e-12)


IR_OP_CLASSES = [
    cls
    for module in (ops, ops_graph)
    for _, cls in inspect.getmembers(module, inspect.isclass)
    if cls.__module__ == module.__name__
    and hasattr(cls, "evaluate")
    and hasattr(cls, "kind")
    and not cls.__name__.startswith("_")
]


def test_every_ir_op_is_bounded_or_declared_unsupported() -> None:
    assert ops_graph.Softmax in NO_BOUNDS
    for cls in IR_OP_CLASSES:
        assert cls in RULES or cls in NO_BOUNDS, f"{cls.__name__}: no bound rule"


def test_every_bound_op_has_every_analysis() -> None:
    for cls in BOUND_OP_CLASSES:
        for method in ("evaluate", "interval", "relax", "vjp"):
            assert callable(getattr(cls, method, None)), f"{cls.__name__} lacks {method}"
    relaxed_classes = {
        type(op.relax([random_boxes(np.random.default_rng(0), 1, 1.0)] * n_inputs(op)))
        for op, _ in instances(np.random.default_rng(0))
    }
    for cls in relaxed_classes:
        assert callable(getattr(cls, "back", None)), f"{cls.__name__} lacks back"


def test_maxpool_window_index_matches_evaluation() -> None:
    from verifiers.bounds.graph.ops import _max_pool
    from verifiers.model.ir import Node

    op = ops.MaxPool(Window((2, 2), (2, 2), (1, 0, 0, 1)))
    node = Node("p", "MaxPool", op, ("x",), "y")
    shape = (1, 2, 5, 5)
    out = op.evaluate(np.zeros((1, *shape))).shape[1:]
    bound_op = _max_pool(node, [shape], out)
    x = np.random.default_rng(0).normal(size=(3, 50))
    assert np.array_equal(bound_op.evaluate(x), op.evaluate(x.reshape(3, *shape)).reshape(3, -1))
