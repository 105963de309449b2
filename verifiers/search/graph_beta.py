"""Split multipliers (beta-CROWN) for the graph search: element splits made to count.

An element split asserts an interval on one element z of an elementwise op's input. The
relaxations downstream use it, but back-substitution minimises over the whole input box,
where z leaves the interval. The Lagrangian argument brings the constraint in: with
lo <= z <= hi sound on the region (its `boxes`, which hold the split), every real gamma
gives  gamma z - max(gamma lo, gamma hi) <= 0  on the region, so

    objective >= objective + gamma z - max(gamma lo, gamma hi)  on the region,

and a sound lower bound of `objective + gamma z` (back-substitution seeded with gamma at z)
minus the constant (rounded up) is a sound lower bound of the objective. One signed gamma
per split element and row: gamma > 0 uses the element's upper bound, gamma < 0 its lower.

gamma is chosen by a few sign steps of supergradient ascent: the bound's slope in gamma is
z(x*) - hi (or - lo) at the bound's minimising corner x*, evaluated on the network; that is
exact when z is affine in the input and only a heuristic deeper in, which costs nothing in
soundness: every gamma gives a valid bound, and each row keeps the best one computed.
"""

from __future__ import annotations

import time

import numpy as np

from verifiers.bounds.graph.backsub import GraphBounds, back_substitute
from verifiers.bounds.graph.network import GraphNetwork
from verifiers.bounds.graph.ops.base import Box
from verifiers.bounds.graph.ops.sshaped import SShaped
from verifiers.bounds.rounding import gamma as gamma_n
from verifiers.bounds.rounding import widen_down

STEPS = 8
SHRINK = 0.6


def split_elements(splits_per_region: list[tuple]) -> list[tuple[int, str, int]]:
    """(region, tensor, element) of every split element, each once per region."""
    seen: dict[tuple[int, str, int], None] = {}
    for i, splits in enumerate(splits_per_region):
        for name, j, *_ in splits:
            seen[(i, name, int(j))] = None
    return list(seen)


def refine(
    net: GraphNetwork,
    bounds: GraphBounds,
    splits_per_region: list[tuple],
    deadline: float | None = None,
) -> dict[str, Box]:
    """Tighter boxes, with the multipliers, for the inputs of S-shaped ops that lie
    downstream of some split element (the splits upstream constrain them too)."""
    out: dict[str, Box] = {}
    for node in net.nodes:
        name = node.inputs[0]
        if not isinstance(node.op, SShaped):
            continue
        above = _ancestors(net, name)  # order alone is not enough: parallel branches
        upstream = [tuple(sp for sp in splits if sp[0] in above) for splits in splits_per_region]
        if not any(upstream):
            continue
        low, high = bounds.boxes[name]
        n = low.shape[1]
        rows = np.concatenate([np.eye(n), -np.eye(n)])
        value, _ = tighten(net, bounds, rows, upstream, deadline, target=name)
        out[name] = (np.maximum(low, value[:, :n]), np.minimum(high, -value[:, n:]))
    return out


def _ancestors(net: GraphNetwork, name: str) -> set[str]:
    """The tensors `name` is computed from (not itself)."""
    found: set[str] = set()
    todo = [name]
    while todo:
        index = net.producer_index.get(todo.pop())
        if index is None:
            continue
        for parent in net.nodes[index].inputs:
            if parent not in found:
                found.add(parent)
                todo.append(parent)
    return found


