"""Re-validating a certificate: the tree covers every case's box, every leaf is proved.

The walk goes down each case's tree from the case's box: an input split halves the box at
its point (both halves must be there), a ReLU split keeps the box and adds the phase
z >= 0 to one child and z <= 0 to the other (both must be there). Every region gets
pre-activation bounds of its own (regions.py), intersected with its parent's, which are
valid on it too. Leaves are then proved from those bounds; the certificate's numbers only
say which argument to make (a row, combination weights, Lagrange multipliers), never what
a bound is.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from threadpoolctl import threadpool_limits

from verifiers.certify.checker import exact, rows
from verifiers.certify.checker import lagrangian as lg
from verifiers.certify.checker import regions as rb
from verifiers.certify.checker.leaves import Invalid, Prover, neuron
from verifiers.certify.checker.smt import cvc5_answer, query

FORMAT = "proofwell-certificate"
VERSIONS = (1, 2, 3)  # 2 adds a row proof's slopes and split multipliers, 3 compact LP ones


class OutOfTime(Exception):
    """The time budget ran out before every region was checked."""


@dataclass
class Report:
    valid: bool
    message: str
    checked: bool = True  # False: the budget ran out first (then valid is False)
    leaves: int = 0
    nodes: int = 0
    seconds: float = 0.0
    evidence: dict[str, int] = field(default_factory=dict)


Progress = Callable[[int, int], None]  # (nodes checked, nodes in all)
BATCH = 256  # regions bounded together: the products with the weights are shared
BATCHED = ("linear-bound", "lp-phases")  # leaves proved level-wide (rows.py, leaves.py)


@dataclass(frozen=True)
class _Node:
    """A tree node to check, with its region: box, phases, the enclosing region's bounds
    (valid here too), its name, and the regions from the case's root (for retightening)."""

    tree: object
    lower: np.ndarray
    upper: np.ndarray
    phases: tuple
    parent: lg.Bounds | None
    name: str
    chain: tuple


def check(
    certificate,
    network,
    prop,
    model_sha256: str,
    on_progress: Progress | None = None,
    budget_s: float | None = None,
) -> Report:
    """A Report: valid, or the first failing node named by its case and path; with a
    budget, possibly not checked to the end."""
    # One BLAS thread, as the search: on a shared machine threads only contend.
    with threadpool_limits(limits=1, user_api="blas"):
        return _check(certificate, network, prop, model_sha256, on_progress, budget_s)


def _check(certificate, network, prop, model_sha256, on_progress, budget_s) -> Report:
    started = time.monotonic()
    walker = _Walker(network, prop, on_progress)
    walker.deadline = None if budget_s is None else started + budget_s

    def walk() -> None:
        walker.margin = read_header(certificate, prop, model_sha256)
        walker.prover = Prover(walker.net, walker.margin, certificate["version"])
        walker.total = sum(_count(entry["tree"]) for entry, _ in read_cases(certificate, prop))
        for entry, case in read_cases(certificate, prop):
            walker.case(entry, case)

    return walk_to_report(walker, walk, started)


def walk_to_report(walker, walk: Callable[[], None], started: float) -> Report:
    """Run a checker's walk: valid when it ends, else the first failure named. Whatever a
    malformed certificate makes it raise fails closed; it never crashes the checker."""
    try:
        walk()
    except Invalid as exc:
        return walker.report(False, str(exc), started)
    except RecursionError:
        return walker.report(False, "the certificate nests too deeply", started)
    except OutOfTime:
        message = f"not checked to the end: {walker.done} of {walker.total} regions"
        return walker.report(False, message, started, checked=False)
    except Exception as exc:
        return walker.report(False, f"cannot check: {type(exc).__name__}: {exc}", started)
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(walker.kinds.items()))
    summary = f"valid: {walker.leaves} leaves, {walker.done} regions re-checked ({kinds})"
    return walker.report(True, summary, started)


