"""Counterexample search on a graph network: gradient search through the DAG (every op's
vjp), and replay in onnxruntime. As everywhere, a point is a counterexample only when it
replays (certify/replay.py).

Under a stripped final Softmax the search works on the logits: the property compares
outputs pairwise, which Softmax leaves unchanged; replay checks the real outputs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from verifiers.bounds.graph.network import GraphNetwork
from verifiers.certify.replay import replay
from verifiers.falsify.pgd import search as pgd_search
from verifiers.falsify.pgd import unsafe_margin
from verifiers.search.context import CaseOutcome, SearchContext

NEAR_UNSAFE = 1e-6
DEEP_PERIOD_S = 2.0
DEEP_BACKOFF = 2.0
DEEP_STARTS = 1024


@dataclass(frozen=True)
class _Logits:
    """The network as gradient search sees it: the bounded output and its gradient."""

    net: GraphNetwork

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return self.net.bounded(x)

    def gradient(self, x: np.ndarray, direction: np.ndarray) -> np.ndarray:
        return self.net.gradient(x, direction)


class GraphFalsifier:
    def __init__(self, ctx: SearchContext, outcome: CaseOutcome) -> None:
        self.ctx = ctx
        self.net: GraphNetwork = ctx.network  # type: ignore[assignment]
        self.surrogate = _Logits(self.net)
        self.outcome = outcome
        self.rng = np.random.default_rng(ctx.seed)
        self.polytopes = [c.matrix() for c in ctx.case.unsafe]
        self.period = DEEP_PERIOD_S
        self.next_deep = time.monotonic() + DEEP_PERIOD_S

    def try_points(self, points: np.ndarray) -> bool:
        """Replay the points whose float64 outputs look unsafe; True when one is confirmed."""
        if len(points) == 0:
            return False
        margins, _ = unsafe_margin(self.surrogate.evaluate(points), self.polytopes)
        margins = np.nan_to_num(margins, nan=-np.inf)
        order = np.argsort(-margins)
        likely = points[order][margins[order] >= -NEAR_UNSAFE][:16]
        if len(likely) == 0:
            return False
        cex = replay(likely, self.ctx.case, self.ctx.run, self.net.evaluate)
        if cex is not None:
            self.outcome.counterexample = cex
        return cex is not None

    def falsify(self, lower, upper, starts=None, samples=256, steps=30, deadline=None) -> bool:
        deadline = self.ctx.deadline if deadline is None else min(deadline, self.ctx.deadline)
        with np.errstate(over="ignore", invalid="ignore"):
            points, _ = pgd_search(
                self.surrogate,  # type: ignore[arg-type]
                lower,
                upper,
                self.polytopes,
                self.rng,
                samples=samples,
                steps=steps,
                starts=starts,
                deadline=deadline,
            )
        return self.try_points(points[:16])

    def restart_clock(self) -> None:
        """The first long search waits a full period from now (the root search just ran)."""
        self.next_deep = time.monotonic() + self.period

    def deep_due(self) -> bool:
        return time.monotonic() >= self.next_deep

    def deep(self, starts: np.ndarray | None) -> bool:
        """A longer gradient search over the whole box from the open regions' centres, then
        one targeted at each unsafe conjunction in turn (for robustness: each wrong label),
        from fresh random starts: the untargeted search follows whichever conjunction is
        closest at each point, and can keep circling one that is not reachable."""
        budget = time.monotonic() + self.period / 2
        case = self.ctx.case
        found = self.falsify(case.lower, case.upper, starts, DEEP_STARTS, 60, budget)
        if not found and len(self.polytopes) > 1:
            found = self.targeted(budget)
        self.period *= DEEP_BACKOFF
        self.next_deep = time.monotonic() + self.period
        return found

    def targeted(self, deadline: float) -> bool:
        case = self.ctx.case
        samples = max(16, DEEP_STARTS // len(self.polytopes))
        order = self.rng.permutation(len(self.polytopes))  # no conjunction always last
        for k in order:
            if time.monotonic() > deadline:
                return False
            with np.errstate(over="ignore", invalid="ignore"):
                points, _ = pgd_search(
                    self.surrogate,  # type: ignore[arg-type]
                    case.lower,
                    case.upper,
                    [self.polytopes[k]],
                    self.rng,
                    samples=samples,
                    steps=60,
                    deadline=min(deadline, self.ctx.deadline),
                )
            if self.try_points(points[:16]):
                return True
        return False
