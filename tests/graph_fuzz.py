"""Differential fuzzing of graph-engine certificates (engine "graph", docs/certificate.md).

A random DAG (tests/graph_dags.py, no final Softmax) gets a random VNN-LIB property as the
chain fuzzer makes them (tests/chain_fuzz.py: rows with coefficients like 2, 0.5, 1/3, 250,
mixed signs, several half-spaces per conjunction, several conjunctions, sub-boxes that are
cases of their own), its thresholds just beyond the least margin an attack finds. MODES
lower the graph search's thresholds so that element splits (with split multipliers on
S-shaped networks), max-case splits and strong branching run on these small models.

`check_graph` then judges verify's verdict and its certificate:
- a `holds` certificate made without optimised intermediate bounds must pass the checker;
- the certificate claiming a refuted threshold or a larger margin must not;
- forged trees (`forgeries`: a split dropped, a side dropped, a leaf claiming emptiness,
  another row, a moved split point) must be rejected whenever `false_leaf` finds a sampled
  input of some leaf's region where the leaf's claim fails (an oracle sharing no code with
  the checker: the DAG's float64 reference and the loader's IR evaluation).
"""

from __future__ import annotations

import contextlib
import copy
from fractions import Fraction

import numpy as np

from tests.chain_fuzz import (
    TOL,
    Instance,
    check_certificate,
    fuzz_instance,
    margins,
    vnnlib,
)
from tests.graph_dags import random_dag
from verifiers.certify.checker import check_model
from verifiers.components import OnnxComponent
from verifiers.model.evaluate import run_nodes
from verifiers.options import Options
from verifiers.result import Verdict
from verifiers.search import graph_bab
from verifiers.spec.vnnlib import parse_vnnlib
from verifiers.verify import verify

_SPLITS = ("INPUT_SPLIT_MAX_DIMS", "MAXES_INPUT_DIMS", "SSHAPED_INPUT_DIMS")
MODES: dict[str, dict[str, object]] = {
    "box": {},
    "element": {**dict.fromkeys(_SPLITS, 0), "SSHAPED_PLAIN_INPUT_DIMS": 0},
    "strong": {**dict.fromkeys(_SPLITS, 0), "STRONG_CANDIDATES": 3, "MAX_DEPTH": 12},
}