def read_header(cert, prop, model_sha256: str, versions=VERSIONS, engine=None) -> Fraction:
    """The margin, once the document is a certificate (of ``engine``, if given) of a known
    version for this model and property."""
    if not isinstance(cert, dict) or cert.get("format") != FORMAT:
        raise Invalid(f"not a {FORMAT} document")
    if engine is not None and cert.get("engine") != engine:
        raise Invalid(f"not a {engine}-engine certificate")
    if cert.get("version") not in versions:
        kind = f"{engine} certificate" if engine else "certificate"
        raise Invalid(f"unsupported {kind} version {cert.get('version')!r}")
    if cert.get("model_sha256") != model_sha256:
        raise Invalid("the certificate is for another model (model_sha256 differs)")
    if cert.get("property_sha256") != prop.sha256():
        raise Invalid("the certificate is for another property (property_sha256 differs)")
    margin = cert.get("margin")
    if isinstance(margin, bool) or not isinstance(margin, int | float):
        raise Invalid("margin: not a finite number >= 0")
    if not math.isfinite(margin) or margin < 0:
        raise Invalid("margin: not a finite number >= 0")
    return Fraction(margin)


def read_cases(cert, prop):
    """(entry, case) for each case of the property with inputs, its tree required."""
    entries = cert.get("cases")
    if not isinstance(entries, list):
        raise Invalid("cases: missing")
    by_index = {e.get("index"): e for e in entries if isinstance(e, dict)}
    out = []
    for index, case in enumerate(prop.cases):
        if case.is_empty():
            continue
        entry = by_index.get(index)
        if entry is None:
            raise Invalid(f"case {index}: missing from the certificate")
        if entry.get("lower") != case.lower.tolist() or entry.get("upper") != case.upper.tolist():
            raise Invalid(f"case {index}: its box is not the property's")
        if not isinstance(entry.get("tree"), dict):
            raise Invalid(f"case {index}: no tree (the certificate was written without one)")
        out.append((entry, case))
    return out


def _count(node) -> int:
    if not isinstance(node, dict):
        return 1
    children = node.get("children")
    return 1 + (sum(_count(c) for c in children) if isinstance(children, list) else 0)


class Walk:
    """What both checkers' walks keep: regions done of the total, leaves per kind, the
    progress callback, the deadline; and the Report they end with."""

    def __init__(self, on_progress) -> None:
        self.on_progress = on_progress
        self.total = 0
        self.done = 0
        self.leaves = 0
        self.kinds: dict[str, int] = {}
        self.last_report = 0.0
        self.deadline: float | None = None

    def report(self, valid: bool, message: str, started: float, checked: bool = True):
        seconds = time.monotonic() - started
        if valid:
            message = f"{message} in {seconds:.1f} s"
        return Report(valid, message, checked, self.leaves, self.done, seconds, dict(self.kinds))

    def count(self, node) -> None:
        kind = str(node["leaf"])
        self.leaves += 1
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def tick(self) -> None:
        self.done += 1
        now = time.monotonic()
        if self.deadline is not None and now > self.deadline:
            raise OutOfTime()
        if self.on_progress and (now - self.last_report > 0.2 or self.done == self.total):
            self.last_report = now
            self.on_progress(self.done, self.total)


def split_children(node, name) -> tuple[list, str]:
    """A split's two children and its kind (a split must have exactly two)."""
    children = node.get("children")
    if not isinstance(children, list) or len(children) != 2:
        raise Invalid(f"{name}: a split must have exactly its two cases")
    return children, node["split"]


def input_halves(node, lo, hi, name):
    """The two boxes of an input split: ((lo, hi with dim up to at), (lo from at, hi))."""
    dim, at = node.get("dim"), node.get("at")
    if isinstance(dim, bool) or not isinstance(dim, int) or not 0 <= dim < lo.size:
        raise Invalid(f"{name}: input split on no input dimension ({dim!r})")
    if not exact.is_number(at) or not lo[dim] <= at <= hi[dim]:
        raise Invalid(f"{name}: input split point {at!r} outside the region")
    left_hi, right_lo = hi.copy(), lo.copy()
    left_hi[dim] = right_lo[dim] = float(at)
    return (lo, left_hi), (right_lo, hi)


