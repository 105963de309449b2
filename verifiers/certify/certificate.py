"""The proof certificate of a `holds` (format: docs/certificate.md).

The search records, per case, the leaves of its branch-and-bound tree: the splits from the
case's box to each leaf (Region.path) and, per unsafe conjunction, what refutes it. This
module nests them into the certificate's tree. It trusts nothing: the independent checker
(verifiers/certify/checker/) re-derives every region from the splits and re-proves every
leaf from the model's weights.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from verifiers import __version__
from verifiers.search.context import CaseOutcome
from verifiers.search.region import Leaf
from verifiers.spec.property import Property

FORMAT = "proofwell-certificate"
VERSION = 3  # 2: row proofs may carry optimised slopes and split multipliers; 3: an LP
# tree lists its ReLUs once and its pieces give flat multiplier lists, short ones


def certificate(
    prop: Property,
    outcomes: list[tuple[int, CaseOutcome]],
    model_sha256: str,
    margin: float,
    record_tree: bool = True,
) -> dict[str, Any]:
    """The certificate of a `holds`: `outcomes` are (case index, outcome) of every case
    searched (cases with an empty box are left out; the checker sees they are empty)."""
    kinds: Counter[str] = Counter()
    cases = []
    for index, outcome in outcomes:
        case = prop.cases[index]
        entry: dict[str, Any] = {
            "index": index,
            "lower": [float(v) for v in case.lower],
            "upper": [float(v) for v in case.upper],
        }
        if record_tree:
            entry["tree"] = tree(outcome.leaves)
            kinds.update(leaf.evidence.value for leaf in outcome.leaves)
        cases.append(entry)
    return {
        "format": FORMAT,
        "version": VERSION,
        "engine_version": __version__,
        "model_sha256": model_sha256,
        "property_sha256": prop.sha256(),
        "margin": margin,
        "complete": record_tree,
        "leaves": dict(sorted(kinds.items())),
        "cases": cases,
    }


def tree(leaves: list[Leaf]) -> dict[str, Any]:
    """Nest leaves into the split tree. A split that some leaf's path does not continue is
    left as an empty object: the checker rejects it (the search never leaves one)."""
    root: dict[str, Any] = {}
    for leaf in leaves:
        node = root
        for step in leaf.path:
            if "children" not in node:
                node.update(_split(step))
                node["children"] = [{}, {}]
            node = node["children"][step[-1]]
        node.update(_leaf(leaf))
    return root


def _split(step: tuple) -> dict[str, Any]:
    if step[0] == "input":
        _, dim, at, _ = step
        return {"split": "input", "dim": int(dim), "at": float(at)}
    if step[0] == "interval":  # graph engine: an element's interval split at a point
        _, tensor, index, at, _ = step
        return {"split": "interval", "tensor": str(tensor), "index": int(index), "at": float(at)}
    if step[0] == "max":  # graph engine: is candidate b the max of element j?
        _, tensor, index, candidate, _ = step
        return {
            "split": "max",
            "tensor": str(tensor),
            "index": int(index),
            "candidate": int(candidate),
        }
    _, layer, neuron, _ = step
    return {"split": "relu", "layer": int(layer), "neuron": int(neuron)}


def _leaf(leaf: Leaf) -> dict[str, Any]:
    data: dict[str, Any] = {"leaf": leaf.evidence.value}
    if leaf.proofs is not None:
        data["proofs"] = leaf.proofs
    return data
