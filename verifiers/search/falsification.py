"""Counterexample search for one case: gradient search, LPs in activation regions, and
replay. A point becomes a counterexample only when it replays (certify/replay.py); the
first one is written to the case's outcome.

The search calls it at the root, at the points its bounds point at, now and then with a
long gradient search started from the regions still open (`deep`), and on the leaves that
exact reasoning says are unsafe.
"""

from __future__ import annotations

import time

import numpy as np

from verifiers.certify.replay import replay
from verifiers.falsify.pgd import search as pgd_search
from verifiers.falsify.pgd import unsafe_margin
from verifiers.falsify.regions import activation_pattern, deepest_in_region
from verifiers.search.context import CaseOutcome, SearchContext
from verifiers.search.region import Region

# Points this close to the unsafe set in float64 are replayed too: onnxruntime's float32
# outputs round differently and may put them inside.
NEAR_UNSAFE = 1e-6
# A long gradient search (from the open regions) runs this often while the bounds work ...
DEEP_FALSIFY_PERIOD_S = 4.0
# ... and each fruitless one waits this many times longer for the next: the longer a search
# runs without a counterexample, the likelier the property holds.
DEEP_FALSIFY_BACKOFF = 2.0
DEEP_FALSIFY_STARTS = 2048
# The deep search's best points polished by an LP in their activation region.
DEEP_POLISH = 64
# Points polished by an LP must be this close (relative) to the unsafe set.
POLISH_GAP = 1e-2


class Falsifier:
    def __init__(self, ctx: SearchContext, outcome: CaseOutcome) -> None:
        self.ctx = ctx
        self.outcome = outcome
        self.rng = np.random.default_rng(ctx.seed)
        # The unsafe set as written: a candidate must replay in it, margin or not.
        self.polytopes = [c.matrix() for c in ctx.case.unsafe]
        rhs = np.concatenate([b for _, b in self.polytopes])
        # LPs polish only points this close to unsafe: the others are not worth an LP.
        self.polish_gap = POLISH_GAP * (1.0 + float(np.abs(rhs).max(initial=0.0)))
        self.period = DEEP_FALSIFY_PERIOD_S
        self.next_deep = time.monotonic() + DEEP_FALSIFY_PERIOD_S

    def engine(self, x: np.ndarray) -> np.ndarray:
        return self.ctx.network.evaluate(x)

    def try_points(self, points: np.ndarray) -> bool:
        """Replay the points whose float64 outputs look unsafe; True when one is confirmed."""
        if len(points) == 0:
            return False
        margins, _ = unsafe_margin(self.engine(points), self.polytopes)
        order = np.argsort(-margins)
        likely = points[order][margins[order] >= -NEAR_UNSAFE][:16]
        if len(likely) == 0:
            return False
        cex = replay(likely, self.ctx.case, self.ctx.run, self.engine)
        if cex is not None:
            self.outcome.counterexample = cex
        return cex is not None

    def polish_best(self, points: np.ndarray) -> bool:
        """An LP in the activation region of the most unsafe-looking point, over the whole
        box."""
        margins, _ = unsafe_margin(self.engine(points), self.polytopes)
        if margins.max() < -self.polish_gap:
            return False
        pattern = activation_pattern(self.ctx.network, points[np.argmax(margins)])
        return self.polish([pattern], self.ctx.case.lower, self.ctx.case.upper)

    def polish(self, patterns: list[list[np.ndarray]], lower, upper, deadline=None) -> bool:
        """Replay the deepest unsafe input of each activation pattern in the box (an LP per
        pattern and unsafe conjunction), as many as time allows; True when one is confirmed."""
        deadline = self.ctx.deadline if deadline is None else min(deadline, self.ctx.deadline)
        found = []
        for pattern in patterns:
            if found and time.monotonic() > deadline:
                break
            for a, b in self.polytopes:
                found.append(deepest_in_region(self.ctx.network, pattern, lower, upper, a, b))
        return self.try_points(np.array([x for x in found if x is not None]))

    def falsify(
        self,
        lower: np.ndarray,
        upper: np.ndarray,
        starts=None,
        samples=256,
        steps=30,
        polish=4,
        deadline: float | None = None,
    ) -> bool:
        """Gradient search, then an LP in the activation region of the `polish` best points;
        both stop early at `deadline` (at the latest, the search's)."""
        deadline = self.ctx.deadline if deadline is None else min(deadline, self.ctx.deadline)
        points, margins = pgd_search(
            self.ctx.network,
            lower,
            upper,
            self.polytopes,
            self.rng,
            samples=samples,
            steps=steps,
            starts=starts,
            deadline=deadline,
        )
        if self.try_points(points[:16]):
            return True
        close = points[:polish][margins[:polish] >= -self.polish_gap]
        patterns = [activation_pattern(self.ctx.network, x) for x in close]
        return self.polish(patterns, lower, upper, deadline)

    def deep_due(self) -> bool:
        return time.monotonic() >= self.next_deep

    def deep(self, open_regions: list[Region]) -> bool:
        """A long gradient search over the whole box, started from the centres of the regions
        the bounds could not prove (the furthest from proved first): violations, if any, lie
        in them."""
        worst = sorted(open_regions, key=lambda r: r.parent_score)[:DEEP_FALSIFY_STARTS]
        centres = [0.5 * (r.lower + r.upper) for r in worst]
        starts = np.stack(centres) if centres else None
        # At most half the wait before it (large networks make each step costly): the
        # bounds keep most of the time.
        budget = time.monotonic() + self.period / 2
        found = self.falsify(
            self.ctx.case.lower,
            self.ctx.case.upper,
            starts,
            DEEP_FALSIFY_STARTS,
            100,
            DEEP_POLISH,
            budget,
        )
        self.period *= DEEP_FALSIFY_BACKOFF
        self.next_deep = time.monotonic() + self.period
        return found
