"""The graph search's two shortcuts against independent ground truth.

1. After an element or max-case split, graph_bounds takes the parent's bounds of the
   tensors upstream of the split as they are (`reuse`, GraphRegion.changed) instead of
   recomputing them. On small random DAGs (residual joins, Tanh, Max, MaxPool, Sigmoid),
   for every child of every split the search can make at the root: the bounds with reuse
   must be those of the full recomputation (but for rounding) (every tensor, the objective), and
   enclose every sampled point of the child region (the points of the box whose split
   tensor lies in the child's interval, or whose max is taken where the child says).
2. The entries of an elementwise ReLU-family or S-shaped op's output whose input entry was
   refined are not refined again (back-substitution cannot beat their interval bounds):
   with the refinement forced, every box and the objective come out the same (but for
   rounding).
3. An S-shaped element is split at the point of its interval where the function is
   farthest from its chord: checked against a dense grid (and strictly inside).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from tests.onnx_builders import make_model
from tests.unit import test_graph_alpha
from tests.unit.test_graph_alpha import BUILDERS, ROWS
from verifiers.bounds.graph import backsub, graph_bounds
from verifiers.bounds.graph.ops.base import Lines
from verifiers.bounds.graph.ops.maxes import MaxOf, MaxRelaxed
from verifiers.bounds.graph.ops.sshaped import SShaped
from verifiers.search.graph_bab import GraphRegion
from verifiers.search.graph_branching import GraphBranching, _split_points


def relu_into_max(rng):
    """Two ReLU layers, the second's two halves into a Max: the second ReLUs' stable
    inputs are not refined by their own op, so their outputs' are (where they gain)."""
    n = 6
    nodes = [
        helper.make_node("Gemm", ["x", "W0", "b0"], ["h0"], transB=1),
        helper.make_node("Relu", ["h0"], ["a0"]),
        helper.make_node("Gemm", ["a0", "Wa", "ba"], ["ha"], transB=1),
        helper.make_node("Gemm", ["a0", "Wb", "bb"], ["hb"], transB=1),
        helper.make_node("Relu", ["ha"], ["ra"]),
        helper.make_node("Relu", ["hb"], ["rb"]),
        helper.make_node("Max", ["ra", "rb"], ["m"]),
        helper.make_node("Gemm", ["m", "W2", "b2"], ["y"], transB=1),
    ]
    w = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    init = dict(W0=w(n, 4), b0=w(n), Wa=w(n, n), ba=w(n) + 2.0, Wb=w(n, n), bb=w(n) + 2.0)
    init |= dict(W2=w(2, n), b2=w(2))
    return make_model(nodes, input_shape=[1, 4], initializers=init)


BUILDERS = {**BUILDERS, "relu_max": relu_into_max}


class _Branching(GraphBranching):
    def __init__(self, net, lower, upper) -> None:
        self.net, self.free, self.root_width = net, upper > lower, upper - lower


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal but for rounding: the same rows back-substituted in other chunks may round
    differently (BLAS blocking); a bound the shortcut lost would differ by far more."""
    return bool(np.allclose(a, b, rtol=1e-10, atol=1e-10, equal_nan=True))


def setup(name: str, seed: int):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(test_graph_alpha, "BUILDERS", BUILDERS)
        return test_graph_alpha.setup(name, seed)


def _children(net, bounds, lower, upper):
    """Every split of the root the search could make: both parts of each unstable
    element's interval, both sides of each max case."""
    branching = _Branching(net, lower, upper)
    known = {name: (lo[0], hi[0]) for name, (lo, hi) in bounds.boxes.items()}
    root = GraphRegion(lower, upper, known=known)
    for node in net.nodes:
        relaxed = bounds.relaxed[node.output]
        if isinstance(relaxed, MaxRelaxed):
            for j in range(net.sizes[node.output]):
                yield from branching.split_case(root, node.output, j, int(relaxed.b[0, j]))
        elif isinstance(relaxed, Lines):
            name = node.inputs[0]
            lo, hi = bounds.boxes[name][0][0], bounds.boxes[name][1][0]
            at = _split_points(node.op, lo, hi)
            for j in np.flatnonzero((lo < at) & (at < hi)):
                yield from branching.split_element(root, "interval", name, int(j), at[j])


def _bounds(net, region, reuse: int):
    known = {name: (lo[None], hi[None]) for name, (lo, hi) in region.known.items()}
    cases = None
    if region.cases:
        cases = {
            node.output: region.cases.get(node.output, np.ones((net.sizes[node.output],
                                                                node.op.width), bool))[None]
            for node in net.nodes if isinstance(node.op, MaxOf)
        }  # fmt: skip
    lower, upper = region.lower[None], region.upper[None]
    return graph_bounds(net, lower, upper, ROWS, known, cases, reuse=reuse)


