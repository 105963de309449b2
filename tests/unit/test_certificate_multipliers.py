"""The compact LP multipliers of certificate version 3: an LP tree lists its ReLUs once,
each piece gives a flat list of (short) multipliers. They round-trip, short multipliers
still check, tampered ones are rejected, and version 2's triples still check."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from tests.unit.test_certificates import _check, _holding
from verifiers.certify.checker import multipliers
from verifiers.search import phase_evidence


def _lp_instance():
    """A planted instance whose certificate has an LP piece with multipliers."""
    for source, text, certificate in _holding(6):
        if _pieces(certificate):
            return source, text, certificate
    pytest.fail("no planted instance with an lp-phases piece")


def _lp_trees(certificate) -> list[dict]:
    out, stack = [], [c["tree"] for c in certificate["cases"]]
    while stack:
        node = stack.pop()
        stack.extend(node.get("children", []))
        if node.get("leaf") == "lp-phases":
            out += node["proofs"]
    return out


def _pieces(certificate) -> list[tuple[dict, dict]]:
    """(LP tree root, piece) for every piece with multipliers."""
    out = []
    for root in _lp_trees(certificate):
        stack = [root]
        while stack:
            node = stack.pop()
            stack.extend(node.get("children", []))
            if "lambda" in node and node["lambda"]:
                out.append((root, node))
    return out


def test_short_numbers_round_trip_through_json():
    values = np.array([0.0, -0.0, 1.0, -0.0123456789, 6.539327215007205e-05, 3e-17, -2.5e3])
    encoded = phase_evidence.short(values, 3)
    assert json.loads(json.dumps(encoded)) == encoded
    assert encoded[:3] == [0, 0, 1.0] and all(type(v) is int for v in encoded[:2])
    assert encoded[3:] == [-0.0123, 6.54e-05, 3e-17, -2500.0]
    assert np.allclose(encoded, values, rtol=5e-3, atol=0.0)
    assert phase_evidence.full(values)[:2] == [0, 0]
    assert phase_evidence.full(values)[2:] == values[2:].tolist()


def test_compact_multipliers_read_as_the_triples_they_stand_for():
    sizes = [5, 4, 3]
    relus = multipliers.Relus.read([[0, 3], [], [1, 2]], sizes)
    flat = [0.5, 0, -2.0, 1e-3]
    compact = relus.overrides(flat, 2.0)
    triples = multipliers.triples([[0, 3, 0], [2, 1, -2.0], [2, 2, 1e-3], [0, 0, 0.5]], sizes, 2.0)
    for k in (0, 2):
        order = np.argsort(triples[k][0])
        assert compact[k][0].tolist() == triples[k][0][order].tolist()
        assert compact[k][1].tolist() == triples[k][1][order].tolist()
    assert 1 not in compact


@pytest.mark.parametrize(
    "relus, flat",
    [
        ([[0, 3], [], [1, 2]], [0.5, 0, -2.0]),  # one value short
        ([[0, 3], [], [1, 2]], [0.5, 0, -2.0, 1.0, 2.0]),  # one too many
        ([[0, 3], [], [1, 2]], [0.5, 0, -2.0, float("nan")]),
        ([[0, 3], [], [1, 2]], [0.5, 0, -2.0, True]),
        ([[0, 3], [], [1, 2]], [0.5, 0, -2.0, "1"]),
        ([[3, 0], [], [1, 2]], [0.5, 0, -2.0, 1.0]),  # not ascending
        ([[0, 0], [], [1, 2]], [0.5, 0, -2.0, 1.0]),  # a neuron twice
        ([[0, 5], [], [1, 2]], [0.5, 0, -2.0, 1.0]),  # no neuron 5 in layer 0
        ([[0, -1], [], [1, 2]], [0.5, 0, -2.0, 1.0]),
        ([[0, 3], [1, 2]], [0.5, 0, -2.0, 1.0]),  # a layer missing
        ([[0, 3], [], [1, 2], []], [0.5, 0, -2.0, 1.0]),  # a layer too many
        ([[0, 3.0], [], [1, 2]], [0.5, 0, -2.0, 1.0]),
        (None, [0.5, 0, -2.0, 1.0]),
    ],
)
def test_malformed_compact_multipliers_are_refused(relus, flat):
    with pytest.raises(multipliers.BadMultipliers):
        multipliers.Relus.read(relus, [5, 4, 3]).overrides(flat, 1.0)


def test_short_multipliers_are_written_and_check():
    source, text, certificate = _lp_instance()
    assert certificate["version"] == 3
    values = [v for _, piece in _pieces(certificate) for v in piece["lambda"] + piece["mu"]]
    # the search wrote them short (at most 5 significant digits), and they prove the pieces
    assert all(v == float(f"{v:.5g}") for v in values), values
    assert any(v != float(f"{v:.2g}") for v in values)
    report = _check(source, text, certificate)
    assert report.valid, report.message
    assert report.evidence.get("lp-phases", 0) >= 1


def _tampered(certificate, change):
    tampered = copy.deepcopy(certificate)
    root, piece = _pieces(tampered)[0]
    change(root, piece)
    return tampered


@pytest.mark.parametrize(
    "change",
    [
        lambda root, piece: piece.update({"lambda": [v * 1e4 + 1e3 for v in piece["lambda"]]}),
        lambda root, piece: piece.update({"lambda": piece["lambda"][:-1]}),
        lambda root, piece: piece.update({"lambda": [*piece["lambda"], 0]}),
        lambda root, piece: piece.update({"mu": [-v - 1.0 for v in piece["mu"]]}),
        lambda root, piece: piece.update({"mu": [0] * len(piece["mu"])}),
        lambda root, piece: root.pop("relus"),
        lambda root, piece: root["relus"].append([]),
        lambda root, piece: root["relus"][_layer(root)].append(10**6),
        lambda root, piece: root["relus"][_layer(root)].insert(0, -1),
        lambda root, piece: piece.update(
            {"lambda": [[0, 0, v] for v in piece["lambda"]]}  # version 2's triples in 3
        ),
    ],
)
def test_tampered_compact_multipliers_are_rejected(change):
    source, text, certificate = _lp_instance()
    assert _check(source, text, certificate).valid
    assert not _check(source, text, _tampered(certificate, change)).valid


def _layer(root) -> int:
    return next(k for k, neurons in enumerate(root["relus"]) if neurons)


def as_version_2(certificate) -> dict:
    """The same certificate in version 2: each piece's multipliers as [layer, neuron, value]."""
    old = copy.deepcopy(certificate)
    old["version"] = 2
    for root in _lp_trees(old):
        where = [(k, j) for k, neurons in enumerate(root.pop("relus")) for j in neurons]
        stack = [root]
        while stack:
            node = stack.pop()
            stack.extend(node.get("children", []))
            if "lambda" in node:
                node["lambda"] = [
                    [k, j, v] for (k, j), v in zip(where, node["lambda"], strict=True)
                ]
    return old