class _Walker(Walk):
    def __init__(self, network, prop, on_progress):
        super().__init__(on_progress)
        self.plain = network
        self.net = lg.ExactNetwork.of(network)
        self.prop = prop
        self.margin = Fraction(0)
        self.prover: Prover | None = None  # once the margin is read
        self.tightened: dict = {}

    def case(self, entry, case) -> None:
        """Walk the case's tree a level at a time: the regions of one level are bounded
        together (regions.batch_bounds), BATCH at most at once."""
        index = entry["index"]
        lower = np.array(entry["lower"], dtype=np.float64)
        upper = np.array(entry["upper"], dtype=np.float64)
        level = [_Node(entry["tree"], lower, upper, (), None, f"case {index} /", ())]
        while level:
            below: list[_Node] = []
            for start in range(0, len(level), BATCH):
                below += self.level(level[start : start + BATCH], case)
            level = below

    def level(self, nodes: list[_Node], case) -> list[_Node]:
        """Bound a batch of regions, check its leaves; the children of its splits."""
        for node in nodes:
            self.tick()
            if not isinstance(node.tree, dict) or ("split" in node.tree) == ("leaf" in node.tree):
                raise Invalid(f"{node.name}: a split is missing a case (no split or leaf here)")
        leaves = ["leaf" in n.tree for n in nodes]
        batch, crossed = self.bounds(nodes, self.parents(nodes))
        # Most leaves are a row or a few LP pieces each: bounded together first, exactly.
        easy = [i for i, n in enumerate(nodes) if leaves[i] and not crossed[i]]
        proved = self.hold(nodes, batch, easy, case, at=easy)
        retry = [i for i in easy if i not in proved and nodes[i].tree.get("leaf") in BATCHED]
        proved |= self.proved_tightened(nodes, batch, retry, case)
        below = []
        for i, n in enumerate(nodes):
            region, empty = batch.one(i), bool(crossed[i])
            if leaves[i]:
                self.count(n.tree)
                if i not in proved:
                    self.leaf_with_retries(n, region, empty, case)
            elif empty:  # no input here: nothing below needs a proof
                self.done += _count(n.tree) - 1
            else:
                for child, (lo, hi, phases), tag in self.split(
                    n.tree, n.lower, n.upper, n.phases, n.name
                ):
                    chain = (*n.chain, (n.lower, n.upper, n.phases, n.name))
                    below.append(_Node(child, lo, hi, phases, region.bounds, n.name + tag, chain))
        return below

    def proved_tightened(self, nodes, batch, retry: list[int], case) -> set[int]:
        """Of the leaves `retry`, those proved (rows, LP pieces) after what `leaf_with_retries`
        tries next, done for the whole level at once rather than a region at a time: one
        more tightening pass; then the region bounded afresh with every neuron tightened,
        twice. A region left with no input by either needs no proof."""
        done: set[int] = set()
        if retry:
            phases = [list(nodes[i].phases) for i in retry]
            again, crossed = rb.tighten_again_batch(self.net, batch, retry, phases)
            done |= self.hold(nodes, again, retry, case, crossed=crossed)
        unproved = [i for i in retry if i not in done]
        if unproved:
            rest = [nodes[i] for i in unproved]
            phases = [list(n.phases) for n in rest]
            lower, upper = np.stack([n.lower for n in rest]), np.stack([n.upper for n in rest])
            parents = self.parents(rest)
            fresh, crossed = rb.batch_bounds(self.net, lower, upper, parents, phases, True)
            whole = list(range(len(rest)))
            again, crossed2 = rb.tighten_again_batch(self.net, fresh, whole, phases, True)
            done |= self.hold(nodes, again, unproved, case, crossed=crossed | crossed2)
        return done

    def parents(self, nodes: list[_Node]):
        """The enclosing regions' bounds of `nodes`, stacked per layer (None for a case's
        root, which has none and is alone on its level)."""
        if nodes[0].parent is None:
            return None
        return [
            (np.stack([n.parent[k][0] for n in nodes]), np.stack([n.parent[k][1] for n in nodes]))
            for k in range(len(self.net.sizes))
        ]

    def hold(self, nodes, batch, indices: list[int], case, at=None, crossed=None) -> set[int]:
        """Of the leaves `indices` (row j of `batch` each, or row at[j]), those whose rows
        (rows.py) or LP pieces (leaves.py) prove them, or whose region holds no input."""
        at = list(range(len(indices))) if at is None else at
        trees = [nodes[i].tree for i in indices]
        found = rows.proved_by_rows(self.net, batch, trees, at, case, self.margin)
        lp = [(nodes[i].tree, j, nodes[i].name) for i, j in zip(indices, at, strict=True)]
        found |= self.prover.lp_leaves(batch, lp, case)
        empty = [False] * len(indices) if crossed is None else crossed
        return {i for i, j, e in zip(indices, at, empty, strict=True) if j in found or e}

    def bounds(self, nodes, parents):
        return rb.batch_bounds(
            self.net,
            np.stack([n.lower for n in nodes]),
            np.stack([n.upper for n in nodes]),
            parents,
            [list(n.phases) for n in nodes],
        )

    def leaf_with_retries(self, n: _Node, region, empty, case) -> None:
        chain = (*n.chain, (n.lower, n.upper, n.phases, n.name))
        try:
            self.leaf(n.tree, region, empty, case, n.phases, n.name)
        except Invalid:
            # The search bounds regions in batches (which tightens some bounds more) and
            # most of them twice: the checker tries again with every neuron tightened,
            # twice: here, then down the whole path.
            try:
                region, empty = self.retighten(chain[-1:], n.parent, "leaf")
                self.leaf(n.tree, region, empty, case, n.phases, n.name)
            except Invalid:
                region, empty = self.retighten(chain, None, "path")
                self.leaf(n.tree, region, empty, case, n.phases, n.name)

    def retighten(self, chain, parent, mode: str):
        """Bounds down `chain` from `parent`, every neuron tightened, twice (kept for the
        other leaves below the same regions)."""
        for lo, hi, phases, name in chain:
            key = (name, mode)
            if key not in self.tightened:
                region, empty = rb.region_bounds(self.net, lo, hi, parent, list(phases), True)
                if not empty:
                    region, empty = rb.tighten_again(self.net, region, list(phases), True)
                self.tightened[key] = (region, empty)
            region, empty = self.tightened[key]
            if empty:
                return region, True
            parent = region.bounds
        return region, False

    def split(self, node, lo, hi, phases, name):
        children, kind = split_children(node, name)
        if kind == "input":
            (lo0, hi0), (lo1, hi1) = input_halves(node, lo, hi, name)
            return [
                (children[0], (lo0, hi0, phases), " 0"),
                (children[1], (lo1, hi1, phases), " 1"),
            ]
        if kind == "relu":
            k, j = self.neuron(node, name)
            return [
                (children[0], (lo, hi, (*phases, (k, j, True))), " +"),
                (children[1], (lo, hi, (*phases, (k, j, False))), " -"),
            ]
        raise Invalid(f"{name}: unknown split {kind!r}")

    def neuron(self, node, name) -> tuple[int, int]:
        return neuron(self.net, node, name)

    def leaf(self, node, region, empty, case, phases, name) -> None:
        kind = node["leaf"]
        if empty:
            return
        if kind == "smt-unsat":
            self.smt(region, case, phases, name)
            return
        if kind not in ("linear-bound", "linear-combination", "lp-phases", "empty-split"):
            raise Invalid(f"{name}: unknown evidence {kind!r}")
        if kind != "empty-split" and self.proved(node, region, case, phases, name):
            return
        # The search may have bounded this region twice (once ahead, once when taken up).
        again, empty = rb.tighten_again(self.net, region, list(phases))
        if empty:
            return
        if kind == "empty-split":
            raise Invalid(f"{name}: empty-split, but the region's bounds do not cross")
        if not self.proved(node, again, case, phases, name, final=True):
            raise Invalid(f"{name}: {kind} does not prove the region")

    def proved(self, node, region, case, phases, name, final=False) -> bool:
        proofs = node.get("proofs")
        if not isinstance(proofs, list) or len(proofs) != len(case.unsafe):
            raise Invalid(f"{name}: needs one proof per unsafe conjunction")
        for conjunction, proof in zip(case.unsafe, proofs, strict=True):
            if not isinstance(proof, dict):
                raise Invalid(f"{name}: a proof is not an object")
            if "row" in proof:
                ok = self.prover.row(conjunction, proof, region, phases, name)
            elif "mu" in proof and node["leaf"] == "linear-combination":
                ok = self.prover.combination(conjunction, proof, region, phases, name)
            elif node["leaf"] == "lp-phases":
                ok = self.prover.lp_tree(conjunction, proof, region, phases, name)
            else:
                raise Invalid(f"{name}: a proof of unknown shape")
            if not ok:
                return False
        return True

    # --- SMT leaves ----------------------------------------------------------------------

    def smt(self, region, case, phases, name) -> None:
        text = query(self.plain, region, case, self.margin, list(phases))
        answer = cvc5_answer(text)
        if answer != "unsat":
            raise Invalid(f"{name}: smt-unsat, but cvc5 answers {answer} on the region's query")
