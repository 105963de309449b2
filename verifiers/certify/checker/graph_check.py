"""Re-validating a graph-engine certificate (docs/certificate.md, "Graph certificates").

The walk goes down each case's tree from the case's box. Three splits, each covering its
region with its two children:
- input: the box halved at a point inside it;
- interval: tensor t's element j at most `at` (child 0) or at least `at` (child 1);
- max: for a Max/MaxPool/Min output element j over its allowed candidates A (all at the
  root), child 0 is where candidate b is the max (there y_j = x_b: A becomes {b}), child 1
  where another candidate of A is at least x_b (A loses b); b must be in A.
Every region gets its own bounds (graph_bounds.py), valid on it, intersected with its
parent's. A leaf is `linear-bound` (per unsafe conjunction, the row of a half-space whose
exact lower bound on the region beats its right-hand side plus the margin) or
`empty-split` (the region's bounds cross). The certificate's numbers only say where to
split, which row to bound and with which split multipliers (graph_multipliers.py), never
what a bound is.
"""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np

from verifiers.certify.checker import exact, graph_multipliers
from verifiers.certify.checker import graph_bounds as gb
from verifiers.certify.checker.check import (
    Invalid,
    Report,
    Walk,
    _count,
    input_halves,
    read_cases,
    read_header,
    split_children,
    walk_to_report,
)
from verifiers.certify.checker.graph_net import Net, Unsupported
from verifiers.certify.checker.rows import dyadic as _dyadic_rows
from verifiers.certify.checker.rows import scale as _scale

GRAPH_VERSIONS = (1, 2)  # 2: a row proof may carry split multipliers (`gammas`)
LEAVES = ("linear-bound", "empty-split")


def check(certificate, graph, prop, model_sha256, on_progress=None, budget_s=None) -> Report:
    """A Report: valid, or the first failing node named by its case and path."""
    started = time.monotonic()
    walker = _Walker(prop, on_progress)
    walker.deadline = None if budget_s is None else started + budget_s

    def walk() -> None:
        walker.start(certificate, graph, model_sha256)
        for entry, case in walker.cases:
            walker.case(entry, case)

    return walk_to_report(walker, walk, started)


def _softmax_ok(net: Net, prop, margin: Fraction) -> bool:
    """Under a stripped final Softmax every unsafe half-space must compare two outputs of
    one softmax row (c y_i - c y_j against 0) and the margin be 0: softmax keeps their
    order, but not their differences (c y_i - c y_j <= margin)."""
    if net.softmax is None:
        return True
    if margin != 0:
        return False
    for case in prop.cases:
        for conjunction in case.unsafe:
            for h in conjunction.halfspaces:
                nonzero = [(i, c) for i, c in enumerate(h.coeffs) if c != 0]
                if h.rhs != 0 or len(nonzero) != 2 or nonzero[0][1] != -nonzero[1][1]:
                    return False
                if nonzero[0][0] // net.softmax != nonzero[1][0] // net.softmax:
                    return False
    return True


