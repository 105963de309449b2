"""Domain cuts at the root of a graph search: prove unsafe rows with the bound's own form.

CROWN's lower bound of an unsafe row a.y - b is a linear form L(x) = c.x + d valid on the
box; where L > 0 the row holds, so the rest of the search needs only P1 = box n {L <= 0}.
Bounded again over P1 (bounds/graph/cuts.py: every concretisation, intermediate bounds
included, over the box and the cuts; the box itself shrunk to P1's bounding box), the
relaxations tighten and give a new form L2 valid on P1; P2 = P1 n {L2 <= 0}, and so on,
until the row's bound over P_k is > 0 or P_k is empty (the row holds on the box) or the
bound stalls. Per unsafe conjunction (some row of it must clear), one domain.

Measured (benchmarks/cuts_gap.py, plain CROWN): rows whose form is positive at the box
centre close in a few cuts (digits Tanh MLP, eps 0.05, image 4: rows 6-8 from -3.93, -3.41,
-2.15 to > 0 in 11 cuts, 0.4 s; the instance stayed open after 60 s of branch and bound);
rows whose form is negative at the centre barely move (digits residual CNN image 8, worst
row -5.05 -> -5.05), as a cut then removes little but a corner of the box.
"""

from __future__ import annotations

import time

import numpy as np

from verifiers.bounds.graph.backsub import DeadlinePassed, _read_off, graph_bounds
from verifiers.bounds.graph.cuts import Cuts, combine, cut_offset
from verifiers.bounds.graph.network import GraphNetwork
from verifiers.bounds.rounding import proves

Box = tuple[np.ndarray, np.ndarray]

MAX_CUTS = 30
# Stop when the worst open conjunction gained less than STALL_GAIN over STALL_CUTS cuts:
# on the digits residual CNN the worst rows gain < 0.01 a cut from the first one on.
STALL_CUTS = 3
STALL_GAIN = 0.05


def prove_by_cuts(
    net: GraphNetwork,
    box: Box,
    rows: np.ndarray,
    rhs: np.ndarray,
    strict: np.ndarray,
    groups: np.ndarray,
    known: dict[str, Box] | None = None,
    deadline: float | None = None,
) -> bool:
    """True when, for every unsafe conjunction (rows of one `groups` value, A y <= b), the
    cuts show that no input of the box meets it. `known`: per tensor, bounds (1, n) valid
    on the box (intersected in on every domain)."""
    todo = np.unique(groups)
    n = box[0].size
    lower, upper = np.repeat(box[0][None], len(todo), 0), np.repeat(box[1][None], len(todo), 0)
    cuts = Cuts.none(len(todo), n)
    history: list[float] = []
    for k in range(MAX_CUTS + 1):
        if deadline is not None and time.monotonic() > deadline:
            return False
        try:
            if k > 0:
                lower, upper = bounding_box(lower, upper, cuts)
            many = None if known is None else {
                name: (np.repeat(lo, len(todo), 0), np.repeat(hi, len(todo), 0))
                for name, (lo, hi) in known.items()
            }  # fmt: skip
            with np.errstate(invalid="ignore", over="ignore"):
                bounds = graph_bounds(
                    net, lower, upper, rows, many, deadline=deadline, cuts=cuts
                )  # fmt: skip
        except DeadlinePassed:
            return False
        clearance = np.nan_to_num(bounds.objective_lower - rhs, nan=-np.inf, posinf=-np.inf)
        clearance = np.where(strict & (clearance == 0.0), np.finfo(float).tiny, clearance)
        mine = groups[None, :] == todo[:, None]  # (domains, rows): the domain's own rows
        best_row = np.argmax(np.where(mine, clearance, -np.inf), axis=1)
        score = clearance[np.arange(len(todo)), best_row]
        done = proves(score) | np.any(lower > upper, axis=1) | bounds.empty
        if done.all():
            return True
        history.append(float(np.min(score[~done])))
        if k == MAX_CUTS or _stalled(history):
            return False
        keep = np.flatnonzero(~done)
        todo, lower, upper = todo[keep], lower[keep], upper[keep]
        picks = best_row[keep]
        normals = bounds.objective_coeffs[keep, picks]
        offsets = cut_offset(bounds.objective_offset[keep, picks], 0.0, rhs[picks])
        cuts = Cuts(cuts.normals[keep], cuts.offsets[keep]).add(normals, offsets)
    return False


def _stalled(history: list[float]) -> bool:
    return len(history) > STALL_CUTS and history[-1] - history[-1 - STALL_CUTS] < STALL_GAIN


def bounding_box(lower: np.ndarray, upper: np.ndarray, cuts: Cuts) -> Box:
    """The box shrunk to sound bounds of each x_i over box n cuts (crossed where empty)."""
    batch, n = lower.shape
    eye = np.concatenate([np.eye(n), -np.eye(n)])
    rows = np.array(np.broadcast_to(eye[None], (batch, 2 * n, n)))
    zeros = np.zeros((batch, 2 * n))
    combined, const, slack = combine(rows, zeros, zeros, (lower, upper), cuts)
    value, _, _ = _read_off(combined, const, slack, (lower, upper))
    return np.maximum(lower, value[:, :n]), np.minimum(upper, -value[:, n:])
