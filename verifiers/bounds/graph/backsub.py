"""CROWN-style bounds over a DAG of bound ops, on many boxes at once.

Forward, in topological order, every tensor gets interval bounds; the inputs of every
non-linear op are first tightened by back-substitution (only the entries that matter: for
piecewise-linear ops, those with a breakpoint inside their interval), and the op's
relaxation is taken on the tightened bounds. Back-substitution walks the graph backwards
from a target tensor: a tensor's coefficients are complete once all its consumers (later
in topological order) have passed theirs back, so residual Adds, Concats of branches and
tensors with several consumers need nothing special; coefficients meeting at one tensor
are summed, and the sum's rounding is added to the slack.

Soundness in floating point: as in bounds/linear.py, every step adds to a running slack a
bound on what float64 rounding (and the ops' composition error) may have changed, and the
lower bound read off at the input box subtracts it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from verifiers.bounds.graph.cuts import Cuts, combine
from verifiers.bounds.graph.network import GraphNetwork
from verifiers.bounds.graph.ops.base import Box, Relaxed, magnitude
from verifiers.bounds.graph.ops.linear import Alias, Linear
from verifiers.bounds.graph.ops.piecewise import PiecewiseLinear
from verifiers.bounds.graph.ops.sshaped import SShaped
from verifiers.bounds.rounding import UNIT_ROUNDOFF, gamma, widen_down

# Bounds of a tensor (name) on each box, for the entries (batch, n) marked: other
# entries may be anything valid (the box as it is, or infinite).
Tightener = Callable[[GraphNetwork, "GraphBounds", str, np.ndarray], Box]

# Coefficient arrays of at most this many float64 entries per back-substitution pass.
CHUNK_ENTRIES = 1 << 23


class DeadlinePassed(Exception):
    """The bound computation stopped at its deadline: nothing was bounded."""


@dataclass
class GraphBounds:
    boxes: dict[str, Box]
    relaxed: dict[str, Relaxed]
    objective_lower: np.ndarray | None = None  # (batch, m)
    objective_coeffs: np.ndarray | None = None  # (batch, m, n_inputs)
    objective_minimizer: np.ndarray | None = None  # (batch, m, n_inputs)
    node_coeffs: dict[str, np.ndarray] = field(default_factory=dict)  # at non-linear outputs
    # Half-spaces that bound each box's domain further (cuts.py): every read-off at the
    # input minimises over the box and these, and the bounds hold on that part only.
    cuts: Cuts | None = None
    # (batch, m): d such that  rows . output >= objective_coeffs . x + d  on the domain,
    # rounded down (the next cut's offset, search/graph_cuts.py).
    objective_offset: np.ndarray | None = None

    @property
    def empty(self) -> np.ndarray:
        """Boxes on which some tensor's sound bounds cross: no input reaches them."""
        crossed = [np.any(lo > hi, axis=1) for lo, hi in self.boxes.values()]
        return np.any(np.stack(crossed), axis=0)


def is_nonlinear(op) -> bool:
    return not isinstance(op, Alias | Linear)


def graph_bounds(
    net: GraphNetwork,
    lower: np.ndarray,
    upper: np.ndarray,
    objective: np.ndarray | None = None,
    known: dict[str, Box] | None = None,
    cases: dict[str, np.ndarray] | None = None,
    deadline: float | None = None,
    reuse: int = 0,
    tighten: Tightener | None = None,
    cuts: Cuts | None = None,
) -> GraphBounds:
    """Bounds over boxes (batch, n_inputs); `objective` (m, n_out) rows are minimised over the
    bounded output. `known`: per tensor, bounds already valid on each box (intersected in).
    `cases`: per Max/MaxPool output, the candidates (batch, n_out, K) the max is taken over
    on each region (branch and bound's case splits). Past `deadline` (time.monotonic), it
    raises DeadlinePassed between two ops. `reuse`: the outputs of the first `reuse` nodes
    take their `known` boxes as they are, already refined (branch and bound: a split
    downstream of them leaves their bounds as the parent region's, which `known` holds).
    `tighten`: called on every refined tensor with the entries refined, it returns bounds
    of that tensor valid on each box (optimised intermediate bounds, alpha.py), which are
    intersected in before the consumer's relaxation is taken. `cuts`: half-spaces per box
    (cuts.py); every bound then holds on the part of the box that meets them."""
    bounds = GraphBounds({net.input_name: (lower, upper)}, {}, cuts=cuts)
    # Per refined tensor, its entries as tight as back-substitution makes them (True: all).
    tight: dict[str, np.ndarray | bool] = {net.input_name: True}
    for index, node in enumerate(net.nodes):
        if deadline is not None and time.monotonic() > deadline:
            raise DeadlinePassed
        if index < reuse and known is not None and node.output in known:
            _reuse(bounds, node, known, cases)
            tight[node.output] = True
            continue
        if is_nonlinear(node.op):
            for name in node.inputs:
                if name not in tight:
                    done = _already_tight(net, name, tight)
                    if done is True:
                        tight[name] = True
                        continue
                    bounds.boxes[name], refined = _refine(
                        net, bounds, name, node.op, deadline, done
                    )
                    if tighten is not None and np.any(refined & ~done):
                        bounds.boxes[name] = _intersect(
                            bounds.boxes[name], tighten(net, bounds, name, refined & ~done)
                        )
                    tight[name] = refined
        boxes = [bounds.boxes[name] for name in node.inputs]
        extra = (cases[node.output],) if cases and node.output in cases else ()
        box = node.op.interval(boxes, *extra)
        if known is not None and node.output in known:
            box = _intersect(box, known[node.output])
        bounds.boxes[node.output] = box
        bounds.relaxed[node.output] = node.op.relax(boxes, *extra)
    if objective is not None:
        rows = np.broadcast_to(objective, (lower.shape[0], *objective.shape[-2:]))
        forms: dict[str, np.ndarray] = {}
        value, coeffs, corner = back_substitute(
            net, bounds, net.bound_output, np.array(rows, dtype=np.float64), bounds.node_coeffs,
            deadline=deadline, forms=forms,
        )  # fmt: skip
        bounds.objective_lower, bounds.objective_coeffs = value, coeffs
        bounds.objective_offset = forms["offset"]
        bounds.objective_minimizer = corner
    return bounds


