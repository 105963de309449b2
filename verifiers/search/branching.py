"""Where to split an open region: which input dimensions to try bisecting, or which ReLU
to split into its two phases. Both read the region's linear bounds (ParentBounds)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verifiers.search.region import ParentBounds, Region

# Input splits look ahead at this many dimensions of largest smear, and the widest one ...
SMEAR_CANDIDATES = 2
# ... and default to the largest smear unless a dimension this many times wider exists.
BALANCE_GUARD = 64.0
# The look-ahead's merit of a bisection: worse half's score + this x better half's score.
BETTER_WEIGHT = 1.0


@dataclass(frozen=True)
class Branching:
    """Split choices for one case: its unsafe right-hand sides (a row whose lower bound is
    at most its rhs is still open) and its root box."""

    rhs: np.ndarray
    free: np.ndarray  # the root box's dimensions of positive width
    root_width: np.ndarray

    def input_dims(self, region: Region, parent: ParentBounds) -> list[int]:
        """Candidate dimensions, the default first (the look-ahead keeps it on a tie): the
        largest |coefficient| x width over the half-spaces still open (how much each moves
        their linear lower bounds), unless a dimension far wider relative to the root box
        exists (linear coefficients miss what loose relaxations hide); then the runner-up
        and the relatively widest."""
        open_rows = parent.objective_lower <= self.rhs
        width = region.upper - region.lower
        coeffs = np.abs(parent.objective_coeffs[open_rows]).sum(axis=0)
        smear = np.where(self.free, coeffs * width, -1.0)
        relative = np.where(self.free, width / self.root_width, -1.0)
        ranked = [int(d) for d in np.argsort(-smear, kind="stable") if smear[d] > 0.0]
        widest = int(np.argmax(relative))
        default = ranked[0] if ranked else widest
        if relative[default] * BALANCE_GUARD < relative[widest]:
            default = widest
        return list(dict.fromkeys([default, *ranked[:SMEAR_CANDIDATES], widest]))

    def bisections(
        self, regions: list[tuple[Region, ParentBounds]], scores: list[float], look_ahead: bool
    ) -> tuple[list[Region], list[list[int]]]:
        """The halves of every candidate bisection of each region, in pairs, and per region
        the index of each candidate's first half (only the default one without
        `look_ahead`). `scores`: each region's own (how far from proved)."""
        halves, options = [], []
        for (region, parent), score in zip(regions, scores, strict=True):
            choices = []
            dims = self.input_dims(region, parent)
            for dim in dims if look_ahead else dims[:1]:
                choices.append(len(halves))
                halves.extend(region.split(dim, parent.layers, score))
            options.append(choices)
        return halves, options

    def relu(self, parent: ParentBounds) -> tuple[int, int] | None:
        """The unstable ReLU whose relaxation costs the open objective rows the most (BaBSR's
        intercept score): |coefficient| x the upper line's height above the ReLU at 0."""
        best, choice = 0.0, None
        for k, score, unstable in self.relu_scores(parent):
            j = int(np.argmax(score))
            if unstable[j] and (choice is None or score[j] > best):
                best, choice = float(score[j]), (k, j)
        return choice

    def relu_choices(self, parent: ParentBounds, count: int) -> list[tuple[int, int]]:
        """The `count` unstable ReLUs (layer, neuron) of largest score (relu()), largest
        first; none of score 0 (its relaxation does not reach the open rows)."""
        found: list[tuple[float, int, int]] = []
        for k, score, unstable in self.relu_scores(parent):
            for j in np.argsort(-score, kind="stable")[:count]:
                if unstable[j] and score[j] > 0.0:
                    found.append((float(score[j]), k, int(j)))
        found.sort(key=lambda entry: -entry[0])
        return [(k, j) for _, k, j in found[:count]]

    def relu_scores(self, parent: ParentBounds):
        """Per ReLU layer with unstable ReLUs: (layer, intercept score per neuron, unstable)."""
        open_rows = parent.objective_lower <= self.rhs
        for k, coeffs in enumerate(parent.relu_coeffs):
            lo, hi = parent.layers[k]
            unstable = (lo < 0.0) & (hi > 0.0)
            if not unstable.any():
                continue
            height = np.where(unstable, -lo * hi / np.where(unstable, hi - lo, 1.0), 0.0)
            yield k, np.abs(coeffs[open_rows]).sum(axis=0) * height, unstable


def best_bisections(score: np.ndarray, options: list[list[int]]) -> np.ndarray:
    """Which halves to keep: of each region, the bisection of best merit (BETTER_WEIGHT),
    given the bounded halves' scores. Bounding all candidates costs a few boxes more per
    split, and makes far better choices than any single heuristic on ACAS Xu (trees 5 to
    20 times smaller)."""
    worse, better = np.minimum(score[0::2], score[1::2]), np.maximum(score[0::2], score[1::2])
    merit = worse + BETTER_WEIGHT * better
    kept = np.zeros(len(score), dtype=bool)
    for choices in options:
        best = max(choices, key=lambda first: merit[first // 2])
        kept[best : best + 2] = True
    return kept
