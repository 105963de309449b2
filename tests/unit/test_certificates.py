"""Proof certificates: the search writes them, the independent checker accepts the valid
ones and rejects tampered ones (a changed number, a dropped leaf, a gap, a split missing a
case, another model or property, an SMT leaf whose query is satisfiable)."""

from __future__ import annotations

import copy
import functools
import warnings
from fractions import Fraction

import numpy as np
import pytest

from tests.onnx_builders import dense_relu_model, to_bytes
from tests.oracle import exact_maximum
from verifiers.certify.checker import check, exact
from verifiers.certify.checker import lagrangian as lg
from verifiers.certify.checker import regions as rb
from verifiers.components import OnnxComponent
from verifiers.model import load_model
from verifiers.options import Options
from verifiers.spec import parse_vnnlib
from verifiers.verify import verify

# --- exact arithmetic ----------------------------------------------------------------------


def test_exact_products_match_fractions():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(40, 30)).astype(np.float32).astype(np.float64)
    w[3, 4] = 1e-30  # a wide exponent range: many limbs
    lam, exps = exact.fixed(rng.normal(size=(4, 40)))
    product, p_exps = exact.matmul(lam, exps, exact.Matrix.of_floats(w))
    for i in range(4):
        for j in (0, 4, 29):
            expected = sum(
                Fraction(int(lam[i, k])) * Fraction(2) ** int(exps[i]) * Fraction(float(w[k, j]))
                for k in range(40)
            )
            assert exact.to_fraction(int(product[i, j]), int(p_exps[i])) == expected


