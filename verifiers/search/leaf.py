"""Deciding one region of branch and bound exactly, where its linear bounds fall short.

Three arguments, tried by the search (bab.py decides when and how capped): a region whose
ReLUs are all stable has one activation pattern, searched for a counterexample by an LP;
LPs over the region's ReLU phases (search/phase_lp.py) refute it or point at a
counterexample; z3 decides it with exact rational arithmetic (smt/restricted.py). What is
proved is recorded through the search's `record`; what is found goes to the falsifier,
which replays it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from fractions import Fraction

import numpy as np

from verifiers.falsify.regions import activation_pattern
from verifiers.search.context import CaseOutcome, SearchContext
from verifiers.search.falsification import Falsifier
from verifiers.search.phase_lp import PhaseOutcome, PhaseSearch
from verifiers.search.region import Evidence, ParentBounds, Region
from verifiers.smt.outcome import SatOutcome

# A phase-LP attempt makes at most this many LPs and takes at most this many seconds.
PHASE_LP_NODES = 256
PHASE_LP_S = 1.0

Record = Callable[[Region, Evidence, int, "list[dict] | None"], None]


class ExactDecider:
    """The exact arguments for one case's regions: `polytopes` are the outward unsafe
    half-spaces the proofs refute, `record` notes a region proved."""

    def __init__(
        self,
        ctx: SearchContext,
        polytopes: list,
        falsifier: Falsifier,
        outcome: CaseOutcome,
        record: Record,
    ) -> None:
        self.ctx = ctx
        self.polytopes = polytopes
        self.falsifier = falsifier
        self.outcome = outcome
        self.record = record

    def falsify_leaf(self, region: Region, parent: ParentBounds) -> bool:
        """A ReLU-split region whose ReLUs are all stable has one activation pattern: the
        LP over it finds the counterexample if there is one (z3's witness, over the whole
        box, might lie outside the region's phases)."""
        if parent.unstable:
            return False
        pattern = [lo >= 0.0 for lo, _ in parent.layers[:-1]]
        return self.falsifier.polish([pattern], region.lower, region.upper)

    def by_phase_lp(self, region: Region, parent: ParentBounds) -> bool:
        """Refuted or falsified by LPs over the region's ReLU phases (search/phase_lp.py);
        False leaves the region to z3 or to further splitting."""
        search = PhaseSearch(
            self.ctx.network,
            region.lower,
            region.upper,
            parent.layers,
            self.polytopes,
            self.phase_masks(region),
        )
        deadline = min(self.ctx.deadline, time.monotonic() + PHASE_LP_S)
        answer = search.decide(PHASE_LP_NODES, deadline)
        self.outcome.phase_lps += answer.lps
        if answer.outcome is PhaseOutcome.REFUTED:
            self.record(region, Evidence.PHASE_LP, -1, answer.proofs)
            return True
        if not answer.candidates:
            return False
        # The LP's point may sit on the unsafe set's edge: the deepest point of its
        # activation region replays far more robustly.
        patterns = [activation_pattern(self.ctx.network, x) for x in answer.candidates]
        return self.falsifier.polish(
            patterns, region.lower, region.upper
        ) or self.falsifier.try_points(np.array(answer.candidates))

    def by_smt(self, region: Region, parent: ParentBounds, budget: float):
        """z3 on the region for at most `budget` seconds. A proof is recorded and a witness
        replayed (one that does not replay is an unknown reason); returns z3's answer, whose
        UNKNOWN the caller settles (split further, or give up)."""
        self.outcome.smt_calls += 1
        lower, upper = self.exact_box(region)
        from verifiers.smt.restricted import decide_region  # z3 is imported only when needed

        answer = decide_region(
            self.ctx.network,
            lower,
            upper,
            parent.layers,
            self.ctx.case.unsafe,
            max(0.05, budget),
            self.ctx.seed,
            self.ctx.margin,
            self.phase_masks(region),
            self.strict_bounds(lower, upper),
        )
        if answer.outcome is SatOutcome.UNSAT:
            # z3's query, for audit: the checker writes and decides its own (with cvc5).
            self.record(region, Evidence.SMT, -1, [{"smtlib": answer.query}])
        elif answer.outcome is SatOutcome.SAT:
            witness = np.array([float(v) for v in answer.inputs])
            if not (
                self.falsifier.try_points(witness[None, :])
                or self.falsifier.falsify(region.lower, region.upper, witness[None, :], 64)
            ):
                self.outcome.unknown_reasons.append(
                    "z3 found an unsafe input that does not replay in onnxruntime float32"
                    + (" (it may lie within the margin)" if self.ctx.margin else "")
                )
        return answer

    def exact_box(self, region: Region) -> tuple[list[Fraction], list[Fraction]]:
        """The region's float box within the case's exact one (an infinite float bound is
        the case's own bound, beyond the float range)."""
        case = self.ctx.case
        lower = [
            max(Fraction(float(v)), lo) if np.isfinite(v) else lo
            for v, lo in zip(region.lower, case.lower_exact, strict=True)
        ]
        upper = [
            min(Fraction(float(v)), hi) if np.isfinite(v) else hi
            for v, hi in zip(region.upper, case.upper_exact, strict=True)
        ]
        return lower, upper

    def strict_bounds(self, lower: list[Fraction], upper: list[Fraction]):
        """Per input, which of the region's exact bounds are the case's strict bounds."""
        case = self.ctx.case
        return [
            (
                case.strict_at(i)[0] and lower[i] == case.lower_exact[i],
                case.strict_at(i)[1] and upper[i] == case.upper_exact[i],
            )
            for i in range(len(lower))
        ]

    def phase_masks(self, region: Region) -> list[np.ndarray] | None:
        """Per ReLU layer, which ReLUs the region's phases split."""
        if not region.phases:
            return None
        masks = [np.zeros(layer.size, dtype=bool) for layer in self.ctx.network.relu_layers]
        for k, j, _ in region.phases:
            masks[k][j] = True
        return masks
