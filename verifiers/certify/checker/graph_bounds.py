"""Bounds of a region of the graph checker, in exact dyadic arithmetic.

A lower bound of c . t (t a tensor) rests on the Lagrangian identity over the DAG: give each
node v with output o a multiplier lambda_o (the sum of what o's consumers pass back, c at
t) and let it pass mu_{v,i} back to each input i; then

    c . t = sum_v [lambda_o . f_v(inputs) - sum_i mu_{v,i} . x_i] + mu_input . x,

whatever the mu are. Each node's bracket is bounded below on the region from its inputs'
boxes alone: a linear node passes mu = W_i^T lambda rounded to 46 bits, and its bracket is
lambda . b plus the rounding residual (W_i^T lambda - mu) . x_i, minimised exactly over
x_i's box, minus the loader's composition error |lambda| err |x_i|; a non-linear node passes
its lines' slopes (graph_lines.Relax) and its bracket is at least the lines' intercepts.
Every product and sum is exact (integers times powers of two, exact.py); only the final
bounds of a tensor are rounded, outward, to floats.

A region's boxes: per tensor in topological order, the interval bound from its inputs'
boxes, intersected with the parent region's box (valid on a sub-region) and the region's
interval splits; the inputs of every non-linear node are first tightened by
back-substitution (the entries its lines depend on). Crossing bounds: the region is empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from verifiers.certify.checker import exact
from verifiers.certify.checker import graph_lines as gl
from verifiers.certify.checker.graph_net import Net, Node

NONLINEAR = ("piecewise", "sshaped", "max")
Rows = tuple[np.ndarray, np.ndarray]  # (ints (m, n), exps (m,)): exact dyadic rows


@dataclass
class Region:
    boxes: dict[str, tuple[np.ndarray, np.ndarray]]
    relax: dict[str, gl.Relax]
    # Per linear node: its composition error per output on the boxes its inputs had when
    # it was bounded (they only shrink later: still an upper bound), or None.
    errors: dict[str, np.ndarray | None] = field(default_factory=dict)


class Matrices:
    """Exact right factors of the network's linear nodes, built once."""

    def __init__(self) -> None:
        self.cache: dict[tuple[int, str], exact.Matrix] = {}

    def get(self, node: Node, key: str, build) -> exact.Matrix:
        k = (id(node), key)
        if k not in self.cache:
            self.cache[k] = exact.Matrix.of_floats(build())
        return self.cache[k]


def region_bounds(net: Net, mats: Matrices, lower, upper, parent, splits, allowed, every=False):
    """The region's boxes and lines, or None when its bounds cross (it holds no input).
    `splits`: (tensor, index, at, side) constraints; `allowed`: per max output, the
    candidates (n_out, K) the max is taken over here; `every`: tighten every entry of a
    non-linear node's inputs, not only those its lines depend on (the search tightens
    more than those when it bounds regions in batches)."""
    region = Region({}, {})
    box = _clamp((lower.copy(), upper.copy()), net.input_name, parent, splits)
    region.boxes[net.input_name] = box
    refined = {net.input_name}
    for node in net.nodes:
        if node.kind in NONLINEAR:
            for name in node.inputs:
                if name not in refined:
                    refined.add(name)
                    box = refine(net, mats, region, name, node, every)
                    box = _clamp(box, name, parent, splits)
                    if _crossed(box):
                        return None
                    region.boxes[name] = box
        boxes = [region.boxes[name] for name in node.inputs]
        if node.kind == "linear":
            region.errors[node.output] = _error_vector(node, boxes)
        found = _node_bounds(node, mats, boxes, allowed, region.errors.get(node.output))
        if found is None:
            return None
        box, relax = found
        box = _clamp(box, node.output, parent, splits)
        if _crossed(box):
            return None
        region.boxes[node.output] = box
        if relax is not None:
            region.relax[node.output] = relax
    return region


def _crossed(box) -> bool:
    return bool(np.any(box[0] > box[1]))


def _clamp(box, name, parent, splits):
    lo, hi = box
    if parent is not None and name in parent:
        lo, hi = np.maximum(lo, parent[name][0]), np.minimum(hi, parent[name][1])
    for tensor, j, at, side in splits:
        if tensor == name:
            lo, hi = lo.copy(), hi.copy()
            if side == 0:
                hi[j] = min(hi[j], at)
            else:
                lo[j] = max(lo[j], at)
    return lo, hi