def tighten(
    net: GraphNetwork,
    bounds: GraphBounds,
    rows: np.ndarray,
    splits_per_region: list[tuple],
    deadline: float | None = None,
    target: str | None = None,
    warm: list[dict] | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Per region and row (batch, m): the best sound lower bound of rows . target (the
    bounded output by default) found, never below the bound without multipliers; and per
    region the multipliers that gave it, {(tensor, element): gamma per row}, to start a
    child region's from (`warm`, the parent's)."""
    target = net.bound_output if target is None else target
    batch = bounds.boxes[net.input_name][0].shape[0]
    rows = np.broadcast_to(rows, (batch, *rows.shape[-2:])).astype(np.float64)
    if target == net.bound_output:
        best = bounds.objective_lower.copy()
    else:
        best, _, _ = back_substitute(net, bounds, target, rows)
    elements = split_elements(splits_per_region)
    if not elements:
        return best, [{} for _ in range(batch)]
    regions = np.array([i for i, _, _ in elements])
    names = [name for _, name, _ in elements]
    index = np.array([j for _, _, j in elements])
    lo = np.array([bounds.boxes[n][0][i, j] for i, n, j in elements])
    hi = np.array([bounds.boxes[n][1][i, j] for i, n, j in elements])
    m = best.shape[1]
    warm = warm or [{}] * batch
    zero = np.zeros(m)
    gammas = np.stack([warm[i].get((n, j), zero) for i, n, j in elements])
    gammas = np.nan_to_num(gammas, nan=0.0, posinf=0.0, neginf=0.0)
    chosen = np.zeros_like(gammas)
    step = _initial_step(net, bounds, elements, m)
    for _ in range(STEPS):
        if deadline is not None and time.monotonic() > deadline:
            break
        seeds = _seeds(net, bounds, names, regions, index, gammas)
        value, _, corner = back_substitute(net, bounds, target, rows, seeds=seeds)
        bound = _minus_constant(value, gammas, lo, hi, regions, batch)
        chosen = np.where((bound > best)[regions], gammas, chosen)
        best = np.maximum(best, bound)
        z = _at_corners(net, corner, names, regions, index)  # (K, m)
        above, below = z - hi[:, None], z - lo[:, None]
        at_zero = np.maximum(above, 0.0) + np.minimum(below, 0.0)
        slope = np.where(gammas > 0, above, np.where(gammas < 0, below, at_zero))
        gammas = gammas + step * np.sign(np.nan_to_num(slope))
        step = step * SHRINK
    # The children's warm start, and the numbers of a proved region's certificate (kept in
    # float64: they are the ones that gave its bound).
    found: list[dict] = [{} for _ in range(batch)]
    for k, (i, n, j) in enumerate(elements):
        found[i][(n, j)] = chosen[k]
    return best, found


def _seeds(net, bounds, names, regions, index, gammas) -> dict[str, np.ndarray]:
    """Per tensor (batch, m, n): gamma at each split element, 0 elsewhere (exact: every
    (region, element) appears once)."""
    batch = bounds.boxes[net.input_name][0].shape[0]
    seeds: dict[str, np.ndarray] = {}
    for k, name in enumerate(names):
        if name not in seeds:
            seeds[name] = np.zeros((batch, gammas.shape[1], net.sizes[name]))
        seeds[name][regions[k], :, index[k]] = gammas[k]
    return seeds


def _minus_constant(value, gammas, lo, hi, regions, batch) -> np.ndarray:
    """value - sum_k max(gamma_k lo_k, gamma_k hi_k) per region and row, rounded down:
    each product and the sum round, within gamma(K + 2) of the terms."""
    with np.errstate(invalid="ignore", over="ignore"):
        # gamma = 0 contributes exactly 0 (no 0 * inf from an unbounded element).
        terms = np.where(gammas == 0, 0.0, np.maximum(gammas * lo[:, None], gammas * hi[:, None]))
        size = np.abs(gammas) * np.maximum(np.abs(lo), np.abs(hi))[:, None]
    constant = np.zeros_like(value)
    magnitude = np.zeros_like(value)
    count = np.bincount(regions, minlength=batch)
    np.add.at(constant, regions, terms)
    np.add.at(magnitude, regions, size)
    with np.errstate(invalid="ignore", over="ignore"):
        result = value - constant
        depth = np.array([gamma_n(int(c) + 2) for c in count])[:, None]
        slack = depth * (magnitude + np.abs(value) + np.abs(result))
    return widen_down(result, slack)


def _at_corners(net, corner, names, regions, index) -> np.ndarray:
    """z_k at the minimising corner of its region, per row: (K, m)."""
    batch, m, n = corner.shape
    with np.errstate(all="ignore"):
        values = net.values(corner.reshape(-1, n))
    out = np.empty((len(names), m))
    for k, name in enumerate(names):
        out[k] = values[name].reshape(batch, m, -1)[regions[k], :, index[k]]
    return out


def _initial_step(net, bounds, elements, m) -> np.ndarray:
    """Half the largest coefficient met at the element's consumer's output, per row: the
    scale on which gamma matters (1 where none was recorded)."""
    step = np.ones((len(elements), m))
    consumers = {n.inputs[0]: n.output for n in net.nodes if len(n.inputs) == 1}
    for k, (i, name, j) in enumerate(elements):
        coeffs = bounds.node_coeffs.get(consumers.get(name, ""))
        if coeffs is not None:  # recorded for the objective's rows: else their largest
            scale = np.abs(coeffs[i, :, j])
            step[k] = 0.5 * (scale if len(scale) == m else scale.max()) + 1e-6
    return np.nan_to_num(step, nan=1.0, posinf=1.0)
