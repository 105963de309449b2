"""Certificates of leaves that only optimised bounds (alpha/beta-CROWN) prove: the leaf
carries its row's slopes and split multipliers (format v2), the checker re-derives the
bound from the model's weights with them, and rejects them out of range or changed so
that the bound no longer proves. Ground truth for "alpha-CROWN is needed": the same
certificate without the numbers (the checker then uses CROWN's own slopes) is rejected."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest

from tests.onnx_builders import dense_relu_model, to_bytes
from verifiers.certify.checker import check
from verifiers.components import OnnxComponent
from verifiers.model import load_model
from verifiers.options import Options
from verifiers.spec import parse_vnnlib
from verifiers.verify import verify

SIZES = [60, 30, 30, 3]  # 60 inputs: the search splits ReLUs and optimises slopes


@functools.cache
def _instance():
    """A robustness property around a point that CROWN cannot prove and alpha-CROWN can:
    (model bytes, property text, result)."""
    rng = np.random.default_rng(13)
    weights = [
        (rng.normal(size=(b, a)) / np.sqrt(a)).astype(np.float32)
        for a, b in zip(SIZES[:-1], SIZES[1:], strict=True)
    ]
    biases = [(rng.normal(size=b) * 0.1).astype(np.float32) for b in SIZES[1:]]
    source = to_bytes(dense_relu_model(weights, biases))
    network = load_model(source).network
    x0 = rng.uniform(0.0, 1.0, SIZES[0])
    label = int(np.argmax(network.evaluate(x0[None, :])[0]))
    eps = 0.04
    lines = [f"(declare-const X_{i} Real)" for i in range(SIZES[0])]
    lines += [f"(declare-const Y_{j} Real)" for j in range(SIZES[-1])]
    for i, x in enumerate(x0):
        lines += [f"(assert (>= X_{i} {x - eps:.6f}))", f"(assert (<= X_{i} {x + eps:.6f}))"]
    others = " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(SIZES[-1]) if j != label)
    lines.append(f"(assert (or {others}))")
    text = "\n".join(lines) + "\n"
    options = Options(timeout_s=60, optimise_intermediate=False)
    return source, text, verify(OnnxComponent(source), parse_vnnlib(text), options)


def _check(source, text, certificate):
    model = load_model(source)
    return check(certificate, model.network, parse_vnnlib(text), model.sha256)


def _proofs(certificate):
    """Every proof object of the certificate's leaves."""
    stack = [c["tree"] for c in certificate["cases"]]
    while stack:
        node = stack.pop()
        stack += node.get("children", [])
        yield from node.get("proofs", [])


def test_a_leaf_only_optimised_slopes_prove_checks():
    source, text, result = _instance()
    assert result.verdict.value == "holds"
    certificate = result.certificate
    assert certificate["version"] == 3
    assert any("slopes" in p for p in _proofs(certificate))
    assert _check(source, text, copy.deepcopy(certificate)).valid
    stripped = copy.deepcopy(certificate)
    for proof in _proofs(stripped):
        proof.pop("slopes", None)
        proof.pop("betas", None)
    assert not _check(source, text, stripped).valid  # CROWN's own slopes do not prove it


def _tamper(change):
    source, text, result = _instance()
    certificate = copy.deepcopy(result.certificate)
    proof = next(p for p in _proofs(certificate) if "slopes" in p)
    change(proof)
    return _check(source, text, certificate)


@pytest.mark.parametrize("value", [1.5, -0.25, float("nan"), True, "0.5"])
def test_a_slope_out_of_range_or_malformed_is_rejected(value):
    def change(proof):
        proof["slopes"][0][0] = value

    report = _tamper(change)
    assert not report.valid


def test_slopes_changed_so_the_bound_no_longer_proves_are_rejected():
    def change(proof):  # every slope to the other end of [0, 1]: still valid, but loose
        proof["slopes"] = [[1 - s for s in layer] for layer in proof["slopes"]]

    report = _tamper(change)
    assert not report.valid and "does not prove" in report.message


def test_malformed_slopes_and_multipliers_are_rejected():
    changes = [
        lambda p: p.update(slopes=p["slopes"][:-1]),  # a layer missing
        lambda p: p["slopes"][0].pop(),  # a neuron missing
        lambda p: p.update(betas=[[0, 0, 1.0]]),  # a ReLU the region does not split
        lambda p: p.update(betas=[[0, 0, -1.0]]),
        lambda p: p.update(betas="x"),
    ]
    for change in changes:
        assert not _tamper(change).valid


def test_workers_optimise_slopes_but_not_intermediate_bounds() -> None:
    """Workers that re-check certificates optimise the objective rows (their certificates
    carry the slopes) but not the intermediate bounds (theirs would not)."""
    from service.worker.engine import _options

    base = {"options": {"timeout_s": 5}}
    checking = _options({**base, "check_certificate": True})
    assert checking.optimise_bounds and not checking.optimise_intermediate
    assert _options({**base, "check_certificate": False}).optimise_intermediate


def test_a_worker_searches_again_without_optimisation_when_the_check_fails(monkeypatch):
    """Where the checker cannot follow the optimised search (docs/certificate.md), the
    worker does not settle for unknown: it searches again with plain CROWN, whose
    certificate the checker follows. The first check is made to fail here."""
    import time

    import verifiers.certify.checker as checker
    from service.worker.engine import _run_onnx

    source, text, _ = _instance()
    real, calls = checker.check, []

    def failing_once(certificate, *args, **kwargs):
        calls.append(any("slopes" in p for p in _proofs(certificate)))
        report = real(certificate, *args, **kwargs)
        if len(calls) == 1:
            report.valid, report.message = False, "planted failure"
        return report

    monkeypatch.setattr(checker, "check", failing_once)
    payload = {"data": source, "prop": {"vnnlib": text}, "options": {"timeout_s": 60}}
    data = _run_onnx(payload, lambda _: None, time.monotonic())
    assert calls == [True, False]  # optimised first, then plain CROWN
    assert data["verdict"] == "holds"
    assert data["stats"]["certificate_check"]["valid"] is True