def _intersect(box: Box, other: Box) -> Box:
    """Both boxes' bounds at once; a NaN in `other` never replaces a bound."""
    return _finite_max(box[0], other[0]), _finite_min(box[1], other[1])


def _reuse(bounds: GraphBounds, node, known: dict[str, Box], cases) -> None:
    """The node's output box is the `known` one (valid on every box: sound whatever it is),
    and its relaxation is taken on its inputs' boxes as graph_bounds would."""
    boxes = [bounds.boxes[name] for name in node.inputs]
    extra = (cases[node.output],) if cases and node.output in cases else ()
    bounds.boxes[node.output] = known[node.output]
    bounds.relaxed[node.output] = node.op.relax(boxes, *extra)


def _already_tight(net: GraphNetwork, name: str, tight: dict) -> np.ndarray | bool:
    """Entries of tensor `name` that back-substitution cannot tighten (True: all of them).
    For y = f(z) elementwise (a ReLU-family or S-shaped op), those where z's entry was
    refined: y's interval bound is then f's exact range over z's box, and the row e_j on y
    meets a line a z_j + b below f and continues as z_j's refinement did, scaled by a: a
    bound of at most the line's minimum over z_j's box, itself at most f's. The others (a
    ReLU's stable inputs, which its own refinement skips) may gain. On the digits residual
    CNN this spares most of the back-substitution into the MaxPool after the last ReLU."""
    index = net.producer_index.get(name)
    if index is None or not isinstance(net.nodes[index].op, PiecewiseLinear | SShaped):
        return False
    return tight.get(net.nodes[index].inputs[0], False)