def _in_child(net, region, values) -> np.ndarray:
    """Which sampled points lie in the child region (its last split's side)."""
    step = region.path[-1]
    if step[0] == "interval":
        _, name, j, at, upper_part = step
        z = values[name][:, j]
        return z >= at if upper_part else z <= at
    _, name, j, b, side = step
    node = net.nodes[net.producer_index[name]]
    candidates = node.op._candidates([node.op._sign(values[t]) for t in node.inputs], -np.inf)
    best = candidates[:, j].max(axis=1)
    is_b = candidates[:, j, b] >= best
    others = np.delete(candidates[:, j], b, axis=1).max(axis=1, initial=-np.inf)
    return is_b if side == 0 else others >= best


@pytest.mark.parametrize("name", list(BUILDERS))
def test_reused_bounds_equal_recomputed_ones_and_enclose_samples(name: str) -> None:
    checked = 0
    for seed in range(4):
        rng, net, lower, upper = setup(name, seed)
        with np.errstate(all="ignore"):
            root = graph_bounds(net, lower[None], upper[None], ROWS)
        x = lower + (upper - lower) * rng.random((4000, len(lower)))
        values = net.values(x)
        for child in _children(net, root, lower, upper):
            assert child.changed > 0  # something is reused, else this tests nothing
            with np.errstate(all="ignore"):
                full, reused = _bounds(net, child, 0), _bounds(net, child, child.changed)
            for tensor, (lo, hi) in full.boxes.items():
                assert _same(lo, reused.boxes[tensor][0]), (tensor, child.path)
                assert _same(hi, reused.boxes[tensor][1]), (tensor, child.path)
            assert _same(full.objective_lower, reused.objective_lower)
            inside = _in_child(net, child, values)
            for tensor, (lo, hi) in reused.boxes.items():
                v = values[tensor][inside]
                assert np.all(v >= lo[0] - 1e-9) and np.all(v <= hi[0] + 1e-9), tensor
            y = values[net.bound_output][inside] @ ROWS.T
            assert np.all(reused.objective_lower[0] <= y.min(axis=0, initial=np.inf) + 1e-9)
            checked += 1
    assert checked > 0


@pytest.mark.parametrize("name", list(BUILDERS))
def test_refining_an_elementwise_output_would_not_tighten_it(name: str, monkeypatch) -> None:
    skipped = 0
    for seed in range(6):
        _, net, lower, upper = setup(name, seed)
        with np.errstate(all="ignore"):
            plain = graph_bounds(net, lower[None], upper[None], ROWS)
            with monkeypatch.context() as patch:
                patch.setattr(backsub, "_already_tight", lambda net, name, tight: False)
                forced = graph_bounds(net, lower[None], upper[None], ROWS)
        for tensor, (lo, hi) in forced.boxes.items():
            assert _same(lo, plain.boxes[tensor][0]), tensor
            assert _same(hi, plain.boxes[tensor][1]), tensor
        assert _same(forced.objective_lower, plain.objective_lower)
        skipped += sum(
            backsub._already_tight(net, t, {s: True for s in plain.boxes}) is not False
            for node in net.nodes for t in node.inputs if backsub.is_nonlinear(node.op)
        )  # fmt: skip
    # Where an elementwise op's output feeds a non-linear op (MaxPool after ReLU; PRelu,
    # Clip, LeakyRelu into Max); the other builders check that nothing else is skipped.
    assert skipped > 0 or name not in ("cnn", "mixed", "relu_max")


@pytest.mark.parametrize("function", ["Sigmoid", "Tanh"])
def test_sshaped_split_point_is_where_the_function_is_farthest_from_its_chord(
    function: str,
) -> None:
    op = SShaped(function)
    rng = np.random.default_rng(3)
    lo = rng.normal(size=400) * rng.choice([0.3, 2.0, 6.0], size=400)
    hi = lo + np.abs(rng.normal(size=400)) * rng.choice([0.01, 1.0, 5.0, 12.0], size=400)
    at = _split_points(op, lo, hi)
    assert np.all((lo < at) & (at < hi))
    t = np.linspace(0.0, 1.0, 4001)[None, :]
    dense = lo[:, None] + (hi - lo)[:, None] * t
    f_lo, f_hi = op.evaluate(lo[None])[0], op.evaluate(hi[None])[0]

    def distance(x, share):
        return np.abs(op.evaluate(x) - (f_lo[:, None] + (f_hi - f_lo)[:, None] * share))

    best = distance(dense, t).max(axis=1)
    share = ((at - lo) / (hi - lo))[:, None]
    found = distance(at[:, None], share)[:, 0]
    assert np.all(found >= 0.97 * best - 1e-12), np.min(found / np.maximum(best, 1e-300))
