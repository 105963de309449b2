"""lp-phases leaves of one tree level are proved together (leaves.Prover.lp_leaves: every
piece of every leaf a row of one exact back-substitution, on its own region). A valid tree
checks with its LP leaves proved by that batch; a tampered multiplier or a dropped piece in
one leaf is rejected with that leaf named (not a neighbour in the batch); and with several
bad leaves in a batch, the first is reported. A leaf the batch does not prove is checked on
its own (check.py), which names it: a batch mixing up its rows would let a bad leaf pass or
name the wrong one."""

from __future__ import annotations

import copy

import pytest

from tests.unit.test_certificates import _check, _holding
from verifiers.certify.checker import leaves as leaves_module
from verifiers.certify.checker.check import _Walker


def _levels(certificate) -> list[list[tuple[str, dict]]]:
    """The leaves of case 0's tree, level by level, in the checker's order and naming."""
    entry = certificate["cases"][0]
    out, level = [], [(f"case {entry['index']} /", entry["tree"])]
    while level:
        out.append([(name, node) for name, node in level if "leaf" in node])
        below = []
        for name, node in level:
            if "split" in node:
                tags = (" 0", " 1") if node["split"] == "input" else (" +", " -")
                below += [(name + t, c) for t, c in zip(tags, node["children"], strict=True)]
        level = below
    return out


def _instance():
    """A planted instance with a level of at least three lp-phases leaves: (source, text,
    certificate, the names of that level's lp-phases leaves)."""
    for source, text, certificate in _holding(6):
        for level in _levels(certificate):
            names = [name for name, node in level if node["leaf"] == "lp-phases"]
            if len(names) >= 3:
                return source, text, certificate, names
    pytest.fail("no planted instance with three lp-phases leaves on one level")


def _leaf(certificate, name) -> dict:
    return next(node for level in _levels(certificate) for n, node in level if n == name)


def _piece(tree) -> dict:
    """An LP tree's first piece with multipliers."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if node.get("lambda"):
            return node
        stack.extend(node.get("children", []))
    pytest.fail("an LP tree without multipliers")


def _scale_lambda(leaf):
    piece = _piece(leaf["proofs"][0])
    piece["lambda"] = [v * 1e4 + 1e3 for v in piece["lambda"]]


def _zero_mu(leaf):
    for proof in leaf["proofs"]:
        stack = [proof]
        while stack:
            node = stack.pop()
            stack.extend(node.get("children", []))
            if "mu" in node:
                node["mu"] = [0] * len(node["mu"])


def _drop_piece(leaf):
    split = next((p for p in leaf["proofs"] if "split" in p), None)
    assert split is not None, "an LP tree without a phase split"
    split["children"] = split["children"][:1]


CHANGES = [_scale_lambda, _zero_mu, _drop_piece]


def _tampered(certificate, names, change):
    tampered = copy.deepcopy(certificate)
    for name in names:
        change(_leaf(tampered, name))
    return tampered


def _names(message: str, name: str) -> bool:
    return message.startswith(f"{name}:") or message.startswith(f"{name} lp")


def test_a_levels_lp_leaves_are_proved_by_one_batch(monkeypatch):
    source, text, certificate, names = _instance()
    batches, alone = [], []
    original = leaves_module.Prover.lp_leaves

    def spy(self, batch, leaves, case):
        proved = original(self, batch, leaves, case)
        lp = [i for tree, i, _ in leaves if tree.get("leaf") == "lp-phases"]
        batches.append((len(lp), len(proved)))
        return proved

    one_by_one = _Walker.leaf_with_retries
    monkeypatch.setattr(leaves_module.Prover, "lp_leaves", spy)
    monkeypatch.setattr(
        _Walker, "leaf_with_retries", lambda w, n, *a: alone.append(n.name) or one_by_one(w, n, *a)
    )
    report = _check(source, text, certificate)
    assert report.valid, report.message
    assert (len(names), len(names)) in batches  # the level's leaves, all proved together
    assert not set(alone) & set(names)


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("which", [0, 1, -1])
def test_a_bad_leaf_in_a_batch_is_rejected_and_named(change, which):
    source, text, certificate, names = _instance()
    report = _check(source, text, _tampered(certificate, [names[which]], change))
    assert not report.valid
    assert _names(report.message, names[which]), (names[which], report.message)


@pytest.mark.parametrize("change", CHANGES)
def test_a_batch_of_good_and_bad_leaves_reports_the_first_bad_one(change):
    source, text, certificate, names = _instance()
    bad = names[1:]  # names[0] stays good
    report = _check(source, text, _tampered(certificate, list(reversed(bad)), change))
    assert not report.valid
    assert _names(report.message, bad[0]), (bad[0], report.message)
