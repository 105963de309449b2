"""Graph-engine certificates and their independent checker (checker/graph_*.py): valid
certificates of residual, MaxPool, PRelu/Clip/LeakyRelu/Max/Pad and Sigmoid/Tanh networks
check; tampered ones (another model or property, a changed weight, a dropped leaf, a
missing case of a split, a max split on a candidate that is not one) are rejected. The
checker's bounds are compared with exact rational evaluation and its Sigmoid/Tanh lines
with 50-digit evaluation."""

from __future__ import annotations

import copy
import functools
from fractions import Fraction

import numpy as np
import pytest
from mpmath import mp
from onnx import helper

from tests.onnx_builders import make_model, to_bytes
from tests.unit.test_graph_verify import BUILDERS, at_least, sampled_range
from verifiers.certify.checker import check_model
from verifiers.certify.checker import graph_bounds as gb
from verifiers.certify.checker import graph_lines as gl
from verifiers.certify.checker.graph_net import Net, Node
from verifiers.components import OnnxComponent
from verifiers.model import load_model
from verifiers.options import Options
from verifiers.result import Verdict
from verifiers.verify import verify

WIDTH = {"residual": 0.5, "s_shaped": 0.5, "cnn": 0.2, "mixed": 0.5, "wide": 0.2, "pooled": 0.1}


def _w(rng, *shape):
    return rng.normal(size=shape).astype(np.float32)


def wide_residual(rng):
    """12 inputs: more than the search splits as a box, so it splits ReLU intervals."""
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h1"], transB=1),
        helper.make_node("Relu", ["h1"], ["a1"]),
        helper.make_node("Gemm", ["a1", "W2", "b2"], ["h2"], transB=1),
        helper.make_node("Add", ["h2", "h1"], ["r"]),
        helper.make_node("LeakyRelu", ["r"], ["a2"], alpha=0.2),
        helper.make_node("Gemm", ["a2", "W3", "b3"], ["y"], transB=1),
    ]
    init = dict(W1=_w(rng, 10, 12), b1=_w(rng, 10), W2=_w(rng, 10, 10), b2=_w(rng, 10))
    init |= dict(W3=_w(rng, 2, 10), b3=_w(rng, 2))
    return make_model(nodes, input_shape=[1, 12], initializers=init)


def max_net(rng):
    """Max of two branches, then a linear layer: the test's hand-made max splits."""
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h1"], transB=1),
        helper.make_node("Gemm", ["x", "W2", "b2"], ["h2"], transB=1),
        helper.make_node("Max", ["h1", "h2"], ["m"]),
        helper.make_node("Gemm", ["m", "W3", "b3"], ["y"], transB=1),
    ]
    init = dict(W1=_w(rng, 3, 2), b1=_w(rng, 3), W2=_w(rng, 3, 2), b2=_w(rng, 3))
    init |= dict(W3=_w(rng, 2, 3), b3=_w(rng, 2))
    return make_model(nodes, input_shape=[1, 2], initializers=init)