def _node_bounds(node: Node, mats: Matrices, boxes, allowed, error=None):
    if node.kind == "alias":
        return boxes[0], None
    if node.kind == "linear":
        return _affine_range(node, mats, boxes, error), None
    if node.kind == "piecewise":
        return gl.piecewise(node, boxes[0])
    if node.kind == "sshaped":
        return gl.sshaped(node, boxes[0])
    mask = allowed.get(node.output)
    if mask is None:
        mask = initial_allowed(node)
    return gl.maxes(node, boxes, mask)


def initial_allowed(node: Node) -> np.ndarray:
    """Every candidate that exists (MaxPool padding is none)."""
    parts = [index >= 0 for index in node.index]
    if node.const is not None:
        parts.append(np.ones((len(node.index[0]), 1), dtype=bool))
    return np.concatenate(parts, axis=1)


def _row(values: np.ndarray) -> Rows:
    ints, e = exact.from_floats(values[None, :])
    return ints, np.array([e], dtype=np.int64)


def _affine_range(node: Node, mats: Matrices, boxes, slack):
    """Exact W+ l + W- u + b (and the upper end), widened by the composition error."""
    ends = []
    for upper in (False, True):
        acc = exact.from_floats(node.bias[None, :])
        total = (acc[0], np.array([acc[1]], dtype=np.int64))
        for i, ((lo, hi), w) in enumerate(zip(boxes, node.weights, strict=True)):
            for part, vec in (("pos", hi if upper else lo), ("neg", lo if upper else hi)):
                sel = np.maximum(w, 0.0) if part == "pos" else np.minimum(w, 0.0)
                m = mats.get(node, f"{part}T{i}", lambda sel=sel: sel.T)
                total = exact.add(*total, *exact.matmul(*_row(vec), m))
        if slack is not None:
            neg = _row(-slack if not upper else slack)
            total = exact.add(*total, neg[0], neg[1])
        ends.append(exact.round_rows(total[0][0], np.full(total[0].shape[1], total[1][0]), upper))
    return ends[0], ends[1]


def _error_vector(node: Node, boxes) -> np.ndarray | None:
    """Per output, an upper bound (floats) of |W_exact - W| |x| + |b_exact - b|."""
    if not (any(np.any(e) for e in node.errs) or np.any(node.bias_err)):
        return None
    total = node.bias_err.copy()
    for (lo, hi), err in zip(boxes, node.errs, strict=True):
        mag = np.maximum(np.abs(lo), np.abs(hi))
        ints, exps = exact.matmul(*_row(mag), exact.Matrix.of_floats(err.T))
        part = exact.round_rows(ints[0], np.full(ints.shape[1], exps[0]), True)
        total = np.nextafter(total + part, np.inf)  # the sum rounds by half an ulp at most
    return total


def refine(net: Net, mats: Matrices, region: Region, name: str, consumer: Node, every=False):
    """Tighter bounds of tensor `name` by back-substitution, on the entries the consumer's
    lines depend on (`every`: on all entries)."""
    lo, hi = region.boxes[name]
    targets = lo < hi
    if consumer.kind == "piecewise" and not every:
        inside = [(lo < p) & (p < hi) for p in consumer.breakpoints]
        targets = np.any(inside, axis=0) if inside else np.zeros_like(targets)
    chosen = np.flatnonzero(targets)
    if len(chosen) == 0:
        return lo, hi
    k = len(chosen)
    rows = np.zeros((2 * k, len(lo)), dtype=np.int64)
    rows[np.arange(k), chosen] = 1
    rows[k + np.arange(k), chosen] = -1
    ints, exps = lower_bounds(net, mats, region, name, (rows, np.zeros(2 * k, dtype=np.int64)))
    values = exact.round_rows(ints, exps, False)
    lo, hi = lo.copy(), hi.copy()
    lo[chosen] = np.maximum(lo[chosen], values[:k])
    hi[chosen] = np.minimum(hi[chosen], -values[k:])
    return lo, hi


def lower_bounds(
    net: Net, mats: Matrices, region: Region, target: str, rows: Rows, seeds=None
) -> Rows:
    """Exact lower bounds (ints (m,), exps (m,)) of rows . target over the region; with
    `seeds` (per tensor computed no later than target, rows (m, its size)), of
    rows . target + sum_t seeds_t . t (the caller accounts for the seeds' terms)."""
    m = rows[0].shape[0]
    lam: dict[str, Rows] = {target: rows}
    for name, seed in (seeds or {}).items():
        lam[name] = _compact(*exact.add(*lam[name], *seed)) if name in lam else seed
    const: Rows = (np.zeros(m, dtype=object), rows[1].copy())
    stop = net.producer(target)
    for node in reversed(net.nodes[: stop + 1]):
        c = lam.pop(node.output, None)
        if c is None:
            continue
        parts, add = _back(node, mats, region, c)
        const = exact.add(*const, *add)
        for name, part in zip(node.inputs, parts, strict=True):
            part, residual = _rounded(part, region.boxes[name])
            const = exact.add(*const, *residual)
            lam[name] = _compact(*exact.add(*lam[name], *part)) if name in lam else part
    x = lam.pop(net.input_name, None)
    if lam:  # a seed no node passed back: its term would be left out of the bound
        raise ValueError(f"no back-substitution reaches {sorted(lam)} from {target}")
    if x is not None:
        const = exact.add(*const, *box_minimum(x, region.boxes[net.input_name]))
    return const


