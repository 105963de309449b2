"""Where to split an open region of the graph search (graph_bab.py): the input box along
one dimension, the input interval of one element of an elementwise non-linear op, or a
Max/MaxPool output's case. A mixin of GraphCaseSearch: it reads the search's network (`net`)
and root box (`free`, `root_width`) and the region's bounds (GraphBounds)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from verifiers.bounds.graph.backsub import GraphBounds
from verifiers.bounds.graph.network import GraphNetwork
from verifiers.bounds.graph.ops.base import Lines
from verifiers.bounds.graph.ops.maxes import MaxRelaxed
from verifiers.bounds.graph.ops.piecewise import PiecewiseLinear

CHORD_GRID = 15  # interior grid points for an S-shaped op's split point


class GraphBranching:
    net: GraphNetwork
    free: np.ndarray
    root_width: np.ndarray

    def allowed(self, region, node) -> np.ndarray:
        if region.cases and node.output in region.cases:
            return region.cases[node.output]
        return np.ones((self.net.sizes[node.output], node.op.width), dtype=bool)

    def split_input(self, child, bounds: GraphBounds, i: int, open_rows) -> list:
        width = child.upper - child.lower
        coeffs = np.abs(bounds.objective_coeffs[i][open_rows]).sum(axis=0)
        smear = np.where(self.free, np.nan_to_num(coeffs) * width, -1.0)
        dim = int(np.argmax(smear)) if smear.max() > 0 else int(np.argmax(width / self.root_width))
        return self.halve(child, dim, 0.5 * (child.lower[dim] + child.upper[dim]))

    def halve(self, child, dim: int, at: float) -> list:
        """The region's box cut in two at `at` along input dimension `dim`."""
        left_upper, right_lower = child.upper.copy(), child.lower.copy()
        left_upper[dim] = right_lower[dim] = at
        # Input bounds of the parent stay valid on each half: keep them as `known`.
        step = ("input", dim, float(at))
        return [
            replace(child, upper=left_upper, path=(*child.path, (*step, 0)), changed=0),
            replace(child, lower=right_lower, path=(*child.path, (*step, 1)), changed=0),
        ]

    def element_choices(self, bounds: GraphBounds, i: int, open_rows, k: int) -> list:
        """The k elements of largest merit (|coefficient| x gap of the relaxation) over
        all the elementwise and Max ops, best first; none of merit 0. Each is
        ("interval", input tensor, index, split point) for an elementwise op, or ("case",
        output tensor, index, candidate) for a Max/MaxPool output."""
        found: list[tuple[float, tuple]] = []
        for node in self.net.nodes:
            relaxed = bounds.relaxed.get(node.output)
            coeffs = bounds.node_coeffs.get(node.output)
            if coeffs is None:
                continue
            if isinstance(relaxed, MaxRelaxed):
                merit = np.abs(coeffs[i][open_rows]).sum(axis=0) * np.nan_to_num(relaxed.gap[i])
                for j in _top(merit, k):
                    found.append((float(merit[j]), ("case", node.output, j, int(relaxed.b[i, j]))))
                continue
            if not isinstance(relaxed, Lines):
                continue
            name = node.inputs[0]
            lo, hi = bounds.boxes[name][0][i], bounds.boxes[name][1][i]
            at = _split_points(node.op, lo, hi)
            gap = _gap(relaxed, i, at)
            merit = np.abs(coeffs[i][open_rows]).sum(axis=0) * np.nan_to_num(gap)
            merit = np.where((lo < at) & (at < hi), merit, 0.0)
            for j in _top(merit, k):
                found.append((float(merit[j]), ("interval", name, j, float(at[j]))))
        found.sort(key=lambda pair: -pair[0])
        return [choice for _, choice in found[:k]]

    def split_element(self, child, kind: str, name: str, j: int, at) -> list:
        if kind == "case":
            return self.split_case(child, name, j, at)
        if name == self.net.input_name:
            # The bounds read the input's box from the region, never from `known`: split
            # there, or both parts would be the parent again (and be split again forever).
            return self.halve(child, j, at)
        parts = []
        for upper_part in (False, True):
            lo, hi = child.known[name][0].copy(), child.known[name][1].copy()  # type: ignore[index]
            if upper_part:
                lo[j] = max(lo[j], at)
            else:
                hi[j] = min(hi[j], at)
            known = {**child.known, name: (lo, hi)}  # type: ignore[dict-item]
            parts.append(
                replace(
                    child,
                    known=known,
                    share=child.share / 2,
                    splits=(*child.splits, (name, j, at, upper_part)),
                    path=(*child.path, ("interval", name, j, float(at), int(upper_part))),
                    # Only `name`'s consumers and what follows them change.
                    changed=self.net.producer_index.get(name, -1) + 1,
                )
            )
        return parts

    def split_case(self, child, name: str, j: int, b: int) -> list:
        """The part of the region where candidate b is the max of output j (the max is then
        x_b) and the part where the max is taken over the other candidates: they cover it."""
        node = self.net.nodes[self.net.producer_index[name]]
        allowed = self.allowed(child, node)
        # Only output j changes: the other outputs keep their candidates (with none, the
        # max of an empty set would bound them by -inf).
        only, without = allowed.copy(), allowed.copy()
        only[j] = False
        only[j, b], without[j, b] = True, False
        return [
            replace(
                child,
                cases={**(child.cases or {}), name: mask},
                share=child.share / 2,
                path=(*child.path, ("max", name, j, int(b), side)),
                changed=self.net.producer_index[name],  # the Max itself changes
            )
            for side, mask in enumerate((only, without))
        ]