def test_version_2_certificates_still_check():
    source, text, certificate = _lp_instance()
    old = as_version_2(certificate)
    assert _pieces(old) and all(isinstance(p["lambda"][0], list) for _, p in _pieces(old))
    report = _check(source, text, old)
    assert report.valid, report.message
    # a version-2 piece with a changed multiplier is still rejected
    _, piece = _pieces(old)[0]
    piece["lambda"] = [[k, j, v * 1e4 + 1e3] for k, j, v in piece["lambda"]]
    assert not _check(source, text, old).valid
    # and a version-2 certificate cannot use version 3's flat lists
    flat = copy.deepcopy(certificate)
    flat["version"] = 2
    assert not _check(source, text, flat).valid


def test_version_2_pieces_on_differently_ordered_relus_check_one_at_a_time():
    """A version-2 tree whose pieces list their ReLUs differently (here: one piece's triples
    reversed, the same multipliers) cannot share one batch: it is checked piece by piece."""
    source, text, certificate = _lp_instance()
    old = as_version_2(certificate)
    roots = {}
    for root, piece in _pieces(old):
        roots.setdefault(id(root), []).append(piece)
    several = [p for p in roots.values() if len(p) >= 2]
    assert several, "no LP tree with two pieces"
    several[0][0]["lambda"].reverse()
    report = _check(source, text, old)
    assert report.valid, report.message
