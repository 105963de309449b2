"""`verify` end to end on graph networks (residual joins, pooling, S-shaped and other
non-chain ops): verdicts against dense sampling, the chain and graph engines against each
other, and the Softmax rule."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from onnx import helper

from tests.onnx_builders import dense_relu_model, make_model, random_dense, to_bytes
from verifiers.bounds.graph import GraphNetwork, graph_bounds
from verifiers.bounds.linear import linear_bounds
from verifiers.components import OnnxComponent
from verifiers.model import load_model
from verifiers.options import Options
from verifiers.result import Verdict
from verifiers.spec.property import Case, Conjunction, HalfSpace, Property
from verifiers.verify import verify


def _w(rng, *shape):
    return rng.normal(size=shape).astype(np.float32)


def residual(rng):
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h1"], transB=1),
        helper.make_node("Relu", ["h1"], ["a1"]),
        helper.make_node("Gemm", ["a1", "W2", "b2"], ["h2"], transB=1),
        helper.make_node("Add", ["h2", "x"], ["r"]),
        helper.make_node("Relu", ["r"], ["a2"]),
        helper.make_node("Gemm", ["a2", "W3", "b3"], ["y"], transB=1),
    ]
    init = dict(W1=_w(rng, 6, 3), b1=_w(rng, 6), W2=_w(rng, 3, 6), b2=_w(rng, 3))
    init |= dict(W3=_w(rng, 2, 3), b3=_w(rng, 2))
    return make_model(nodes, input_shape=[1, 3], initializers=init)


def s_shaped(rng):
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h1"], transB=1),
        helper.make_node("Sigmoid", ["h1"], ["a1"]),
        helper.make_node("Gemm", ["a1", "W2", "b2"], ["h2"], transB=1),
        helper.make_node("Tanh", ["h2"], ["a2"]),
        helper.make_node("Gemm", ["a2", "W3", "b3"], ["y"], transB=1),
    ]
    init = dict(W1=_w(rng, 8, 3), b1=_w(rng, 8), W2=_w(rng, 6, 8), b2=_w(rng, 6))
    init |= dict(W3=_w(rng, 2, 6), b3=_w(rng, 2))
    return make_model(nodes, input_shape=[1, 3], initializers=init)


def cnn_maxpool(rng):
    nodes = [
        helper.make_node("Conv", ["x", "K", "c"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("MaxPool", ["a"], ["p"], kernel_shape=[2, 2], strides=[1, 1]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "W", "b"], ["y"], transB=1),
    ]
    init = dict(K=_w(rng, 2, 1, 3, 3), c=_w(rng, 2), W=_w(rng, 2, 8), b=_w(rng, 2))
    return make_model(nodes, input_shape=[1, 1, 3, 3], initializers=init)


def mixed_ops(rng):
    """PRelu, Clip, LeakyRelu (slope 2), Max of two branches, constant Pad."""
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h1"], transB=1),
        helper.make_node("PRelu", ["h1", "s"], ["a1"]),
        helper.make_node("Gemm", ["x", "W2", "b2"], ["h2"], transB=1),
        helper.make_node("Clip", ["h2", "lo", "hi"], ["a2"]),
        helper.make_node("LeakyRelu", ["a1"], ["a3"], alpha=2.0),
        helper.make_node("Max", ["a3", "a2"], ["m"]),
        helper.make_node("Pad", ["m", "pads", "v"], ["pm"]),
        helper.make_node("Gemm", ["pm", "W3", "b3"], ["y"], transB=1),
    ]
    init = dict(W1=_w(rng, 4, 3), b1=_w(rng, 4), s=_w(rng, 4), W2=_w(rng, 4, 3), b2=_w(rng, 4))
    init |= dict(lo=np.float32(-0.5), hi=np.float32(0.7), W3=_w(rng, 2, 6), b3=_w(rng, 2))
    init |= dict(pads=np.array([0, 1, 0, 1], dtype=np.int64), v=np.float32(0.25))
    return make_model(nodes, input_shape=[1, 3], initializers=init, opset=13)


BUILDERS = {"residual": residual, "s_shaped": s_shaped, "cnn": cnn_maxpool, "mixed": mixed_ops}


def at_least(threshold: float, lower, upper) -> Property:
    """Unsafe: y0 - y1 >= threshold."""
    h = HalfSpace((Fraction(-1), Fraction(1)), Fraction(-threshold))
    case = Case(
        tuple(Fraction(float(v)) for v in lower),
        tuple(Fraction(float(v)) for v in upper),
        (Conjunction((h,)),),
    )
    return Property(len(lower), 2, (case,))


def sampled_range(model, lower, upper, rng):
    """The range of y0 - y1 seen at random points and after sign-gradient ascent from them."""
    x = lower + (upper - lower) * rng.random((4000, len(lower)))
    net = GraphNetwork.of(model.graph)
    direction = np.tile([1.0, -1.0], (len(x), 1))
    best = x
    for step in np.geomspace(0.25, 1e-3, 60)[:, None] * (upper - lower):
        best = np.clip(best + step * np.sign(net.gradient(best, direction)), lower, upper)
    y = model.evaluate(np.concatenate([x, best]))
    d = y[:, 0] - y[:, 1]
    return d.min(), d.max()


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("seed", range(2))
def test_graph_verdicts_agree_with_sampling(name: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = to_bytes(BUILDERS[name](rng))
    model = load_model(data)
    n = model.n_inputs
    lower = rng.uniform(-1, 0, size=n).astype(np.float32).astype(np.float64)
    upper = (lower + 0.5).astype(np.float32).astype(np.float64)
    low, high = sampled_range(model, lower, upper, rng)
    spread = max(high - low, 1e-3)
    options = Options(timeout_s=30)
    above = verify(OnnxComponent(data), at_least(high + 0.05 * spread, lower, upper), options)
    assert above.verdict is Verdict.HOLDS, above.reason
    assert above.stats.method.startswith("bab+graph")
    below = verify(OnnxComponent(data), at_least(high - 0.1 * spread, lower, upper), options)
    assert below.verdict is Verdict.VIOLATED
    cex = below.counterexample
    assert cex.onnxruntime_outputs[0] - cex.onnxruntime_outputs[1] >= high - 0.1 * spread


def _conv_chain(rng):
    nodes = [
        helper.make_node("Conv", ["x", "K", "c"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("AveragePool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "W", "b"], ["g"], transB=1),
        helper.make_node("LeakyRelu", ["g"], ["l"], alpha=0.1),
        helper.make_node("Gemm", ["l", "V", "d"], ["y"], transB=1),
    ]
    init = dict(K=_w(rng, 3, 1, 3, 3), c=_w(rng, 3), W=_w(rng, 5, 12), b=_w(rng, 5))
    init |= dict(V=_w(rng, 2, 5), d=_w(rng, 2))
    return make_model(nodes, input_shape=[1, 1, 4, 4], initializers=init)


@pytest.mark.parametrize("seed", range(3))
def test_chain_and_graph_engines_agree_on_chains(seed: int) -> None:
    rng = np.random.default_rng(seed)
    weights, biases = random_dense([4, 8, 8, 2], seed=seed)
    for proto in (dense_relu_model(weights, biases), _conv_chain(rng)):
        model = load_model(to_bytes(proto))
        n = model.n_inputs
        lower = rng.uniform(-1, 0, size=(5, n))
        upper = lower + rng.uniform(0, 1, size=(5, n))
        objective = rng.normal(size=(3, 2))
        chain = linear_bounds(model.network, lower, upper, objective)
        dag = graph_bounds(GraphNetwork.of(model.graph), lower, upper, objective)
        scale = 1.0 + np.abs(chain.objective_lower)
        assert np.all(np.abs(chain.objective_lower - dag.objective_lower) <= 1e-9 * scale)


def test_chain_models_keep_the_chain_engine() -> None:
    weights, biases = random_dense([4, 8, 8, 2], seed=3)
    data = to_bytes(dense_relu_model(weights, biases))
    lower, upper = np.zeros(4), np.ones(4)
    result = verify(OnnxComponent(data), at_least(1e6, lower, upper), Options(timeout_s=10))
    assert result.verdict is Verdict.HOLDS and result.stats.method.startswith("bab+linear")


def _softmax_model(rng):
    nodes = [
        helper.make_node("Gemm", ["x", "W", "b"], ["z"], transB=1),
        helper.make_node("Softmax", ["z"], ["y"], axis=-1),
    ]
    return make_model(nodes, input_shape=[1, 3], initializers=dict(W=_w(rng, 2, 3), b=_w(rng, 2)))


def test_final_softmax_is_stripped_only_for_pairwise_comparisons() -> None:
    data = to_bytes(_softmax_model(np.random.default_rng(0)))
    lower, upper = np.zeros(3), np.full(3, 0.01)
    model = load_model(data)
    d = model.evaluate(0.5 * (lower + upper)[None])[0]
    # Unsafe: the class that wins at the centre loses somewhere (y_win - y_lose <= 0).
    win = int(np.argmax(d))
    coeffs = [Fraction(0), Fraction(0)]
    coeffs[win], coeffs[1 - win] = Fraction(1), Fraction(-1)
    case = Case(
        tuple(Fraction(v) for v in lower),
        tuple(Fraction(v) for v in upper),
        (Conjunction((HalfSpace(tuple(coeffs), Fraction(0)),)),),
    )
    result = verify(OnnxComponent(data), Property(3, 2, (case,)), Options(timeout_s=10))
    assert result.verdict in (Verdict.HOLDS, Verdict.VIOLATED)
    threshold = at_least(0.5, lower, upper)  # y0 - y1 >= 0.5: not invariant under Softmax
    rejected = verify(OnnxComponent(data), threshold, Options(timeout_s=10))
    assert rejected.verdict is Verdict.ERROR and "Softmax" in rejected.reason


def test_sigmoid_split_budget_gives_unknown_with_fraction(monkeypatch) -> None:
    from verifiers.search import graph_bab

    monkeypatch.setattr(graph_bab, "MAX_DEPTH", 1)
    rng = np.random.default_rng(5)
    data = to_bytes(s_shaped(rng))
    model = load_model(data)
    lower, upper = np.full(3, -1.0), np.full(3, 1.0)
    low, high = sampled_range(model, lower, upper, rng)
    result = verify(OnnxComponent(data), at_least(high + 1e-3, lower, upper), Options(timeout_s=20))
    assert result.verdict in (Verdict.UNKNOWN, Verdict.HOLDS)
    if result.verdict is Verdict.UNKNOWN:
        assert "split budget" in result.reason and result.stats.proved_fraction < 1.0


def test_graph_search_stops_near_its_deadline() -> None:
    rng = np.random.default_rng(7)
    data = to_bytes(cnn_maxpool(rng))
    model = load_model(data)
    lower, upper = np.full(9, -1.0), np.full(9, 1.0)
    low, high = sampled_range(model, lower, upper, rng)
    prop = at_least(high + 1e-4 * (high - low), lower, upper)  # too tight to prove in time
    result = verify(OnnxComponent(data), prop, Options(timeout_s=1.0))
    assert result.verdict in (Verdict.UNKNOWN, Verdict.HOLDS)
    assert result.stats.seconds < 2.0


def test_graph_certificates_have_a_tree_and_are_rechecked() -> None:
    from service.worker.engine import _check_certificate

    rng = np.random.default_rng(0)
    data = to_bytes(s_shaped(rng))
    lower, upper = np.zeros(3), np.full(3, 0.01)
    prop = at_least(100.0, lower, upper)
    result = verify(OnnxComponent(data), prop, Options(timeout_s=10))
    assert result.verdict is Verdict.HOLDS
    cert = result.certificate
    assert cert["engine"] == "graph" and cert["complete"] is True and "tree" in cert["cases"][0]
    job = {"certificate": cert, "stats": {"seconds": 0.1}, "verdict": "holds"}
    _check_certificate(job, load_model(data), prop, 10.0)
    check = job["certificate"]["check"]
    assert job["verdict"] == "holds" and check["checked"] is True and check["valid"] is True


@pytest.mark.parametrize("op", ["Clip", "PRelu"])
@pytest.mark.parametrize("seed", range(3))
def test_splits_of_an_op_on_the_input_itself_split_the_box(op: str, seed: int) -> None:
    """An op reading the network input directly, on enough inputs that the search splits
    elements rather than the box: splitting one of its elements must cut the region's box
    (the bounds read the input from there), else each part is the parent over again."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(17, 40))
    crossing = rng.choice(n, size=int(rng.integers(4, 8)), replace=False)
    lower, upper = np.full(n, 0.2), np.full(n, 0.8)  # on one linear piece of either op
    lower[crossing], upper[crossing] = -1.0 - rng.random(crossing.size), 1.0 + rng.random()
    w = np.zeros((2, n), np.float32)
    w[0] = rng.normal(size=n) * np.where(np.isin(np.arange(n), crossing), 4.0, 0.2)
    slope = np.float32(0.25)
    if op == "Clip":
        first = helper.make_node("Clip", ["x", "lo", "hi"], ["h"])
        init = {"lo": np.array(0.0, np.float32), "hi": np.array(1.0, np.float32)}
        piece = lambda x: np.clip(x, 0.0, 1.0)  # noqa: E731
    else:
        first = helper.make_node("PRelu", ["x", "s"], ["h"])
        init = {"s": np.array([slope], np.float32)}
        piece = lambda x: np.where(x < 0, float(slope) * x, x)  # noqa: E731
    v = np.zeros((2, n), np.float32)
    v[0] = -0.5 * w[0]  # y0 = w.f(x) + v.x: no single line per element bounds it exactly
    nodes = [
        first,
        helper.make_node("Gemm", ["h", "W"], ["a"], transB=1),
        helper.make_node("Gemm", ["x", "V"], ["b"], transB=1),
        helper.make_node("Add", ["a", "b"], ["y"]),
    ]
    init |= {"W": w, "V": v}
    data = to_bytes(make_model(nodes, input_shape=[1, n], initializers=init))
    # y0 is separable and piecewise linear: its minimum is at the ends or breakpoints.
    points = np.stack([lower, upper, np.clip(0.0, lower, upper), np.clip(1.0, lower, upper)])
    terms = w[0].astype(np.float64) * piece(points) + v[0].astype(np.float64) * points
    low = float(np.sum(np.min(terms, axis=0)))
    for gap, expected in ((1e-3, Verdict.HOLDS), (-1e-3, Verdict.VIOLATED)):
        below = HalfSpace((Fraction(1), Fraction(-1)), Fraction(low - gap))  # y0 - y1 <= ..
        case = Case(
            tuple(Fraction(float(v)) for v in lower),
            tuple(Fraction(float(v)) for v in upper),
            (Conjunction((below,)),),
        )
        result = verify(OnnxComponent(data), Property(n, 2, (case,)), Options(timeout_s=10))
        assert result.verdict is expected, result.reason
