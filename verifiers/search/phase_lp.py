"""Deciding a small region exactly: ReLU phase splitting over its joint LP relaxation.

On a small box most ReLUs are stable and the network is affine in the inputs and the few
unstable ReLU outputs (model/restricted.py composes that map with a rigorous error bound). Over
those variables, every ReLU's enclosing triangle and every unsafe half-space are linear
inequalities; an LP minimises how far the whole system must be relaxed to have a solution.
A positive minimum refutes the region: the LP's dual multipliers give a combination of the
inequalities that is negative on the whole box, and that combination is re-evaluated with
outward rounding, so the solver's tolerances cannot make a proof unsound. Otherwise the ReLU
the LP's point relaxes most is split into its two phases (each an exact linear piece) and
both are decided in turn; a piece with every ReLU fixed is exact, and its LP point is a
counterexample candidate for replay.

Unlike bound propagation, this does not need the box to be small compared to how close the
property is to violated: it decides boxes where the unsafe set is a hair away (ACAS Xu
property 2 on networks 3_3 and 4_2, where many ReLUs switch along a plateau of near ties).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

import numpy as np

from verifiers.bounds.rounding import UNDERFLOW, UNIT_ROUNDOFF, gamma
from verifiers.model.network import PiecewiseLinearNetwork
from verifiers.model.restricted import restrict
from verifiers.search import phase_evidence


class PhaseOutcome(Enum):
    REFUTED = "refuted"  # no unsafe input in the region
    CANDIDATE = "candidate"  # an exact piece has an unsafe point (in float64): replay it
    GAVE_UP = "gave-up"  # out of nodes or time, or the LP failed


class LpFailed(Exception):
    """HiGHS ended without an optimum (numerical trouble): the attempt gives up."""


@dataclass
class PhaseAnswer:
    outcome: PhaseOutcome
    candidates: list[np.ndarray]
    lps: int
    # For a refutation, per conjunction its tree of phase splits and refuted pieces (the
    # certificate's evidence; see dual_evidence).
    proofs: list[dict] | None = None


class PhaseSearch:
    """One region: its restricted network, and the LP branch and bound over its ReLU phases.

    The LP over v = [inputs; ReLU outputs; t] minimises t subject to  rows @ v + t >= -consts
    for every valid inequality  rows @ v + consts >= 0  (below); per ReLU j they are, in
    this order: p >= lo, p <= hi, r >= p, r >= alpha p, and the upper line (the triangle's
    chord, or r <= p / r <= alpha p once the phase is fixed). Fixing a phase changes a few
    rows of one ReLU, and HiGHS re-solves warm from the last basis."""

    def __init__(
        self,
        network: PiecewiseLinearNetwork,
        lower: np.ndarray,
        upper: np.ndarray,
        layer_bounds,
        unsafe: list[tuple[np.ndarray, np.ndarray]],
        keep=None,
    ) -> None:
        unstable, output = restrict(network, lower, upper, layer_bounds, keep)
        self.n_in, self.k = lower.size, len(unstable)
        self.n_vars = self.n_in + self.k
        self.pre = np.zeros((self.k, self.n_vars))  # pre-activation = pre @ v + const +- err
        for j, relu in enumerate(unstable):
            self.pre[j, : len(relu.coeffs)] = relu.coeffs
        self.const = np.array([u.const for u in unstable])
        self.err = np.array([u.err for u in unstable])
        self.alpha = np.array([u.alpha for u in unstable])
        self.where = [(u.layer, u.index) for u in unstable]
        # The certificate lists the ReLUs per layer, ascending; multipliers in that order.
        self.order = np.array(sorted(range(self.k), key=self.where.__getitem__), dtype=np.int64)
        self.relu_layers = len(network.relu_layers)
        self.pre_lower = np.array([u.lower for u in unstable])
        self.pre_upper = np.array([u.upper for u in unstable])
        self.box_lower, self.box_upper = lower, upper
        self.unsafe_rows = self._unsafe_rows(output, unsafe)

    def decide(self, max_lps: int, deadline: float) -> PhaseAnswer:
        """Refute every unsafe conjunction on the region, or find candidates, or give up."""
        lps = 0
        proofs = []
        if not self.finite():
            return PhaseAnswer(PhaseOutcome.GAVE_UP, [], lps)
        for conjunction in range(len(self.unsafe_rows)):
            solver = _Solver(self, conjunction)
            stack = [(self.pre_lower, self.pre_upper, ())]
            pieces: list[tuple[tuple, dict]] = []
            while stack:
                if lps >= max_lps or time.monotonic() > deadline:
                    return PhaseAnswer(PhaseOutcome.GAVE_UP, [], lps)
                low, high, path = stack.pop()
                if np.any(low > high):  # sound bounds that cross: no input has the phases
                    pieces.append((path, {"empty": True}))
                    continue
                lps += 1
                try:
                    point = solver.refute(low, high)
                except LpFailed:
                    return PhaseAnswer(PhaseOutcome.GAVE_UP, [], lps)
                if point is None:
                    pieces.append((path, solver.evidence))
                    continue
                split = self._split_choice(point, low, high)
                if split is None:
                    return PhaseAnswer(PhaseOutcome.CANDIDATE, [point[: self.n_in]], lps)
                layer, neuron = self.where[split]
                stack.append((*_active(low, high, split), (*path, ("relu", layer, neuron, 0))))
                stack.append((*_inactive(low, high, split), (*path, ("relu", layer, neuron, 1))))
            proofs.append({"relus": self.relus(), **_tree(pieces)})
        return PhaseAnswer(PhaseOutcome.REFUTED, [], lps, proofs)

    def relus(self) -> list[list[int]]:
        """Per ReLU layer, the neurons the pieces' multipliers are for (ascending)."""
        out: list[list[int]] = [[] for _ in range(self.relu_layers)]
        for i in self.order:
            layer, neuron = self.where[i]
            out[layer].append(int(neuron))
        return out

    def dual_evidence(self, weights: np.ndarray, low: np.ndarray, high: np.ndarray, unsafe) -> dict:
        """A refuted piece as the certificate states it: the weights of the unsafe rows (mu)
        and, per unstable ReLU (in the order of relus()), the multiplier of its
        pre-activation (lambda) that the combination passes down the network: minus the
        weight of p in the ReLU's rows (p >= lo, p <= hi, r >= p, r >= alpha p,
        r <= slope p + c). The checker re-evaluates the Lagrangian with these in exact
        arithmetic, on its own bounds; they are written short where that still proves the
        piece (phase_evidence.py)."""
        k = self.k
        w = [weights[b * k : (b + 1) * k] for b in range(5)]
        open_ = (low < 0.0) & (high > 0.0)
        width = np.where(open_, high - low, 1.0)
        chord = np.where(open_, (high - self.alpha * low) / width, 0.0) * (
            1.0 + 16.0 * UNIT_ROUNDOFF
        )
        slope = np.where(low >= 0.0, 1.0, np.where(high <= 0.0, self.alpha, chord))
        p_weight = w[0] - w[1] - w[2] - self.alpha * w[3] + slope * w[4]
        proof = phase_evidence.evidence(self, unsafe, weights[5 * k :], -p_weight, low, high)
        proof["lambda"] = [proof["lambda"][i] for i in self.order]
        return proof

    def finite(self) -> bool:
        """Every number the LPs would use is finite. An overflowed bound or composition gives
        up the attempt: HiGHS must never see inf - inf or NaN (the certificate re-check would
        fail closed anyway, but the LP itself is meaningless)."""
        arrays = [self.pre, self.const, self.err, self.pre_lower, self.pre_upper]
        arrays += [self.box_lower, self.box_upper]
        arrays += [part for rows in self.unsafe_rows for part in rows]
        with np.errstate(over="ignore", invalid="ignore"):
            return all(bool(np.all(np.isfinite(a))) for a in arrays)

    def _unsafe_rows(self, output, unsafe):
        """Per conjunction a y <= b: rows, consts, scales of  b - a.y >= 0  over v.

        The scale bounds what computing a row rounded, at any v of the root's variable box
        (a node's box lies inside it): |a| |coeffs| |v|, not |a coeffs| |v|, which
        cancellation can make far smaller."""
        var_lower, var_upper = self.variable_box(self.pre_lower, self.pre_upper)
        var_magnitude = np.maximum(np.abs(var_lower), np.abs(var_upper))
        out = []
        for a, b in unsafe:
            rows = -(a @ output.coeffs)
            consts = b - a @ output.const + np.abs(a) @ output.err
            scale = np.abs(b) + np.abs(a) @ (
                np.abs(output.const) + output.err + np.abs(output.coeffs) @ var_magnitude
            )
            out.append((rows, consts, scale))
        return out

    def relu_rows(self, low: np.ndarray, high: np.ndarray):
        """(rows (5k, n_vars), consts, scales) of the ReLU inequalities under these bounds;
        the pre-activation error is folded in on the safe side."""
        pre, const, err, alpha = self.pre, self.const, self.err, self.alpha
        out = np.zeros((self.k, self.n_vars))
        out[np.arange(self.k), self.n_in + np.arange(self.k)] = 1.0
        active, inactive = low >= 0.0, high <= 0.0
        open_ = ~(active | inactive)
        # The chord through (lo, alpha lo) and (hi, hi), its slope rounded up (p - lo >= 0):
        # three roundings at most, padded to sixteen ulps.
        width = np.where(open_, high - low, 1.0)
        chord = np.where(open_, (high - alpha * low) / width, 0.0) * (1.0 + 16.0 * UNIT_ROUNDOFF)
        slope = np.where(active, 1.0, np.where(inactive, alpha, chord))
        upper_const = np.where(
            open_, alpha * low + chord * (const + err - low), slope * (const + err)
        )
        rows = np.concatenate(
            [pre, -pre, out - pre, out - alpha[:, None] * pre, slope[:, None] * pre - out]
        )
        consts = np.concatenate(
            [const + err - low, high - const + err, err - const, alpha * (err - const), upper_const]
        )
        scale = np.abs(const) + err + np.abs(low) + np.abs(high)
        scales = np.concatenate([scale, scale, scale, scale, np.maximum(slope, 1.0) * scale])
        return rows, consts, scales

    def variable_box(self, low, high):
        """Inputs in their box; each ReLU output between the ReLU of its bounds (monotone)."""
        relu_low = np.where(low >= 0.0, low, self.alpha * low)
        relu_high = np.where(high >= 0.0, high, self.alpha * high)
        return (
            np.concatenate([self.box_lower, relu_low]),
            np.concatenate([self.box_upper, relu_high]),
        )

    def certified(self, weights, rows, consts, scale, var_lower, var_upper) -> bool:
        """The weighted sum of the inequalities is negative on the whole variable box, with
        every rounding of the rows, of the sum and of its maximum accounted for."""
        combined = weights @ rows
        extreme = np.maximum(combined * var_lower, combined * var_upper)
        value = float(weights @ consts + np.sum(extreme))
        magnitude = np.maximum(np.abs(var_lower), np.abs(var_upper))
        terms = np.abs(rows) @ magnitude + np.abs(consts) + scale
        slack = gamma(4 * (self.n_vars + len(consts)) + 64) * float(weights @ terms)
        return value + slack + UNDERFLOW < 0.0

    def _split_choice(self, v: np.ndarray, low: np.ndarray, high: np.ndarray) -> int | None:
        """The unstable ReLU whose output the LP point relaxes most (its height above the
        ReLU of its pre-activation); None when every ReLU is fixed."""
        open_ = (low < 0.0) & (high > 0.0)
        if not open_.any():
            return None
        pre = self.pre @ v[: self.n_vars] + self.const
        relu = np.where(pre >= 0.0, pre, self.alpha * pre)
        gap = np.abs(v[self.n_in : self.n_vars] - relu)
        # Ties (e.g. all zero): prefer the widest relaxation.
        height = -low * high / np.where(open_, high - low, 1.0)
        score = np.where(open_, gap + 1e-9 * height, -1.0)
        return int(np.argmax(score))