def _top(merit: np.ndarray, k: int) -> list[int]:
    """Indices of the k largest merits above 0, largest first."""
    order = np.argsort(-merit, kind="stable")[:k]
    return [int(j) for j in order if merit[j] > 0.0]


def _split_points(op, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per element: a breakpoint inside (lo, hi) for piecewise-linear ops; for S-shaped ops
    the point of (lo, hi) where the function is farthest from its chord over [lo, hi]
    (where the two lines of its relaxation are loosest: the tangent point of a convex or
    concave piece), on a grid. Measured on the digits Sigmoid/Tanh MLPs (eps 0.05, 3000
    regions of element splits): sigmoid image 7 and tanh image 5 hold (99.96% and 87%
    proved with splits at 0 if inside, else the midpoint), sigmoid images 4 and 6 in 5 to
    15x fewer regions. Any point inside is sound: the two parts cover the interval."""
    middle = 0.5 * lo + 0.5 * hi
    if isinstance(op, PiecewiseLinear):
        at = middle
        for point in op.breakpoints[::-1]:
            at = np.where((lo < point) & (point < hi), point, at)
        return at
    return _farthest_from_chord(op, lo, hi, middle)


def _farthest_from_chord(op, lo: np.ndarray, hi: np.ndarray, middle: np.ndarray) -> np.ndarray:
    t = np.arange(1, CHORD_GRID + 1) / (CHORD_GRID + 1)
    with np.errstate(invalid="ignore", over="ignore"):
        points = lo[:, None] + (hi - lo)[:, None] * t[None, :]
        f = op.evaluate(np.concatenate([lo[:, None], points, hi[:, None]], axis=1))
        chord = f[:, :1] + (f[:, -1:] - f[:, :1]) * t[None, :]
        far = np.nan_to_num(np.abs(f[:, 1:-1] - chord), nan=-1.0)
    at = points[np.arange(len(lo)), np.argmax(far, axis=1)]
    return np.where(np.isfinite(at), at, middle)


def _gap(lines: Lines, i: int, at: np.ndarray) -> np.ndarray:
    upper = lines.upper_slope[i] * at + lines.upper_icpt[i]
    return upper - (lines.lower_slope[i] * at + lines.lower_icpt[i])