@pytest.mark.parametrize("seed", range(6))
def test_a_weight_matrix_limbs_add_up_to_its_floats_exactly(seed):
    """Matrix.of_floats cuts the floats into limbs in int64 (no Python ints): the limbs,
    weighed by 2**(i bits + exp), add up to each float exactly, over any span of binades,
    signs, zeros and subnormals."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(9, 5)) * np.exp2(rng.integers(-1070, 1000, size=(9, 5)) // (seed + 1))
    w[0, :3] = [0.0, -0.0, 5e-324]
    w[rng.random(w.shape) < 0.2] = 0.0
    matrix = exact.Matrix.of_floats(w)
    for i in range(9):
        for j in range(5):
            total = sum(
                Fraction(int(limb[i, j])) * Fraction(2) ** (d * matrix.bits)
                for d, limb in enumerate(matrix.limbs)
            )
            assert total * Fraction(2) ** matrix.exp == Fraction(float(w[i, j]))


def test_rounding_is_on_the_safe_side():
    rng = np.random.default_rng(1)
    for _ in range(50):
        ints = [int(v) << int(rng.integers(0, 90)) for v in rng.integers(-(2**62), 2**62, 6)]
        ints += [0, 1, -1, 3]
        e = int(rng.integers(-1100, 60))
        for up in (False, True):
            floats = exact.round_rows(np.array(ints, dtype=object), np.full(len(ints), e), up)
            for n, f in zip(ints, floats, strict=True):
                value = exact.to_fraction(n, e)
                assert Fraction(f) >= value if up else Fraction(f) <= value


# --- the checker's bounds against sampled values --------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 0.1])
@pytest.mark.parametrize("seed", range(4))
def test_checker_bounds_enclose_sampled_values(seed, alpha):
    rng = np.random.default_rng(seed)
    sizes = [3, 7, 6, 2]
    weights, biases = _random(rng, sizes)
    model = load_model(
        to_bytes(
            dense_relu_model(
                weights, biases, activation="LeakyRelu" if alpha else "Relu", alpha=alpha
            )
        )
    )
    network = model.network
    net = lg.ExactNetwork.of(network)
    lower = rng.uniform(-1.0, 0.0, 3)
    upper = lower + rng.uniform(0.05, 1.0, 3)
    phases = [(0, 1, True)] if seed % 2 else []
    region, empty = rb.region_bounds(net, lower, upper, None, phases)
    points = rng.uniform(lower, upper, size=(3000, 3))
    pre = network.pre_activations(points)
    inside = np.ones(len(points), dtype=bool)
    for k, j, active in phases:
        inside &= pre[k][:, j] >= 0 if active else pre[k][:, j] <= 0
    assert empty == (not inside.any()) or inside.any()
    for k, (lo, hi) in enumerate(region.bounds):
        assert np.all(pre[k][inside] >= lo - 1e-12) and np.all(pre[k][inside] <= hi + 1e-12)
    # the output rows' linear lower bounds hold at every sampled point of the region
    rows = np.array([[1, -1], [-1, 0]], dtype=np.int64)
    g, g_exps, h, h_exps = lg.lower_linear(net, region, 2, (rows, np.zeros(2, dtype=np.int64)))
    least, exps = lg.box_minimum(g, g_exps, h, h_exps, lower, upper)
    outputs = network.evaluate(points[inside])
    for i in range(2):
        bound = float(exact.to_fraction(int(least[i]), int(exps[i])))
        assert np.all(outputs @ rows[i] >= bound - 1e-9)


@pytest.mark.parametrize("value", [1e6, -3e40, 1e200])
def test_a_certificates_huge_multipliers_give_a_bound_that_still_encloses(value):
    """Multipliers come from the certificate: one far above the row's coefficients must
    neither wrap around in int64 arithmetic nor make a bound false (any multiplier gives
    a valid, if loose, bound)."""
    rng = np.random.default_rng(7)
    weights, biases = _random(rng, [3, 7, 6, 2])
    network = load_model(to_bytes(dense_relu_model(weights, biases))).network
    net = lg.ExactNetwork.of(network)
    lower, upper = np.full(3, -0.5), np.full(3, 0.5)
    region, _ = rb.region_bounds(net, lower, upper, None, [])
    rows = (np.array([[1, -1]], dtype=np.int64), np.zeros(1, dtype=np.int64))
    mask, values = np.zeros((1, 6), dtype=bool), np.zeros((1, 6))
    mask[0, [0, 3]], values[0, [0, 3]] = True, [value, -value]
    overrides = {1: (mask, values)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an invalid cast to int64 would warn
        g, g_exps, h, h_exps = lg.lower_linear(net, region, 2, rows, overrides)
        least, exps = lg.box_minimum(g, g_exps, h, h_exps, lower, upper)
    bound = exact.to_fraction(int(least[0]), int(exps[0]))
    outputs = network.evaluate(rng.uniform(lower, upper, size=(3000, 3)))
    assert all(Fraction(float(y)) >= bound for y in outputs @ np.array([1.0, -1.0]))


def _random(rng, sizes):
    weights = [
        rng.normal(size=(b, a)).astype(np.float32)
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    biases = [rng.normal(scale=0.5, size=b).astype(np.float32) for b in sizes[1:]]
    return weights, biases


# --- certificates from planted networks ----------------------------------------------------


def _vnnlib(lower, upper, unsafe: str, n_out: int) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(len(lower))]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    for i, (lo, hi) in enumerate(zip(lower, upper, strict=True)):
        lines += [f"(assert (>= X_{i} {float(lo)!r}))", f"(assert (<= X_{i} {float(hi)!r}))"]
    lines.append(unsafe)
    return "\n".join(lines) + "\n"


@functools.cache
def planted(seed: int):
    """A small network and a property that holds just barely (from samples, then decided
    by the search): (model bytes, property text, result)."""
    rng = np.random.default_rng(100 + seed)
    n_in = [2, 3, 4, 20, 5, 3][seed % 6]
    sizes = [n_in, 20, 20, 3] if n_in < 20 else [n_in, 24, 20, 3]
    weights, biases = _random(rng, sizes)
    source = to_bytes(dense_relu_model(weights, biases))
    network = load_model(source).network
    lower = np.round(rng.uniform(-1.0, 0.0, n_in), 3)
    width = 0.05 if n_in >= 20 else 1.0
    upper = np.round(lower + rng.uniform(0.2, 1.0, n_in) * width, 3)
    points = rng.uniform(lower, upper, size=(20000, n_in))
    if n_in <= 6:  # the corners, where maxima like to be
        corners = np.array(np.meshgrid(*zip(lower, upper, strict=True))).reshape(n_in, -1).T
        points = np.concatenate([points, corners])
    samples = network.evaluate(points)
    if seed % 2:
        top = float(samples[:, 0].max())
        spread = float(np.ptp(samples[:, 0]))
        unsafe = f"(assert (>= Y_0 {top + 0.01 * spread + 1e-3!r}))"
    else:  # a conjunction of three rows: Y_0 is the largest, with a gap
        gap = float((samples[:, 0] - samples[:, 1]).max())
        spread = float(np.ptp(samples[:, 0] - samples[:, 1]))
        unsafe = f"(assert (and (>= Y_0 (+ Y_1 {gap + 0.01 * spread + 1e-3!r})) (>= Y_0 Y_2)))"
    text = _vnnlib(lower, upper, unsafe, 3)
    prop = parse_vnnlib(text)
    result = verify(OnnxComponent(source), prop, Options(timeout_s=60, workers=1))
    return source, text, result


def _check(source, text, certificate):
    model = load_model(source)
    return check(certificate, model.network, parse_vnnlib(text), model.sha256)


def _holding(count: int):
    found = []
    for seed in range(12):
        source, text, result = planted(seed)
        if result.verdict.value == "holds":
            found.append((source, text, result.certificate))
        if len(found) == count:
            break
    return found


def test_certificates_of_planted_networks_check():
    kinds: set[str] = set()
    instances = _holding(6)
    assert len(instances) >= 4
    for source, text, certificate in instances:
        report = _check(source, text, certificate)
        assert report.valid, report.message
        kinds |= set(report.evidence)
    assert "linear-bound" in kinds and len(kinds) >= 2, kinds


def _first(tree, pred):
    stack = [tree]
    while stack:
        node = stack.pop()
        if pred(node):
            return node
        stack.extend(node.get("children", []))
    return None


def _split_instance():
    for source, text, certificate in _holding(6):
        if "children" in certificate["cases"][0]["tree"]:
            return source, text, certificate
    pytest.fail("no planted instance with a split")


def test_dropped_leaf_and_missing_case_are_rejected():
    source, text, certificate = _split_instance()
    dropped = copy.deepcopy(certificate)
    node = _first(dropped["cases"][0]["tree"], lambda n: "children" in n)
    node["children"].pop()
    report = _check(source, text, dropped)
    assert not report.valid and "two cases" in report.message
    emptied = copy.deepcopy(certificate)
    node = _first(emptied["cases"][0]["tree"], lambda n: "children" in n)
    node["children"][1] = {}
    assert not _check(source, text, emptied).valid


def test_a_gap_is_rejected():
    source, text, certificate = _split_instance()
    moved = copy.deepcopy(certificate)
    moved["cases"][0]["lower"][0] += 0.01  # the tree covers less than the property's box
    report = _check(source, text, moved)
    assert not report.valid and "box" in report.message
    outside = copy.deepcopy(certificate)
    node = _first(outside["cases"][0]["tree"], lambda n: n.get("split") == "input")
    if node is not None:
        node["at"] = 1e9
        assert not _check(source, text, outside).valid


def test_changed_coefficients_are_rejected():
    rejected = 0
    for source, text, certificate in _holding(6):
        tampered = copy.deepcopy(certificate)
        leaf = _first(tampered["cases"][0]["tree"], lambda n: "mu" in str(n.get("proofs")))
        if leaf is None:
            continue
        proof = next(p for p in leaf["proofs"] if "mu" in str(p))
        _zero_weights(proof)
        assert not _check(source, text, tampered).valid
        rejected += 1
    # a negative weight is no valid multiplier
    source, text, certificate = _holding(1)[0]
    tampered = copy.deepcopy(certificate)
    tampered["margin"] = -1.0
    assert not _check(source, text, tampered).valid


def _zero_weights(proof: dict) -> None:
    if "mu" in proof:
        proof["mu"] = [0.0] * len(proof["mu"])
        proof.pop("phase_mu", None)
    for child in proof.get("children", []):
        _zero_weights(child)


def test_another_model_or_property_is_rejected():
    (source, text, certificate), (other_source, other_text, _) = _holding(2)
    report = _check(other_source, text, certificate)
    assert not report.valid and "model" in report.message
    report = _check(source, other_text, certificate)
    assert not report.valid and "property" in report.message


def _smt_certificate(source, text):
    model = load_model(source)
    prop = parse_vnnlib(text)
    case = prop.cases[0]
    return {
        "format": "proofwell-certificate",
        "version": 1,
        "model_sha256": model.sha256,
        "property_sha256": prop.sha256(),
        "margin": 0.0,
        "cases": [
            {
                "index": 0,
                "lower": case.lower.tolist(),
                "upper": case.upper.tolist(),
                "tree": {"leaf": "smt-unsat"},
            }
        ],
    }


def test_smt_leaf_rechecked_by_cvc5():
    rng = np.random.default_rng(5)
    weights, biases = _random(rng, [2, 6, 2])
    bad = to_bytes(dense_relu_model(weights, biases))
    holds = _vnnlib([0.0, 0.0], [1.0, 1.0], "(assert (>= Y_0 1000.0))", 2)
    assert _check(bad, holds, _smt_certificate(bad, holds)).valid
    # the same leaf for a property that is violated: cvc5 finds the query satisfiable
    violated = _vnnlib([0.0, 0.0], [1.0, 1.0], "(assert (>= Y_0 -1000.0))", 2)
    report = _check(bad, violated, _smt_certificate(bad, violated))
    assert not report.valid and "cvc5 answers sat" in report.message


def test_a_linear_leaf_for_a_violated_property_is_rejected():
    rng = np.random.default_rng(6)
    weights, biases = _random(rng, [2, 6, 2])
    bad = to_bytes(dense_relu_model(weights, biases))
    violated = _vnnlib([0.0, 0.0], [1.0, 1.0], "(assert (>= Y_0 -1000.0))", 2)
    certificate = _smt_certificate(bad, violated)
    certificate["cases"][0]["tree"] = {"leaf": "linear-bound", "proofs": [{"row": 0}]}
    assert not _check(bad, violated, certificate).valid
    certificate["cases"][0]["tree"] = {"leaf": "empty-split"}
    assert not _check(bad, violated, certificate).valid


def test_malformed_certificates_fail_closed():
    source, text, certificate = _holding(1)[0]
    for change in (
        lambda c: c.update(cases="abc"),
        lambda c: c["cases"][0].update(tree={"split": "input", "dim": 0, "at": "x"}),
        lambda c: c["cases"][0].update(tree={"leaf": "linear-bound", "proofs": [{"row": 99}]}),
        lambda c: c["cases"][0].update(tree={"leaf": "linear-bound", "proofs": "row"}),
        lambda c: c["cases"][0].update(tree={"split": "relu", "layer": 7, "neuron": 0}),
        lambda c: c["cases"][0].update(tree={"leaf": "oracle-says-so"}),
        lambda c: c.update(version=4),  # 1 to 3 exist
    ):
        tampered = copy.deepcopy(certificate)
        change(tampered)
        assert not _check(source, text, tampered).valid


@pytest.mark.parametrize("eps", [0.002, 0.02])
def test_digits_like_robustness_certificate_checks(eps):
    """An 8x8 'digit' classifier, L-inf robustness around a point: ten outputs, an unsafe
    set of nine conjunctions (some other class at least as large)."""
    rng = np.random.default_rng(64)
    weights, biases = _random(rng, [64, 24, 16, 10])
    weights = [w * np.float32(0.3) for w in weights]
    source = to_bytes(dense_relu_model(weights, biases))
    network = load_model(source).network
    x0 = rng.uniform(0.2, 0.8, 64)
    label = int(np.argmax(network.evaluate(x0[None, :])[0]))
    others = " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(10) if j != label)
    text = _vnnlib(x0 - eps, x0 + eps, f"(assert (or {others}))", 10)
    result = verify(OnnxComponent(source), parse_vnnlib(text), Options(timeout_s=60, workers=1))
    assert result.verdict.value == "holds", result.reason
    report = _check(source, text, result.certificate)
    assert report.valid, report.message


def test_smt_leaves_from_the_search_check(monkeypatch):
    """With the phase LPs off, the search sends small regions to z3: their leaves carry
    z3's query for audit, and the checker re-decides them with its own query and cvc5."""
    from verifiers.search import bab

    monkeypatch.setattr(bab, "PHASE_LP_UNSTABLE", -1)
    monkeypatch.setattr(bab, "SMT_UNSTABLE_LIMIT", 100)
    monkeypatch.setattr(bab.CaseSearch, "refuted_by_combination", lambda *a, **k: None)
    rng = np.random.default_rng(7)
    weights, biases = _random(rng, [2, 5, 5, 1])
    source = to_bytes(dense_relu_model(weights, biases))
    ws = [w.astype(np.float64) for w in weights]
    bs = [b.astype(np.float64) for b in biases]
    top, _ = exact_maximum(ws, bs, np.array([1.0]), np.zeros(2), np.ones(2))
    text = _vnnlib([0.0, 0.0], [1.0, 1.0], f"(assert (>= Y_0 {top + 1e-6!r}))", 1)
    result = verify(OnnxComponent(source), parse_vnnlib(text), Options(timeout_s=60, workers=1))
    assert result.verdict.value == "holds", result.reason
    assert "smt-unsat" in result.certificate["leaves"], result.certificate["leaves"]
    leaf = _first(result.certificate["cases"][0]["tree"], lambda n: n.get("leaf") == "smt-unsat")
    assert "(check-sat)" in leaf["proofs"][0]["smtlib"]
    report = _check(source, text, result.certificate)
    assert report.valid, report.message


def test_worker_check_stores_the_outcome_and_distrusts_a_rejected_certificate():
    from service.worker.engine import _check_certificate

    source, text, certificate = _split_instance()
    model, prop = load_model(source), parse_vnnlib(text)
    good = {
        "verdict": "holds",
        "stats": {"seconds": 1.0},
        "certificate": copy.deepcopy(certificate),
    }
    _check_certificate(good, model, prop, 60.0)
    outcome = good["stats"]["certificate_check"]
    assert good["verdict"] == "holds" and outcome["checked"] and outcome["valid"]
    assert outcome["checker"] == good["certificate"]["check"]["checker"]
    bad = {"verdict": "holds", "stats": {"seconds": 1.0}, "certificate": copy.deepcopy(certificate)}
    _first(bad["certificate"]["cases"][0]["tree"], lambda n: "children" in n)["children"].pop()
    _check_certificate(bad, model, prop, 60.0)
    assert bad["verdict"] == "unknown" and "independent check" in bad["reason"]
    assert bad["stats"]["certificate_check"]["valid"] is False
