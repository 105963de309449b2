"""Split multipliers on the graph engine (search/graph_beta.py) against exact ground truth.

A region is a box plus an interval asserted on one element of an elementwise op's input
(a branch-and-bound element split). The multiplier bound must lie below the objective at
every point of the region: sampled points, the lowest ones re-evaluated exactly (rationals
for linear and piecewise-linear ops, 60-digit decimals for Sigmoid/Tanh), with membership in
the region decided exactly too. It must never be looser than the bound without multipliers,
and it must actually be tighter on some regions (else it tests nothing). The boxes the
multipliers refine (inputs of S-shaped ops downstream of a split) must hold the region's
values, exactly too. Then verdicts with
element splits on networks of more than 8 inputs, against sampling plus gradient ascent.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from onnx import helper

from tests.onnx_builders import make_model, to_bytes
from tests.unit.test_graph_ops import _dec_exp
from tests.unit.test_graph_verify import at_least, residual, s_shaped, sampled_range
from verifiers.bounds.graph import GraphNetwork, graph_bounds
from verifiers.bounds.graph.backsub import back_substitute
from verifiers.bounds.graph.ops.linear import Alias, Linear
from verifiers.bounds.graph.ops.maxes import MaxOf
from verifiers.bounds.graph.ops.piecewise import PiecewiseLinear
from verifiers.bounds.graph.ops.sshaped import SShaped
from verifiers.components import OnnxComponent
from verifiers.model import load_model
from verifiers.options import Options
from verifiers.result import Verdict
from verifiers.search.graph_beta import refine, tighten
from verifiers.verify import verify


def exact_values(net: GraphNetwork, x: np.ndarray) -> dict[str, list[Fraction]]:
    """Every tensor at one input point, exactly."""
    values = {net.input_name: [Fraction(float(v)) for v in x]}
    for node in net.nodes:
        ins = [values[name] for name in node.inputs]
        op = node.op
        if isinstance(op, Alias):
            out = ins[0]
        elif isinstance(op, Linear):
            out = [Fraction(float(b)) for b in op.bias]
            for vec, w in zip(ins, op.weights, strict=True):
                for r in range(len(out)):
                    out[r] += sum(
                        Fraction(float(c)) * v for c, v in zip(w[r], vec, strict=True) if c != 0
                    )
        elif isinstance(op, PiecewiseLinear):
            out = []
            for j, v in enumerate(ins[0]):
                piece = sum(v > Fraction(float(p)) for p in op.breakpoints)
                slope = np.broadcast_to(op.slopes[piece], (len(ins[0]),))[j]
                icpt = np.broadcast_to(op.icpts[piece], (len(ins[0]),))[j]
                out.append(Fraction(float(slope)) * v + Fraction(float(icpt)))
        elif isinstance(op, SShaped):
            out = [_exact_sshaped(op.name, v) for v in ins[0]]
        elif isinstance(op, MaxOf):
            out = _exact_max(op, ins)
        else:
            raise AssertionError(type(op))
        values[node.output] = out
    return values


def _exact_max(op: MaxOf, ins: list[list[Fraction]]) -> list[Fraction]:
    sign = -1 if op.negate else 1
    out = []
    for j in range(op.index[0].shape[0]):
        candidates = [sign * vec[k] for vec, index in zip(ins, op.index, strict=True)
                      for k in index[j] if k >= 0]  # fmt: skip
        if op.const is not None:
            candidates.append(Fraction(float(op.const[j])))
        out.append(sign * max(candidates))
    return out


def _exact_sshaped(name: str, x: Fraction) -> Fraction:
    """Within 1e-58 of the truth (60-digit decimals), far below every margin tested."""
    if name == "Sigmoid":
        return Fraction(1 / (1 + _dec_exp(-x)))
    e = _dec_exp(2 * x)
    return Fraction((e - 1) / (e + 1))


def wide_mlp(rng, activation: str, n: int = 12):
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h1"], transB=1),
        helper.make_node(activation, ["h1"], ["a1"]),
        helper.make_node("Gemm", ["a1", "W2", "b2"], ["h2"], transB=1),
        helper.make_node(activation, ["h2"], ["a2"]),
        helper.make_node("Gemm", ["a2", "W3", "b3"], ["y"], transB=1),
    ]
    # He-like scale (as trained networks have): wide layers stay in a useful range.
    w = lambda *s: (rng.normal(size=s) * 2 / np.sqrt(s[-1])).astype(np.float32)  # noqa: E731
    init = dict(W1=w(10, n), b1=w(10), W2=w(8, 10), b2=w(8), W3=w(2, 8), b3=w(2))
    return make_model(nodes, input_shape=[1, n], initializers=init)


BUILDERS = {
    "residual": residual,
    "s_shaped": s_shaped,
    "sigmoid": lambda rng: wide_mlp(rng, "Sigmoid", 4),
    "relu": lambda rng: wide_mlp(rng, "Relu", 4),
}


def split_region(net: GraphNetwork, rng, lower, upper):
    """A split on an element of an elementwise op's input, with its bounds on the region:
    (splits, known, tensor, element, at, upper part)."""
    root = graph_bounds(net, lower[None], upper[None])
    inputs = [n.inputs[0] for n in net.nodes if isinstance(n.op, PiecewiseLinear | SShaped)]
    name = inputs[rng.integers(len(inputs))]
    lo, hi = root.boxes[name]
    j = int(np.argmax(hi[0] - lo[0]))
    at = float(lo[0, j] + (hi[0, j] - lo[0, j]) * rng.uniform(0.3, 0.7))
    upper_part = bool(rng.integers(2))
    lo, hi = lo.copy(), hi.copy()
    if upper_part:
        lo[0, j] = at
    else:
        hi[0, j] = at
    return ((name, j, at, upper_part),), {name: (lo, hi)}, name, j, at, upper_part


@pytest.mark.parametrize("name", list(BUILDERS))
def test_split_multipliers_enclose_the_region_exactly(name: str) -> None:
    tighter = refined = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        net = GraphNetwork.of(load_model(to_bytes(BUILDERS[name](rng))).graph)
        n = net.n_inputs
        lower = rng.uniform(-1, 0, size=n).astype(np.float32).astype(np.float64)
        upper = (lower + rng.uniform(0.2, 1.5)).astype(np.float32).astype(np.float64)
        rows = np.array([[1.0, -1.0], [-1.0, 1.0], [0.5, 2.0]])
        splits, known, tensor, j, at, upper_part = split_region(net, rng, lower, upper)
        bounds = graph_bounds(net, lower[None], upper[None], rows, known=known)
        plain = bounds.objective_lower.copy()
        with np.errstate(all="ignore"):
            best, found = tighten(net, bounds, rows, [splits])
            again, _ = tighten(net, bounds, rows, [splits], warm=found)  # warm-started
        assert np.all(again >= plain)
        best = np.maximum(best, again)  # the checks below then cover both
        assert np.all(best >= plain)
        tighter += int(np.any(best > plain + 1e-9))
        with np.errstate(all="ignore"):
            boxes = refine(net, bounds, [splits])
        refined += len(boxes)
        # The region's points: random, box corners and points pushed towards each row's min.
        x = lower + (upper - lower) * rng.random((3000, n))
        x = np.concatenate([x, np.where(rng.random((300, n)) < 0.5, lower, upper)])
        values = net.values(x)
        z = values[tensor][:, j]
        near = np.abs(z - at) < 1e-9  # membership decided exactly below
        inside = (z >= at) if upper_part else (z <= at)
        y = values[net.bound_output]
        for key, (lo, hi) in boxes.items():  # refined boxes hold the region's values
            assert np.all(values[key][inside & ~near] >= lo[0] - 1e-9)
            assert np.all(values[key][inside & ~near] <= hi[0] + 1e-9)
        for r, row in enumerate(rows):
            objective = y @ row
            assert np.all(objective[inside & ~near] >= best[0, r] - 1e-9)
            candidates = np.flatnonzero(inside | near)
            for k in candidates[np.argsort(objective[candidates])[:8]]:
                exact = exact_values(net, x[k])
                z_exact = exact[tensor][j]
                if (z_exact >= Fraction(at)) if upper_part else (z_exact <= Fraction(at)):
                    for key, (lo, hi) in boxes.items():
                        for e, v in enumerate(exact[key]):
                            assert Fraction(float(lo[0, e])) <= v <= Fraction(float(hi[0, e]))
                    out = exact[net.bound_output]
                    value = sum(Fraction(float(c)) * v for c, v in zip(row, out, strict=True))
                    assert Fraction(float(best[0, r])) <= value
    assert tighter > 0, "the multipliers never tightened a bound: the test tests nothing"
    assert refined > 0 or name in ("residual", "relu"), "no box was refined"


def test_a_seed_the_walk_never_reaches_is_an_error() -> None:
    rng = np.random.default_rng(0)
    net = GraphNetwork.of(load_model(to_bytes(residual(rng))).graph)
    lower, upper = np.zeros((1, 3)), np.ones((1, 3))
    bounds = graph_bounds(net, lower, upper)
    rows = np.ones((1, 1, net.sizes["h1"]))
    # a2 lies downstream of h1: its term would silently drop out of h1's bound.
    seeds = {"a2": np.ones((1, 1, net.sizes["a2"]))}
    with pytest.raises(ValueError, match="never passed back"):
        back_substitute(net, bounds, "h1", rows, seeds=seeds)


def wide_instance(seed: int, activation: str):
    """A 24-input MLP, a float32 box of width 0.1 in it, and the sampled range of y0 - y1
    there: (bytes, model, lower, upper, (low, high))."""
    rng = np.random.default_rng(seed)
    data = to_bytes(wide_mlp(rng, activation, 24))
    model = load_model(data)
    lower = rng.uniform(-1, 0, size=24).astype(np.float32).astype(np.float64)
    upper = (lower + 0.1).astype(np.float32).astype(np.float64)
    return data, model, lower, upper, sampled_range(model, lower, upper, rng)


@pytest.mark.parametrize("activation", ["Sigmoid", "Tanh", "Relu"])
@pytest.mark.parametrize("seed", range(2))
def test_element_split_verdicts_agree_with_sampling(activation: str, seed: int) -> None:
    """24 inputs (above SSHAPED_INPUT_DIMS): the search splits elements, with multipliers
    on the S-shaped networks, not the box."""
    data, model, lower, upper, (low, high) = wide_instance(seed, activation)
    spread = max(high - low, 1e-3)
    options = Options(timeout_s=30)
    above = verify(OnnxComponent(data), at_least(high + 0.05 * spread, lower, upper), options)
    assert above.verdict is Verdict.HOLDS, above.reason
    below = verify(OnnxComponent(data), at_least(high - 0.1 * spread, lower, upper), options)
    assert below.verdict is Verdict.VIOLATED
    cex = below.counterexample
    assert cex.onnxruntime_outputs[0] - cex.onnxruntime_outputs[1] >= high - 0.1 * spread


def test_targeted_falsification_finds_a_replayed_counterexample() -> None:
    """One conjunction reachable (y0 - y1 above the sampled max minus a tenth of the
    spread), one not (y1 - y0 beyond any bound): the targeted pass replays a point of the
    first; onnxruntime's output is in the unsafe set."""
    import time

    from verifiers.search.context import CaseOutcome, SearchContext
    from verifiers.search.graph_falsify import GraphFalsifier
    from verifiers.spec.property import Case, Conjunction, HalfSpace

    data, model, lower, upper, (low, high) = wide_instance(3, "Tanh")
    threshold = high - 0.1 * max(high - low, 1e-3)
    reachable = at_least(threshold, lower, upper).cases[0]
    never = Conjunction((HalfSpace((Fraction(1), Fraction(-1)), Fraction(-(10**6))),))
    case = Case(reachable.lower_exact, reachable.upper_exact, (never, *reachable.unsafe))
    ctx = SearchContext(
        network=GraphNetwork.of(model.graph),
        case=case,
        run=model.run_onnxruntime,
        deadline=time.monotonic() + 30,
    )
    outcome = CaseOutcome()
    assert GraphFalsifier(ctx, outcome).targeted(time.monotonic() + 20)
    out = outcome.counterexample.onnxruntime_outputs
    assert out[0] - out[1] >= threshold


@pytest.mark.parametrize("share", [0.0, 1e-3])
def test_box_split_phase_decides_after_the_element_phase(monkeypatch, share: float) -> None:
    """The second search of search_graph_case (box splits, from scratch) decides alone
    when the first (element splits) gets next to no time; verdicts agree with sampling."""
    from verifiers.search import graph_bab

    monkeypatch.setattr(graph_bab, "ELEMENT_SHARE", share)
    data, model, lower, upper, (low, high) = wide_instance(4, "Sigmoid")
    spread = max(high - low, 1e-3)
    options = Options(timeout_s=30)
    above = verify(OnnxComponent(data), at_least(high + 0.05 * spread, lower, upper), options)
    assert above.verdict is Verdict.HOLDS, above.reason
    below = verify(OnnxComponent(data), at_least(high - 0.1 * spread, lower, upper), options)
    assert below.verdict is Verdict.VIOLATED