def pooled_cnn(rng):
    """25 inputs: more than the search splits as a box for Max networks, so it splits the
    max of a pooling window (and ReLU intervals)."""
    nodes = [
        helper.make_node("Conv", ["x", "K", "c"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("MaxPool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "W", "b"], ["y"], transB=1),
    ]
    init = dict(K=_w(rng, 2, 1, 3, 3), c=_w(rng, 2), W=_w(rng, 2, 8), b=_w(rng, 2))
    return make_model(nodes, input_shape=[1, 1, 5, 5], initializers=init)


ALL = {**BUILDERS, "wide": wide_residual, "pooled": pooled_cnn}


SEED = {"pooled": 3}  # an instance whose proof splits a max (seeds 2, 3 and 5 do)


@functools.cache
def instance(name: str, seed: int | None = None):
    """(model bytes, property, certificate) of a holds just above the sampled maximum."""
    rng = np.random.default_rng(SEED.get(name, 0) if seed is None else seed)
    data = to_bytes(ALL[name](rng))
    model = load_model(data)
    lower = rng.uniform(-1, 0, size=model.n_inputs).astype(np.float32).astype(np.float64)
    upper = (lower + WIDTH[name]).astype(np.float32).astype(np.float64)
    low, high = sampled_range(model, lower, upper, rng)
    gap = 0.04 if name == "pooled" else 0.05
    prop = at_least(high + gap * max(high - low, 1e-3), lower, upper)
    # As the service's workers search when they re-check certificates: no optimised slopes
    # the graph certificate does not carry (search/graph_bab.py).
    options = Options(timeout_s=60, optimise_intermediate=False)
    result = verify(OnnxComponent(data), prop, options)
    assert result.verdict is Verdict.HOLDS, result.reason
    return data, prop, result.certificate


def _check(data, prop, cert):
    return check_model(copy.deepcopy(cert), load_model(data), prop)


def _nodes(tree, pick):
    out, stack = [], [tree]
    while stack:
        node = stack.pop()
        if pick(node):
            out.append(node)
        stack.extend(node.get("children", []))
    return out


@pytest.mark.parametrize("name", list(ALL))
def test_valid_graph_certificates_check(name: str) -> None:
    data, prop, cert = instance(name)
    assert cert["engine"] == "graph" and cert["complete"] is True
    report = _check(data, prop, cert)
    assert report.valid, report.message
    assert report.leaves == sum(cert["leaves"].values())


def test_element_splits_are_recorded_and_checked() -> None:
    data, prop, cert = instance("wide")
    splits = _nodes(cert["cases"][0]["tree"], lambda n: n.get("split") == "interval")
    assert splits and all(s["tensor"] in ("h1", "r") for s in splits)
    assert _check(data, prop, cert).valid


def test_max_splits_of_the_search_are_recorded_and_checked() -> None:
    data, prop, cert = instance("pooled")
    splits = _nodes(cert["cases"][0]["tree"], lambda n: n.get("split") == "max")
    assert splits and all(s["tensor"] == "p" for s in splits)
    assert _check(data, prop, cert).valid
    for side in (0, 1):
        tampered = copy.deepcopy(cert)
        split = _nodes(tampered["cases"][0]["tree"], lambda n: n.get("split") == "max")[0]
        split["children"][side] = {"leaf": "empty-split"}
        report = _check(data, prop, tampered)
        assert not report.valid and "do not cross" in report.message


def test_another_model_or_property_is_rejected() -> None:
    data, prop, cert = instance("residual")
    other_data, other_prop, _ = instance("residual", 1)
    report = _check(other_data, prop, cert)
    assert not report.valid and "another model" in report.message
    report = _check(data, other_prop, cert)
    assert not report.valid and "another property" in report.message


def test_a_stronger_property_under_a_forged_hash_is_rejected() -> None:
    """The leaves are re-proved, not trusted: the same tree for a threshold far below the
    true maximum fails at a leaf."""
    data, prop, cert = instance("s_shaped")
    h = prop.cases[0].unsafe[0].halfspaces[0]
    stronger = at_least(-float(h.rhs) - 50.0, prop.cases[0].lower, prop.cases[0].upper)
    forged = copy.deepcopy(cert)
    forged["property_sha256"] = stronger.sha256()
    report = _check(data, stronger, forged)
    assert not report.valid and "does not prove" in report.message


def test_a_changed_weight_under_a_forged_hash_is_rejected() -> None:
    data, prop, cert = instance("mixed")
    model = load_model(data)
    proto = __import__("onnx").load_from_string(data)
    for t in proto.graph.initializer:
        if t.name == "b3":  # the output bias: y0 - y1 grows by 40
            t.raw_data = np.array([20.0, -20.0], dtype=np.float32).tobytes()
    changed = proto.SerializeToString()
    forged = copy.deepcopy(cert)
    forged["model_sha256"] = load_model(changed).sha256
    assert forged["model_sha256"] != model.sha256
    report = _check(changed, prop, forged)
    assert not report.valid and "does not prove" in report.message


@pytest.mark.parametrize("name", ["wide", "cnn", "pooled"])
def test_a_dropped_leaf_or_a_missing_case_is_rejected(name: str) -> None:
    data, prop, cert = instance(name)
    dropped = copy.deepcopy(cert)
    split = _nodes(dropped["cases"][0]["tree"], lambda n: "children" in n)[0]
    split["children"][1] = {}
    report = _check(data, prop, dropped)
    assert not report.valid and "missing a case" in report.message
    missing = copy.deepcopy(cert)
    split = _nodes(missing["cases"][0]["tree"], lambda n: "children" in n)[-1]
    split["children"].pop()
    report = _check(data, prop, missing)
    assert not report.valid and "two cases" in report.message


def test_a_leaf_claiming_an_empty_region_is_rejected() -> None:
    data, prop, cert = instance("wide")
    tampered = copy.deepcopy(cert)
    leaf = _nodes(tampered["cases"][0]["tree"], lambda n: n.get("leaf") == "linear-bound")[0]
    leaf.clear()
    leaf["leaf"] = "empty-split"
    report = _check(data, prop, tampered)
    assert not report.valid and "do not cross" in report.message


def test_a_case_box_that_leaves_a_gap_is_rejected() -> None:
    data, prop, cert = instance("residual")
    gap = copy.deepcopy(cert)
    gap["cases"][0]["lower"][0] += 0.01
    report = _check(data, prop, gap)
    assert not report.valid and "not the property's" in report.message
    outside = copy.deepcopy(cert)
    split = _nodes(outside["cases"][0]["tree"], lambda n: n.get("split") == "input")[0]
    split["at"] = 5.0
    report = _check(data, prop, outside)
    assert not report.valid and "outside the region" in report.message


# --- max splits (hand-made trees) -----------------------------------------------------------


def _max_case():
    data = to_bytes(max_net(np.random.default_rng(3)))
    lower, upper = np.full(2, -1.0), np.full(2, 1.0)
    return data, at_least(1000.0, lower, upper)  # far above any value: every leaf proves


def _cert(data, prop, tree):
    return {
        "format": "proofwell-certificate",
        "version": 1,
        "engine": "graph",
        "model_sha256": load_model(data).sha256,
        "property_sha256": prop.sha256(),
        "margin": 0.0,
        "complete": True,
        "cases": [
            {
                "index": 0,
                "lower": prop.cases[0].lower.tolist(),
                "upper": prop.cases[0].upper.tolist(),
                "tree": tree,
            }
        ],
    }


LEAF = {"leaf": "linear-bound", "proofs": [{"row": 0}]}


def _max_split(b, children, j=0, tensor="m"):
    return {"split": "max", "tensor": tensor, "index": j, "candidate": b, "children": children}


def test_max_splits_check_and_every_case_is_needed() -> None:
    data, prop = _max_case()
    tree = _max_split(0, [LEAF, _max_split(1, [LEAF, LEAF], j=2)])
    assert _check(data, prop, _cert(data, prop, tree)).valid
    missing = _max_split(0, [LEAF])
    report = _check(data, prop, _cert(data, prop, missing))
    assert not report.valid and "two cases" in report.message
    # Where candidate 0 was ruled out, "0 is the max" is no case of the region.
    again = _max_split(0, [LEAF, _max_split(0, [LEAF, LEAF])])
    report = _check(data, prop, _cert(data, prop, again))
    assert not report.valid and "not a candidate here" in report.message
    for bad in (_max_split(2, [LEAF, LEAF]), _max_split(0, [LEAF, LEAF], tensor="h1")):
        assert not _check(data, prop, _cert(data, prop, bad)).valid


def test_where_one_candidate_is_the_max_the_other_outputs_keep_theirs() -> None:
    """Both parts of a max split hold inputs: neither may be closed as empty (the search
    once dropped every other output's candidates there and did exactly that)."""
    data, prop = _max_case()
    for side in (0, 1):
        children = [LEAF, LEAF]
        children[side] = {"leaf": "empty-split"}
        report = _check(data, prop, _cert(data, prop, _max_split(0, children)))
        assert not report.valid and "do not cross" in report.message


def test_the_search_keeps_other_outputs_candidates_in_a_max_case() -> None:
    from verifiers.search.context import SearchContext
    from verifiers.search.graph_bab import GraphCaseSearch, GraphRegion

    data, prop = _max_case()
    model = load_model(data)
    ctx = SearchContext(model.graph_network, prop.cases[0], model.run_onnxruntime, 1e18)
    search = GraphCaseSearch(ctx)
    region = GraphRegion(prop.cases[0].lower, prop.cases[0].upper)
    only, without = search.split_case(region, "m", 1, 0)
    assert only.cases["m"].tolist() == [[True, True], [True, False], [True, True]]
    assert without.cases["m"].tolist() == [[True, True], [False, True], [True, True]]
    assert [p[0] for p in only.path] == ["max"] and only.path[0][-1] == 0


# --- the checker's arithmetic against independent ground truth ------------------------------


@pytest.mark.parametrize("function", ["Sigmoid", "Tanh"])
def test_sshaped_lines_enclose_the_function_at_50_digits(function: str) -> None:
    rng = np.random.default_rng(11)
    mp.dps = 50
    f = (lambda z: 1 / (1 + mp.exp(-z))) if function == "Sigmoid" else mp.tanh
    node = Node("sshaped", ("x",), "y", function=function)
    for _ in range(40):
        a = float(rng.normal() * rng.choice([0.01, 1, 5, 30]))
        b = a + float(abs(rng.normal()) * rng.choice([1e-6, 0.1, 2, 40]))
        (lo, hi), relax = gl.sshaped(node, (np.array([a]), np.array([b])))
        for z in [a, b, *np.linspace(a, b, 200)]:
            value = f(mp.mpf(float(z)))
            lower = mp.mpf(relax.lower[0][0]) * mp.mpf(z) + mp.mpf(relax.lower_icpt[0])
            upper = mp.mpf(relax.upper[0][0]) * mp.mpf(z) + mp.mpf(relax.upper_icpt[0])
            assert lower <= value <= upper, (a, b, z)
            assert mp.mpf(lo[0]) <= value <= mp.mpf(hi[0])


def test_piecewise_lines_enclose_clip_and_leaky_relu_exactly() -> None:
    rng = np.random.default_rng(12)
    clip = Node("piecewise", ("x",), "y", breakpoints=(-0.5, 0.7),
                slopes=np.array([[0.0], [1.0], [0.0]]), icpts=np.array([[-0.5], [0.0], [0.7]]))  # fmt: skip
    leaky = Node("piecewise", ("x",), "y", breakpoints=(0.0,),
                 slopes=np.array([[-2.0], [1.0]]), icpts=np.zeros((2, 1)))  # fmt: skip
    exact_f = {
        id(clip): lambda z: min(max(z, Fraction(-1, 2)), Fraction(0.7)),
        id(leaky): lambda z: z if z >= 0 else -2 * z,
    }
    for node in (clip, leaky):
        lo = rng.uniform(-2, 1, size=30)
        hi = lo + rng.uniform(0, 2, size=30)
        (out_lo, out_hi), relax = gl.piecewise(node, (lo, hi))
        for j in range(30):
            for t in np.linspace(0, 1, 50):
                z = Fraction(float(lo[j])) + Fraction(t) * (Fraction(hi[j]) - Fraction(lo[j]))
                v = exact_f[id(node)](z)
                assert Fraction(relax.lower[0][j]) * z + Fraction(relax.lower_icpt[j]) <= v
                assert v <= Fraction(relax.upper[0][j]) * z + Fraction(relax.upper_icpt[j])
                assert Fraction(out_lo[j]) <= v <= Fraction(out_hi[j])


def _exact_residual(init, x):
    """The residual network of test_graph_verify.residual at x, in exact rationals."""
    F = lambda a: [[Fraction(float(v)) for v in row] for row in np.atleast_2d(a)]  # noqa: E731

    def gemm(w, b, v):
        return [sum((wi * vi for wi, vi in zip(row, v, strict=True)), bi)
                for row, bi in zip(F(w), F(b)[0], strict=True)]  # fmt: skip

    xs = [Fraction(float(v)) for v in x]
    h1 = gemm(init["W1"], init["b1"], xs)
    a1 = [max(v, 0) for v in h1]
    r = [p + q for p, q in zip(gemm(init["W2"], init["b2"], a1), xs, strict=True)]
    a2 = [max(v, 0) for v in r]
    return gemm(init["W3"], init["b3"], a2)


def test_checker_bounds_are_below_exact_values() -> None:
    rng = np.random.default_rng(4)
    proto = BUILDERS["residual"](rng)
    init = {t.name: __import__("onnx").numpy_helper.to_array(t) for t in proto.graph.initializer}
    net = Net.of(load_model(to_bytes(proto)).graph)
    mats = gb.Matrices()
    lower, upper = np.array([-0.5, 0.1, -0.3]), np.array([0.2, 0.6, 0.4])
    region = gb.region_bounds(net, mats, lower, upper, None, (), {})
    rows = (np.array([[1, -1], [-1, 1], [1, 0]], dtype=np.int64), np.zeros(3, dtype=np.int64))
    ints, exps = gb.lower_bounds(net, mats, region, net.output, rows)
    bounds = [Fraction(int(i)) * Fraction(2) ** int(e) for i, e in zip(ints, exps, strict=True)]
    for x in lower + (upper - lower) * rng.random((300, 3)):
        y = _exact_residual(init, x)
        values = [y[0] - y[1], y[1] - y[0], y[0]]
        assert all(b <= v for b, v in zip(bounds, values, strict=True))
        for name, (lo, hi) in region.boxes.items():
            assert np.all(lo <= hi), name


# --- service and command line -----------------------------------------------------------


def test_the_worker_rechecks_graph_certificates_and_distrusts_a_rejected_one() -> None:
    from service.worker.engine import _check_certificate

    data, prop, cert = instance("cnn")
    model = load_model(data)
    good = {"verdict": "holds", "stats": {"seconds": 1.0}, "certificate": copy.deepcopy(cert)}
    _check_certificate(good, model, prop, 60.0)
    outcome = good["stats"]["certificate_check"]
    assert good["verdict"] == "holds" and outcome["checked"] and outcome["valid"], outcome
    bad = {"verdict": "holds", "stats": {"seconds": 1.0}, "certificate": copy.deepcopy(cert)}
    _nodes(bad["certificate"]["cases"][0]["tree"], lambda n: "children" in n)[0]["children"].pop()
    _check_certificate(bad, model, prop, 60.0)
    assert bad["verdict"] == "unknown" and "independent check" in bad["reason"]


def _mutations(cert):
    """(description, mutate(cert)) pairs, each of which must make the certificate invalid."""

    def at(path):
        def go(c):
            node = c["cases"][0]["tree"]
            for step in path:
                node = node[step]
            return node

        return go

    def first_split(c):
        return _nodes(c["cases"][0]["tree"], lambda n: "children" in n)[0]

    def first_leaf(c):
        return _nodes(c["cases"][0]["tree"], lambda n: n.get("leaf") == "linear-bound")[0]

    return [
        ("tree not an object", lambda c: c["cases"][0].__setitem__("tree", "x")),
        ("children a string", lambda c: first_split(c).__setitem__("children", "ab")),
        ("split kind unknown", lambda c: first_split(c).__setitem__("split", "relu")),
        ("split point NaN", lambda c: first_split(c).__setitem__("at", float("nan"))),
        ("split point a string", lambda c: first_split(c).__setitem__("at", "0.1")),
        ("split dim a bool", lambda c: first_split(c).__setitem__("dim", True)),
        ("leaf kind unknown", lambda c: first_leaf(c).__setitem__("leaf", "smt-unsat")),
        ("proofs missing", lambda c: first_leaf(c).pop("proofs")),
        ("row out of range", lambda c: first_leaf(c).__setitem__("proofs", [{"row": 99}])),
        ("row a float", lambda c: first_leaf(c).__setitem__("proofs", [{"row": 0.0}])),
        ("version 3", lambda c: c.__setitem__("version", 3)),
        ("engine chain", lambda c: c.pop("engine")),
        ("margin negative", lambda c: c.__setitem__("margin", -1.0)),
        ("margin a bool", lambda c: c.__setitem__("margin", True)),
        ("case missing", lambda c: c.__setitem__("cases", [])),
        ("both split and leaf", lambda c: first_leaf(c).__setitem__("split", "input")),
        ("node a list", lambda c: first_split(c)["children"].__setitem__(0, [])),
    ], at


@pytest.mark.parametrize("index", range(17))
def test_malformed_graph_certificates_fail_closed(index: int) -> None:
    data, prop, cert = instance("residual")
    mutations, _ = _mutations(cert)
    what, mutate = mutations[index]
    tampered = copy.deepcopy(cert)
    mutate(tampered)
    report = _check(data, prop, tampered)
    assert not report.valid, what


def test_interval_split_on_no_tensor_or_element_is_rejected() -> None:
    data, prop, cert = instance("wide")
    for change in ({"tensor": "nope"}, {"index": 10_000}, {"index": -1}, {"at": float("inf")}):
        tampered = copy.deepcopy(cert)
        split = _nodes(tampered["cases"][0]["tree"], lambda n: n.get("split") == "interval")[0]
        split.update(change)
        assert not _check(data, prop, tampered).valid, change


def test_a_final_softmax_is_stripped_by_the_checker_only_for_pairwise_properties() -> None:
    from tests.unit.test_graph_verify import _softmax_model
    from verifiers.spec.property import Case, Conjunction, HalfSpace, Property

    data = to_bytes(_softmax_model(np.random.default_rng(0)))
    lower, upper = np.zeros(3), np.full(3, 0.01)
    win = int(np.argmax(load_model(data).evaluate(0.5 * (lower + upper)[None])[0]))
    coeffs = [Fraction(0), Fraction(0)]
    coeffs[win], coeffs[1 - win] = Fraction(1), Fraction(-1)
    box = (tuple(Fraction(v) for v in lower), tuple(Fraction(v) for v in upper))
    case = Case(*box, (Conjunction((HalfSpace(tuple(coeffs), Fraction(0)),)),))
    prop = Property(3, 2, (case,))
    result = verify(OnnxComponent(data), prop, Options(timeout_s=10))
    assert result.verdict is Verdict.HOLDS
    assert _check(data, prop, result.certificate).valid
    # The same tree for a property on the probabilities themselves is not accepted.
    shifted = Case(*box, (Conjunction((HalfSpace(tuple(coeffs), Fraction(1, 2)),)),))
    other = Property(3, 2, (shifted,))
    forged = copy.deepcopy(result.certificate)
    forged["property_sha256"] = other.sha256()
    report = _check(data, other, forged)
    assert not report.valid and "Softmax" in report.message


def test_the_checker_imports_nothing_of_the_search() -> None:
    """Independence: the checker's modules import from proofwell only the model loader and
    IR (verifiers.model), the property parser (verifiers.spec), errors and each other."""
    import ast
    from pathlib import Path

    import verifiers.certify.checker as package

    allowed = ("verifiers.model", "verifiers.spec", "verifiers.errors", "verifiers.certify.checker")
    for path in Path(package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("verifiers"):
                assert node.module.startswith(allowed), (path.name, node.module)
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("verifiers"):
                        assert alias.name.startswith(allowed), (path.name, alias.name)


@pytest.mark.parametrize("name", list(ALL))
def test_no_tree_proves_a_property_that_a_point_violates(name: str) -> None:
    """Soundness of the checker: the valid tree of a true property, presented for a false
    one (a sampled input's y0 - y1 beats its threshold by a wide margin), is rejected."""
    data, prop, cert = instance(name)
    model = load_model(data)
    case = prop.cases[0]
    rng = np.random.default_rng(9)
    x = case.lower + (case.upper - case.lower) * rng.random((200, len(case.lower)))
    y = model.evaluate(x)
    value = float(np.max(y[:, 0] - y[:, 1]))
    false = at_least(value - 1e-3 * max(abs(value), 1.0), case.lower, case.upper)
    forged = copy.deepcopy(cert)
    forged["property_sha256"] = false.sha256()
    report = _check(data, false, forged)
    assert not report.valid, report.message