class _Solver:
    """A HiGHS model of one conjunction's LP, kept across the nodes of the phase search."""

    def __init__(self, search: PhaseSearch, conjunction: int) -> None:
        import highspy  # deep in a search only: keep start-up fast

        self.search = search
        self.unsafe = search.unsafe_rows[conjunction]
        self.evidence: dict | None = None  # of the last refuted node
        self.highs = highspy.Highs()
        self.highs.setOptionValue("output_flag", False)
        # One search process per core: HiGHS' own worker threads would only contend.
        self.highs.setOptionValue("threads", 1)
        # Each node re-solves a small LP warm: presolve only costs (a quarter of the LP time
        # on ACAS Xu property 2). Unscaled, HiGHS reports a refutable node's optimum t > 0
        # far more often, where scaled its tolerances left t at about 0 and the node was
        # split (net 4_2: 7,700 LPs instead of 17,000; net 3_3: no attempt given up instead
        # of 65, 22 s instead of 77). The duals are re-checked soundly (certified) either way.
        self.highs.setOptionValue("presolve", "off")
        self.highs.setOptionValue("simplex_scale_strategy", 0)
        self.inf = highspy.kHighsInf
        self.low, self.high = search.pre_lower, search.pre_upper
        rows, consts, scale = self._rows(self.low, self.high)
        n = search.n_vars + 1
        var_lower, var_upper = search.variable_box(self.low, self.high)
        self.highs.addVars(n, np.append(var_lower, -self.inf), np.append(var_upper, self.inf))
        self.highs.changeColCost(n - 1, 1.0)
        matrix = np.concatenate([rows, np.ones((len(rows), 1))], axis=1)
        nz = matrix != 0.0
        starts = np.concatenate([[0], np.cumsum(nz.sum(axis=1))[:-1]]).astype(np.int32)
        self.highs.addRows(
            len(rows),
            -consts,
            np.full(len(rows), self.inf),
            int(nz.sum()),
            starts,
            np.nonzero(nz)[1].astype(np.int32),
            matrix[nz],
        )

    def _rows(self, low, high):
        rows, consts, scale = self.search.relu_rows(low, high)
        unsafe_rows, unsafe_consts, unsafe_scale = self.unsafe
        return (
            np.concatenate([rows, unsafe_rows]),
            np.concatenate([consts, unsafe_consts]),
            np.concatenate([scale, unsafe_scale]),
        )

    def refute(self, low: np.ndarray, high: np.ndarray) -> np.ndarray | None:
        """None when the LP refutes the node; else its point v. Raises LpFailed when HiGHS
        finds no optimum."""
        import highspy

        self._update(low, high)
        self.highs.run()
        if self.highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            raise LpFailed(str(self.highs.getModelStatus()))
        solution = self.highs.getSolution()
        point = np.array(solution.col_value)
        if point[-1] > 0.0:
            rows, consts, scale = self._rows(low, high)
            weights = np.maximum(np.array(solution.row_dual), 0.0)
            var_lower, var_upper = self.search.variable_box(low, high)
            if weights.sum() > 0.0 and self.search.certified(
                weights / weights.sum(), rows, consts, scale, var_lower, var_upper
            ):
                self.evidence = self.search.dual_evidence(
                    weights / weights.sum(), low, high, self.unsafe
                )
                return None
        return point

    def _update(self, low, high) -> None:
        """Move the model to the node's bounds: only the ReLUs whose bounds changed."""
        changed = np.flatnonzero((low != self.low) | (high != self.high))
        if len(changed) == 0:
            return
        search, k = self.search, self.search.k
        rows, consts, _ = search.relu_rows(low, high)
        var_lower, var_upper = search.variable_box(low, high)
        for j in changed:
            column = search.n_in + int(j)
            self.highs.changeColBounds(column, var_lower[column], var_upper[column])
            for block in range(5):
                row = block * k + int(j)
                self.highs.changeRowBounds(row, -consts[row], self.inf)
            upper_line = 4 * k + int(j)
            for col in np.flatnonzero(search.pre[j] != 0.0):
                self.highs.changeCoeff(upper_line, int(col), float(rows[upper_line, col]))
            self.highs.changeCoeff(upper_line, column, -1.0)
        self.low, self.high = low, high


def _tree(pieces: list[tuple[tuple, dict]]) -> dict:
    """Nest (path, evidence) pieces into a tree of ReLU splits (certificate format)."""
    root: dict = {}
    for path, evidence in pieces:
        node = root
        for kind, layer, neuron, side in path:
            if "children" not in node:
                node.update(split=kind, layer=layer, neuron=neuron, children=[{}, {}])
            node = node["children"][side]
        node.update(evidence)
    return root


def _active(low: np.ndarray, high: np.ndarray, j: int):
    low = low.copy()
    low[j] = 0.0
    return low, high


def _inactive(low: np.ndarray, high: np.ndarray, j: int):
    high = high.copy()
    high[j] = 0.0
    return low, high
