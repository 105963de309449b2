"""Branch and bound over the input domain of one property case.

Regions are bounded in batches with linear bound propagation; a region is proved when, for
every unsafe conjunction, some half-space's lower bound clears its right-hand side. Points
the bounds point at (the minimising box corners, the centres) are tried as counterexamples
on the way. A region with few unstable ReLUs left, or that is already small, goes to the
exact z3 back end; otherwise it is split along the input dimension with the largest smear.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from verifiers.bounds.linear import linear_bounds
from verifiers.certify.replay import Runner, replay
from verifiers.falsify.pgd import search as pgd_search
from verifiers.falsify.pgd import unsafe_margin
from verifiers.model.network import PiecewiseLinearNetwork
from verifiers.result import Counterexample
from verifiers.search.region import Evidence, Leaf, Region, volume
from verifiers.smt.query import BoxQuery, decide_box
from verifiers.smt.solver import SatOutcome
from verifiers.spec.property import Case

log = logging.getLogger(__name__)

BATCH = 64
# Hand a region to z3 once this few ReLUs are unstable on it: the case split is then cheap.
SMT_UNSTABLE_LIMIT = 12
# Regions this deep are sent to z3 whatever their unstable count: splitting has stalled.
SMT_DEPTH_LIMIT = 40
# With many inputs, splitting the input box is hopeless; z3 takes the whole residue.
INPUT_SPLIT_MAX_DIMS = 16


@dataclass
class CaseOutcome:
    counterexample: Counterexample | None = None
    proved_volume: float = 0.0
    total_volume: float = 1.0
    subproblems: int = 0
    open_regions: int = 0
    unknown_reasons: list[str] = field(default_factory=list)
    leaves: list[Leaf] = field(default_factory=list)
    smt_calls: int = 0

    @property
    def decided(self) -> bool:
        return self.counterexample is not None or (
            self.open_regions == 0 and not self.unknown_reasons
        )


@dataclass(frozen=True)
class SearchContext:
    network: PiecewiseLinearNetwork
    case: Case
    run: Runner  # onnxruntime replay
    deadline: float
    margin: float = 0.0
    seed: int = 0
    record_tree: bool = True
    on_step: Callable[[CaseOutcome], None] | None = None
    cancelled: Callable[[], bool] = lambda: False

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


class CaseSearch:
    def __init__(self, ctx: SearchContext) -> None:
        self.ctx = ctx
        self.rng = np.random.default_rng(ctx.seed)
        self.polytopes = [c.matrix() for c in ctx.case.unsafe]
        self.polytopes = [(a, b + ctx.margin) for a, b in self.polytopes]
        self.rows = np.concatenate([a for a, _ in self.polytopes])
        self.rhs = np.concatenate([b for _, b in self.polytopes])
        self.groups = np.repeat(np.arange(len(self.polytopes)), [len(b) for _, b in self.polytopes])
        self.root = Region(ctx.case.lower, ctx.case.upper)
        self.free = self.root.upper > self.root.lower
        self.outcome = CaseOutcome(total_volume=volume(self.root.lower, self.root.upper, self.free))
        self.stack: list[Region] = [self.root]

    def engine(self, x: np.ndarray) -> np.ndarray:
        return self.ctx.network.evaluate(x)

    def try_points(self, points: np.ndarray) -> bool:
        """Replay the points whose float64 outputs look unsafe; True when one is confirmed."""
        if len(points) == 0:
            return False
        margins, _ = unsafe_margin(self.engine(points), self.polytopes_unwidened)
        likely = points[np.argsort(-margins)][: max(1, int(np.sum(margins >= -1e-9)))][:16]
        cex = replay(likely, self.ctx.case, self.ctx.run, self.engine)
        if cex is not None:
            self.outcome.counterexample = cex
        return cex is not None

    @property
    def polytopes_unwidened(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [c.matrix() for c in self.ctx.case.unsafe]

    def falsify(self, lower: np.ndarray, upper: np.ndarray, starts=None, samples=256) -> bool:
        points, margins = pgd_search(
            self.ctx.network, lower, upper, self.polytopes_unwidened, self.rng,
            samples=samples, starts=starts,
        )
        return self.try_points(points[margins >= -1e-9][:16]) if np.any(margins >= -1e-9) else False

    def run(self) -> CaseOutcome:
        if self.falsify(self.root.lower, self.root.upper):
            return self.outcome
        while self.stack and self.outcome.counterexample is None:
            if self.ctx.remaining() <= 0 or self.ctx.cancelled():
                break
            batch = [self.stack.pop() for _ in range(min(BATCH, len(self.stack)))]
            self.step(batch)
            if self.ctx.on_step:
                self.ctx.on_step(self.outcome)
        self.outcome.open_regions = len(self.stack)
        return self.outcome

    def step(self, batch: list[Region]) -> None:
        lower = np.stack([r.lower for r in batch])
        upper = np.stack([r.upper for r in batch])
        bounds = linear_bounds(self.ctx.network, lower, upper, self.rows)
        self.outcome.subproblems += len(batch)
        cleared = bounds.objective_lower > self.rhs[None, :]  # (batch, rows)
        per_group = np.stack(
            [cleared[:, self.groups == g].any(axis=1) for g in range(len(self.polytopes))], axis=1
        )
        proved = per_group.all(axis=1)
        open_idx = [i for i in range(len(batch)) if not proved[i]]
        for i in np.flatnonzero(proved):
            self.record(batch[i], Evidence.LINEAR, int(np.argmax(bounds.objective_lower[i] - self.rhs)))
        if not open_idx:
            return
        corners = bounds.objective_minimizer[open_idx].reshape(-1, lower.shape[1])
        centres = 0.5 * (lower[open_idx] + upper[open_idx])
        if self.try_points(np.concatenate([centres, corners])):
            return
        for i in open_idx:
            self.branch(batch[i], bounds, i)
            if self.outcome.counterexample is not None:
                return

    def branch(self, region: Region, bounds, i: int) -> None:
        unstable = sum(
            int(np.sum((lo[i] < 0) & (hi[i] > 0))) for lo, hi in bounds.layers[:-1]
        )
        wide = region.lower.size <= INPUT_SPLIT_MAX_DIMS and region.depth < SMT_DEPTH_LIMIT
        if unstable > SMT_UNSTABLE_LIMIT and wide:
            self.stack.extend(region.split(self.split_dim(region, bounds, i)))
            return
        self.decide_exactly(region, [(lo[i], hi[i]) for lo, hi in bounds.layers])

    def split_dim(self, region: Region, bounds, i: int) -> int:
        cleared = bounds.objective_lower[i] > self.rhs
        coeffs = bounds.objective_coeffs[i][~cleared]  # rows still open
        smear = np.abs(coeffs).sum(axis=0) * (region.upper - region.lower)
        return int(np.argmax(smear))

    def decide_exactly(self, region: Region, layer_bounds) -> None:
        self.outcome.smt_calls += 1
        lower = [max(Fraction(float(v)), lo) for v, lo in zip(region.lower, self.ctx.case.lower_exact, strict=True)]
        upper = [min(Fraction(float(v)), hi) for v, hi in zip(region.upper, self.ctx.case.upper_exact, strict=True)]
        query = BoxQuery(self.ctx.network, lower, upper, self.ctx.case.unsafe, layer_bounds, self.ctx.margin)
        answer = decide_box(query, max(0.05, self.ctx.remaining()), self.ctx.seed)
        if answer.outcome is SatOutcome.UNSAT:
            self.record(region, Evidence.SMT, -1)
        elif answer.outcome is SatOutcome.SAT:
            witness = np.array([float(v) for v in answer.inputs])
            if not (self.try_points(witness[None, :]) or self.falsify(region.lower, region.upper, witness[None, :], 64)):
                self.outcome.unknown_reasons.append(
                    "z3 found an unsafe input that does not replay in onnxruntime float32"
                    + (" (it may lie within the margin)" if self.ctx.margin else "")
                )
        else:
            self.outcome.unknown_reasons.append(f"z3: {answer.reason or 'unknown'}")

    def record(self, region: Region, evidence: Evidence, detail: int) -> None:
        self.outcome.proved_volume += volume(region.lower, region.upper, self.free)
        if self.ctx.record_tree:
            self.outcome.leaves.append(
                Leaf(region.lower.tolist(), region.upper.tolist(), evidence, detail)
            )