@contextlib.contextmanager
def patched(mode: str):
    saved = {name: getattr(graph_bab, name) for name in MODES[mode]}
    try:
        for name, value in MODES[mode].items():
            setattr(graph_bab, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(graph_bab, name, value)


def instance(seed: int, acts: tuple[str, ...] | None = None) -> Instance | None:
    d = random_dag(seed, acts=acts, softmax=False)
    return fuzz_instance(seed, d, np.random.default_rng(seed + 777), 1e-3)


def run(inst: Instance, shift: float, options: Options, mode: str):
    prop = parse_vnnlib(vnnlib(inst.spec, len(inst.spec.lower), shift))
    with patched(mode):
        result = verify(OnnxComponent(inst.data), prop, options)
    return prop, result


def check_graph(
    inst: Instance, side: int, options: Options, mode: str, must_hold=False, forge=True
) -> list[str]:
    """Problems with verify's `holds` and its certificate at `side` eps from the least margin
    (`must_hold`: a verdict other than a graph `holds` is one; `forge`: forged trees too)."""
    shift = inst.least + side * inst.eps
    prop, result = run(inst, shift, options, mode)
    what = f"seed={inst.seed} side={side} mode={mode} {options}"
    if result.verdict is Verdict.ERROR:
        return [f"error {result.reason} {what}"]
    cert = result.certificate
    if result.verdict is not Verdict.HOLDS or cert is None or cert.get("engine") != "graph":
        return [f"no graph holds: {result.verdict} {result.reason} {what}"] if must_hold else []
    if margins(inst.d, inst.spec, inst.x, shift, options.margin).min() < 0:
        return [f"WRONG HOLDS {what}"]
    problems = check_certificate(inst, prop, cert, shift, options, what, budget_s=30)
    refuted = inst.least + inst.eps - options.margin
    if refuted > shift:
        false = parse_vnnlib(vnnlib(inst.spec, len(inst.spec.lower), refuted))
        for name, change in GAMMA_CHANGES.items():  # no multipliers prove a false claim
            forged = {**everywhere(inst, cert, change), "property_sha256": false.sha256()}
            if check_model(forged, inst.model, false, budget_s=30).valid:
                problems.append(f"FORGED THRESHOLD ({name}) ACCEPTED {what}")
    rng = np.random.default_rng(inst.seed)
    for name, forged in forgeries(cert, rng) if forge else []:
        if not check_model(forged, inst.model, prop, budget_s=30).valid:
            continue
        if name == "side dropped":
            problems.append(f"FORGED ({name}) ACCEPTED {what}")
        elif (bad := false_leaf(inst, prop, forged, rng)) is not None:
            problems.append(f"FORGED ({name}) ACCEPTED, false at {bad} {what}")
    return problems


# --- forged trees ----------------------------------------------------------------------------


def _nodes(tree, path=()):
    yield path, tree
    for k, child in enumerate(tree.get("children") or []):
        yield from _nodes(child, (*path, k))


def _at(cert, case: int, path):
    node = cert["cases"][case]["tree"]
    for k in path:
        node = node["children"][k]
    return node


def forgeries(cert, rng: np.random.Generator):
    """(name, forged certificate) pairs: each changes one node of one case's tree."""
    out = []
    for c, entry in enumerate(cert["cases"]):
        nodes = list(_nodes(entry["tree"]))
        splits = [p for p, n in nodes if "children" in n]
        leaves = [p for p, n in nodes if n.get("leaf") == "linear-bound"]
        for path in _some(rng, splits, 3):
            for side in (0, 1):
                forged = copy.deepcopy(cert)  # the split replaced by one side: widened leaves
                node = _at(forged, c, path)
                kept = node["children"][side]
                node.clear()
                node.update(kept)
                out.append(("split dropped", forged))
            forged = copy.deepcopy(cert)
            _at(forged, c, path)["children"].pop()
            out.append(("side dropped", forged))
            forged = copy.deepcopy(cert)
            node = _at(forged, c, path)
            if node["split"] in ("input", "interval"):  # the point moved
                node["at"] = node["at"] + (rng.choice([-1, 1]) * 10 ** rng.uniform(-3, 0))
                out.append(("point moved", forged))
            elif node["split"] == "max":
                node["candidate"] = int(node["candidate"]) + 1
                out.append(("candidate changed", forged))
        for path in _some(rng, leaves, 3):
            forged = copy.deepcopy(cert)
            _at(forged, c, path).update({"leaf": "empty-split"})
            out.append(("claimed empty", forged))
            forged = copy.deepcopy(cert)
            for proof in _at(forged, c, path)["proofs"]:
                proof["row"] = int(proof["row"]) + int(rng.choice([-1, 1]))
            out.append(("other row", forged))
        for path in _some(rng, [p for p in leaves if _gammas(_at(cert, c, p))], 2):
            for name, change in GAMMA_CHANGES.items():
                forged = copy.deepcopy(cert)
                for proof in _at(forged, c, path)["proofs"]:
                    proof["gammas"] = [
                        [t, j, change(g, rng)] for t, j, g in proof.get("gammas", [])
                    ]
                out.append((name, forged))
    return out


GAMMA_CHANGES = {
    "multipliers negated": lambda g, rng: -g,
    "multipliers scaled": lambda g, rng: g * float(rng.choice([1e-3, 3.0, 1e3])),
    "multipliers random": lambda g, rng: float(rng.normal(scale=10.0 ** rng.uniform(-3, 3))),
}


def everywhere(inst: Instance, cert, change) -> dict:
    """The certificate with every leaf's multipliers changed and one more added, on a
    random element of a random tensor of the model."""
    rng = np.random.default_rng(inst.seed)
    graph = inst.model.graph
    tensors = [graph.input_name, *(node.output for node in graph.nodes)]
    forged = copy.deepcopy(cert)
    for entry in forged["cases"]:
        for _, node in _nodes(entry["tree"]):
            for proof in node.get("proofs") or []:
                t = tensors[int(rng.integers(len(tensors)))]
                size = graph.n_inputs if t == graph.input_name else int(np.prod(graph.shapes[t]))
                extra = [t, int(rng.integers(size)), 1.0]
                gammas = [*proof.get("gammas", []), extra]
                proof["gammas"] = [[t, j, change(g, rng)] for t, j, g in gammas]
    return forged


def _gammas(leaf) -> bool:
    return any(proof.get("gammas") for proof in leaf.get("proofs", []))


def _some(rng, items: list, k: int) -> list:
    if len(items) <= k:
        return items
    return [items[i] for i in rng.choice(len(items), k, replace=False)]


# --- the oracle: a leaf whose claim a sampled input refutes ----------------------------------


def false_leaf(inst: Instance, prop, cert, rng: np.random.Generator, n: int = 400):
    """A leaf (case, path) of the certificate with a sampled input of its region where its
    claim fails (reference values within TOL count as failing neither way), or None."""
    margin = Fraction(cert["margin"])
    for entry in cert["cases"]:
        case = prop.cases[entry["index"]]
        lo, hi = np.array(entry["lower"]), np.array(entry["upper"])
        todo = [(entry["tree"], lo, hi, (), ())]
        while todo:
            node, lo, hi, cons, path = todo.pop()
            if "children" not in node:
                x = lo + (hi - lo) * np.concatenate(
                    [rng.random((n, len(lo))), [np.full(len(lo), 0.5)]]
                )
                if _refutes(inst, case, node, x, cons, margin):
                    return entry["index"], path
                continue
            kind, kids = node["split"], node["children"]
            for k, child in enumerate(kids):
                c_lo, c_hi, c_cons = lo, hi, cons
                if kind == "input":
                    c_lo, c_hi = lo.copy(), hi.copy()
                    (c_hi if k == 0 else c_lo)[node["dim"]] = node["at"]
                else:
                    c_cons = (*cons, (kind, node, k))
                todo.append((child, c_lo, c_hi, c_cons, (*path, k)))
    return None


def _refutes(inst, case, leaf, x, cons, margin) -> bool:
    if any(kind == "max" for kind, _, _ in cons):
        return False  # the oracle does not evaluate max cases
    graph = inst.model.graph
    start = {graph.input_name: x.reshape(len(x), *graph.input_shape)}
    values = {k: v.reshape(len(x), -1) for k, v in run_nodes(graph.nodes, start).items()}
    keep = np.ones(len(x), dtype=bool)
    for _, node, side in cons:
        z = values[node["tensor"]][:, node["index"]]
        slack = TOL * (1 + abs(z))
        keep &= (z <= node["at"] - slack) if side == 0 else (z >= node["at"] + slack)
    if not keep.any():
        return False
    y = inst.d.reference(x[keep])
    if leaf.get("leaf") != "linear-bound":
        return True  # claimed empty, with an input inside
    ok = np.ones(len(y), dtype=bool)
    for conjunction, proof in zip(case.unsafe, leaf["proofs"], strict=True):
        row = proof["row"]
        if not 0 <= row < len(conjunction.halfspaces):
            return False
        h = conjunction.halfspaces[row]
        a = np.array([float(c) for c in h.coeffs])
        value = y @ a - float(h.rhs + margin)
        tol = TOL * (1 + np.abs(y) @ np.abs(a) + abs(float(h.rhs)))
        ok &= value > -tol
    return not ok.all()