def box_minimum(rows: Rows, box) -> Rows:
    """min over x in the box of each row . x, exactly."""
    ints, exps = rows
    pos, neg = np.where(ints > 0, ints, 0), np.where(ints < 0, ints, 0)
    low = exact.matmul(pos, exps, exact.Matrix.of_floats(box[0][:, None]))
    high = exact.matmul(neg, exps, exact.Matrix.of_floats(box[1][:, None]))
    total, e = exact.add(low[0][:, 0], low[1], high[0][:, 0], high[1])
    return total, e


def _rounded(part: Rows, box) -> tuple[Rows, Rows]:
    """The multiplier rounded to 46 bits per row, and the exact minimum of what rounding
    left out (part - rounded) . x over x's box."""
    ints, exps = part
    with np.errstate(over="ignore", under="ignore"):
        approx = np.ldexp(ints.astype(np.float64), exps[:, None].astype(np.int64))
    mu = exact.fixed(approx)
    left = _compact(*exact.add(ints, exps, -mu[0].astype(object), mu[1]))
    if not np.any(left[0] != 0):
        return mu, (np.zeros(len(exps), dtype=object), exps.copy())
    return mu, box_minimum(left, box)


def _compact(ints: np.ndarray, exps: np.ndarray) -> Rows:
    """The same rows, as int64 when every integer fits (exact products of int64 limbs are
    much faster than of Python integers)."""
    if ints.dtype == object and ints.size and int(np.max(np.abs(ints))) < 2**62:
        return ints.astype(np.int64), exps
    return ints, exps


def _back(node: Node, mats: Matrices, region: Region, c: Rows):
    """What node passes back to each input (exact) and the constant part of its bracket."""
    ints, exps = c
    if node.kind == "alias":
        return [c], (np.zeros(len(exps), dtype=object), exps.copy())
    if node.kind == "linear":
        return _back_linear(node, mats, region, c)
    relax = region.relax[node.output]
    pos, neg = np.where(ints > 0, ints, 0), np.where(ints < 0, ints, 0)
    const = exact.add(
        *_column(exact.matmul(pos, exps, exact.Matrix.of_floats(relax.lower_icpt[:, None]))),
        *_column(exact.matmul(neg, exps, exact.Matrix.of_floats(relax.upper_icpt[:, None]))),
    )
    parts = []
    for lower, upper in zip(relax.lower, relax.upper, strict=True):
        if lower.ndim == 1:  # elementwise: multiply the columns exactly (Python ints)
            (l_ints, u_ints), e = _common(lower, upper)
            obj_pos, obj_neg = pos.astype(object), neg.astype(object)
            parts.append((obj_pos * l_ints + obj_neg * u_ints, exps + e))
        else:
            parts.append(
                exact.add(
                    *exact.matmul(pos, exps, exact.Matrix.of_floats(lower)),
                    *exact.matmul(neg, exps, exact.Matrix.of_floats(upper)),
                )
            )
    return parts, const


def _back_linear(node: Node, mats: Matrices, region: Region, c: Rows):
    ints, exps = c
    parts = [
        exact.matmul(ints, exps, mats.get(node, f"W{i}", lambda w=w: w))
        for i, w in enumerate(node.weights)
    ]
    const = _column(exact.matmul(ints, exps, mats.get(node, "b", lambda: node.bias[:, None])))
    slack = region.errors[node.output]
    if slack is not None:
        obj = ints if ints.dtype == object else ints.astype(object)
        cost = _column(exact.matmul(np.abs(obj), exps, exact.Matrix.of_floats(slack[:, None])))
        const = exact.add(*const, -cost[0], cost[1])
    return parts, const


def _column(product: Rows) -> Rows:
    return product[0][:, 0], product[1]


def _common(a: np.ndarray, b: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], int]:
    ints, e = exact.from_floats(np.concatenate([a, b]))
    ints = ints.astype(object)
    return (ints[: len(a)], ints[len(a) :]), e
