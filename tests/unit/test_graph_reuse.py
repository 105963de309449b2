"""The graph search's two shortcuts against independent ground truth.

1. After an element or max-case split, graph_bounds takes the parent's bounds of the
   tensors upstream of the split as they are (`reuse`, GraphRegion.changed) instead of
   recomputing them. On small random DAGs (residual joins, Tanh, Max, MaxPool, Sigmoid),
   for every child of every split the search can make at the root: the bounds with reuse
   must be exactly those of the full recomputation (every tensor, the objective), and
   enclose every sampled point of the child region (the points of the box whose split
   tensor lies in the child's interval, or whose max is taken where the child says).
2. An S-shaped element is split at the point of its interval where the function is
   farthest from its chord: checked against a dense grid (and strictly inside).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.test_graph_alpha import BUILDERS, ROWS, setup
from verifiers.bounds.graph import graph_bounds
from verifiers.bounds.graph.ops.base import Lines
from verifiers.bounds.graph.ops.maxes import MaxOf, MaxRelaxed
from verifiers.bounds.graph.ops.sshaped import SShaped
from verifiers.search.graph_bab import GraphRegion
from verifiers.search.graph_branching import GraphBranching, _split_points


class _Branching(GraphBranching):
    def __init__(self, net, lower, upper) -> None:
        self.net, self.free, self.root_width = net, upper > lower, upper - lower


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
                assert np.array_equal(lo, reused.boxes[tensor][0]), (tensor, child.path)
                assert np.array_equal(hi, reused.boxes[tensor][1]), (tensor, child.path)
            assert np.array_equal(full.objective_lower, reused.objective_lower)
            inside = _in_child(net, child, values)
            for tensor, (lo, hi) in reused.boxes.items():
                v = values[tensor][inside]
                assert np.all(v >= lo[0] - 1e-9) and np.all(v <= hi[0] + 1e-9), tensor
            y = values[net.bound_output][inside] @ ROWS.T
            assert np.all(reused.objective_lower[0] <= y.min(axis=0, initial=np.inf) + 1e-9)
            checked += 1
    assert checked > 0


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