def _refine(
    net: GraphNetwork,
    bounds: GraphBounds,
    name: str,
    consumer,
    deadline: float | None = None,
    done: np.ndarray | bool = False,
) -> tuple[Box, np.ndarray]:
    """Tighter bounds of tensor `name` by back-substitution, for the entries its consumer's
    relaxation depends on and that are not `done`; and the entries now refined or done."""
    low, high = bounds.boxes[name]
    if isinstance(consumer, PiecewiseLinear):
        targets = consumer.unstable((low, high))
    else:
        targets = low < high
    targets = targets & ~done
    count = int(targets.sum(axis=1).max(initial=0))
    if count == 0:
        return (low, high), targets | done
    batch, n = low.shape
    widest = max(net.n_inputs, max(net.sizes[t] for t in bounds.boxes))
    per_pass = max(1, CHUNK_ENTRIES // (batch * widest * 2))
    neurons = np.argsort(~targets, axis=1, kind="stable")[:, :count]
    low, high = low.copy(), high.copy()
    picks = np.arange(batch)[:, None]
    for start in range(0, count, per_pass):
        chosen = neurons[:, start : start + per_pass]
        k = chosen.shape[1]
        rows = np.zeros((batch, 2 * k, n))
        slots = np.arange(k)[None, :]
        rows[picks, slots, chosen] = 1.0
        rows[picks, k + slots, chosen] = -1.0
        value, _, _ = back_substitute(net, bounds, name, rows, deadline=deadline)
        old_low = np.take_along_axis(low, chosen, axis=1)
        old_high = np.take_along_axis(high, chosen, axis=1)
        np.put_along_axis(low, chosen, _finite_max(old_low, value[:, :k]), axis=1)
        np.put_along_axis(high, chosen, _finite_min(old_high, -value[:, k:]), axis=1)
    return (low, high), targets | done


def _finite_max(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """The tighter lower bound; a NaN from back-substitution never replaces a bound."""
    return np.where(np.isnan(new), old, np.maximum(old, new))


def _finite_min(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(new), old, np.minimum(old, new))


def back_substitute(
    net: GraphNetwork,
    bounds: GraphBounds,
    target: str,
    rows: np.ndarray,
    record: dict[str, np.ndarray] | None = None,
    seeds: dict[str, np.ndarray] | None = None,
    deadline: float | None = None,
    forms: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower bounds of rows (batch, m, n_target) . target over the boxes (and the bounds'
    cuts), the coefficients on the input and the minimising box corner (with cuts, of
    their Lagrangian combination). `forms` receives "offset", the constant minus the slack
    rounded down: rows . target >= coefficients . x + offset on the domain. `record`
    receives the coefficients met at each non-linear op's output. `seeds` (per tensor upstream of the target, (batch, m, n))
    adds seeds[t] . t to every row's objective (split multipliers, search/graph_beta.py).
    Past `deadline`, it raises DeadlinePassed between two ops."""
    batch, m = rows.shape[:2]
    coeffs = {**(seeds or {}), target: rows}
    const, slack = np.zeros((batch, m)), np.zeros((batch, m))
    if seeds and target in seeds:  # the sum rounds: its slack as where coefficients meet
        summed = np.abs(rows) + np.abs(seeds[target])
        mag = magnitude(bounds.boxes[target])
        slack = slack + 2.0 * UNIT_ROUNDOFF * np.einsum("bmn,bn->bm", summed, mag)
        coeffs[target] = rows + seeds[target]
    stop = net.producer_index.get(target, -1)
    for node in reversed(net.nodes[: stop + 1]):
        c = coeffs.pop(node.output, None)
        if c is None:
            continue
        if deadline is not None and time.monotonic() > deadline:
            raise DeadlinePassed
        if record is not None and is_nonlinear(node.op):
            record[node.output] = c
        parts, add, extra = bounds.relaxed[node.output].back(c)
        slack = slack + extra + 2.0 * UNIT_ROUNDOFF * (np.abs(const) + np.abs(add))
        const = const + add
        for name, part in zip(node.inputs, parts, strict=True):
            if name in coeffs:
                summed = np.abs(coeffs[name]) + np.abs(part)
                mag = magnitude(bounds.boxes[name])
                slack = slack + 2.0 * UNIT_ROUNDOFF * np.einsum("bmn,bn->bm", summed, mag)
                coeffs[name] = coeffs[name] + part
            else:
                coeffs[name] = part
    # A seed the walk never reached would silently drop its term from the bound.
    if not set(coeffs) <= {net.input_name}:
        raise ValueError(f"coefficients never passed back to the input: {sorted(coeffs)}")
    c = coeffs.get(net.input_name, np.zeros((batch, m, net.n_inputs)))
    if forms is not None:  # the slack widened as _read_off does; two roundings within u
        rounding = 4.0 * UNIT_ROUNDOFF * (np.abs(const) + slack) + 1e-300
        offset = const - slack * (1.0 + 1e-6) - rounding
        forms["offset"] = np.where(np.isfinite(offset), offset, -np.inf)
    box = bounds.boxes[net.input_name]
    if bounds.cuts is None or bounds.cuts.normals.shape[1] == 0:
        return (*_read_off(c, const, slack, box),)
    combined, const, slack = combine(c, const, slack, box, bounds.cuts)
    value, _, corner = _read_off(combined, const, slack, box)
    return value, c, corner


def _read_off(c: np.ndarray, const: np.ndarray, slack: np.ndarray, box: Box):
    lower, upper = box
    pos, neg = np.maximum(c, 0.0), np.minimum(c, 0.0)
    linear = np.einsum("bmn,bn->bm", pos, lower) + np.einsum("bmn,bn->bm", neg, upper)
    value = linear + const
    slack = slack * (1.0 + 1e-6) + gamma(lower.shape[-1] + 1) * np.einsum(
        "bmn,bn->bm", np.abs(c), magnitude(box)
    )
    slack = slack + 4.0 * UNIT_ROUNDOFF * (np.abs(linear) + np.abs(const) + np.abs(value))
    corner = np.where(c >= 0.0, lower[:, None, :], upper[:, None, :])
    return widen_down(value, slack), c, corner