class _Walker(Walk):
    def __init__(self, prop, on_progress):
        super().__init__(on_progress)
        self.prop = prop
        self.mats = gb.Matrices()
        self.margin = Fraction(0)
        self.cases: list = []

    def start(self, cert, graph, model_sha256) -> None:
        self.margin = read_header(cert, self.prop, model_sha256, GRAPH_VERSIONS, "graph")
        try:
            self.net = Net.of(graph)
        except Unsupported as exc:
            raise Invalid(f"the graph checker cannot read the model: {exc}") from None
        if not _softmax_ok(self.net, self.prop, self.margin):
            raise Invalid(
                "the model ends in a Softmax and the property is not pairwise without a margin"
            )
        self.cases = read_cases(cert, self.prop)
        self.total = sum(_count(entry["tree"]) for entry, _ in self.cases)

    def case(self, entry, case) -> None:
        lower = np.array(entry["lower"], dtype=np.float64)
        upper = np.array(entry["upper"], dtype=np.float64)
        # (node, box, splits, max cases, parent boxes, name)
        stack = [(entry["tree"], lower, upper, (), {}, None, f"case {entry['index']} /")]
        while stack:
            node, lo, hi, splits, allowed, parent, name = stack.pop()
            self.tick()
            if not isinstance(node, dict) or ("split" in node) == ("leaf" in node):
                raise Invalid(f"{name}: a split is missing a case (no split or leaf here)")
            region = gb.region_bounds(self.net, self.mats, lo, hi, parent, splits, allowed)
            if "leaf" in node:
                self.leaf(node, region, case, (lo, hi, splits, allowed), name)
                continue
            if region is None:  # no input here: nothing below needs a proof
                self.done += _count(node) - 1
                continue
            for child, (c_lo, c_hi, c_splits, c_allowed), tag in self.split(
                node, lo, hi, splits, allowed, name
            ):
                stack.append((child, c_lo, c_hi, c_splits, c_allowed, region.boxes, name + tag))

    # --- splits --------------------------------------------------------------------------

    def split(self, node, lo, hi, splits, allowed, name):
        children, kind = split_children(node, name)
        if kind == "input":
            (lo0, hi0), (lo1, hi1) = input_halves(node, lo, hi, name)
            return [
                (children[0], (lo0, hi0, splits, allowed), " 0"),
                (children[1], (lo1, hi1, splits, allowed), " 1"),
            ]
        if kind == "interval":
            tensor, j = self.element(node, name)
            at = node.get("at")
            if not exact.is_number(at):
                raise Invalid(f"{name}: interval split point {at!r} is not a finite number")
            return [
                (children[side], (lo, hi, (*splits, (tensor, j, float(at), side)), allowed), tag)
                for side, tag in ((0, f" {tensor}[{j}]<="), (1, f" {tensor}[{j}]>="))
            ]
        if kind == "max":
            return self.max_split(node, children, lo, hi, splits, allowed, name)
        raise Invalid(f"{name}: unknown split {kind!r}")

    def element(self, node, name) -> tuple[str, int]:
        tensor, j = node.get("tensor"), node.get("index")
        if not isinstance(tensor, str) or tensor not in self.net.sizes:
            raise Invalid(f"{name}: split on no tensor of the model ({tensor!r})")
        if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < self.net.sizes[tensor]:
            raise Invalid(f"{name}: split on no element of {tensor} ({j!r})")
        return tensor, j

    def max_split(self, node, children, lo, hi, splits, allowed, name):
        tensor, j = self.element(node, name)
        producer = self.net.producer(tensor)
        if producer < 0 or self.net.nodes[producer].kind != "max":
            raise Invalid(f"{name}: max split on {tensor}, which no Max/MaxPool/Min computes")
        mask = allowed.get(tensor)
        if mask is None:
            mask = gb.initial_allowed(self.net.nodes[producer])
        b = node.get("candidate")
        if isinstance(b, bool) or not isinstance(b, int) or not 0 <= b < mask.shape[1]:
            raise Invalid(f"{name}: max split on no candidate ({b!r})")
        if not mask[j, b]:
            raise Invalid(f"{name}: max split on candidate {b}, not a candidate here")
        # Only output j changes; the other outputs keep their candidates.
        only, without = mask.copy(), mask.copy()
        only[j], without[j, b] = np.arange(mask.shape[1]) == b, False
        return [
            (children[0], (lo, hi, splits, {**allowed, tensor: only}), f" {tensor}[{j}]={b}"),
            (children[1], (lo, hi, splits, {**allowed, tensor: without}), f" {tensor}[{j}]!={b}"),
        ]

    # --- leaves --------------------------------------------------------------------------

    def leaf(self, node, region, case, where, name) -> None:
        kind = node["leaf"]
        self.count(node)
        if kind not in LEAVES:
            raise Invalid(f"{name}: unknown evidence {kind!r}")
        if kind == "linear-bound":
            proofs = node.get("proofs")
            if not isinstance(proofs, list) or len(proofs) != len(case.unsafe):
                raise Invalid(f"{name}: needs one proof per unsafe conjunction")
        if region is None:
            return
        if kind == "linear-bound" and self.proved(node["proofs"], case, region, name):
            return
        # Once more, from this region's own bounds (valid on it, and tighter lines), with
        # every entry of the non-linear nodes' inputs tightened.
        lo, hi, splits, allowed = where
        again = gb.region_bounds(
            self.net, self.mats, lo, hi, region.boxes, splits, allowed, every=True
        )
        if again is None:
            return
        if kind == "empty-split":
            raise Invalid(f"{name}: empty-split, but the region's bounds do not cross")
        if not self.proved(node["proofs"], case, again, name):
            raise Invalid(f"{name}: linear-bound does not prove the region")

    def proved(self, proofs, case, region, name) -> bool:
        for conjunction, proof in zip(case.unsafe, proofs, strict=True):
            index = proof.get("row") if isinstance(proof, dict) else None
            if isinstance(index, bool) or not isinstance(index, int):
                raise Invalid(f"{name}: a proof is not {{'row': index}}")
            if not 0 <= index < len(conjunction.halfspaces):
                raise Invalid(f"{name}: no half-space {index!r}")
            try:
                gammas = graph_multipliers.read(proof, self.net)
            except graph_multipliers.BadGammas as exc:
                raise Invalid(f"{name}: {exc}") from None
            if not self.row(conjunction.halfspaces[index], region, gammas):
                return False
        return True

    def row(self, h, region, gammas) -> bool:
        """Whether the half-space's row, with the split multipliers `gammas` (for it as
        written), has a lower bound beating its right-hand side on the region."""
        scale = _scale([h.coeffs])
        rows = _dyadic_rows([[c * scale for c in h.coeffs]])
        weighed = graph_multipliers.weigh(gammas, scale, self.net, region.boxes)
        if weighed is None:
            return False
        seeds, cost = weighed
        ints, exps = gb.lower_bounds(self.net, self.mats, region, self.net.output, rows, seeds)
        value = exact.to_fraction(int(ints[0]), int(exps[0])) - cost
        bound = (h.rhs + self.margin) * scale
        return value >= bound if h.strict else value > bound
