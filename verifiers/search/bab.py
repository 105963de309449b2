"""Branch and bound over the input domain of one property case.

Regions are bounded in batches with linear bound propagation; a region is proved when, for
every unsafe conjunction, some half-space's lower bound clears its right-hand side (or a
convex combination of them, and of the region's ReLU phases, does: search/combination.py).
Points the bounds point at (the minimising box corners, the centres) are tried as
counterexamples on the way, with gradient search and activation-region LPs now and then.

An open region with few inputs is bisected along the dimension whose halves bound best (a
look-ahead over a few candidates, search/branching.py). One with many inputs, or with few
unstable ReLUs left, has its most costly unstable ReLU split into its active and inactive
parts instead. A region with few unstable ReLUs left (PHASE_LP_UNSTABLE) gets a capped
attempt by LPs over its ReLU phases, which decide regions far too close to unsafe for the
bounds; z3 gets one capped attempt when very few are left, and the regions splitting cannot
close (search/leaf.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from fractions import Fraction

import numpy as np

from verifiers.bounds.alpha import SlopeSearch
from verifiers.bounds.interval import interval_bounds
from verifiers.bounds.linear import LinearBounds, linear_bounds
from verifiers.bounds.rounding import proves
from verifiers.deadline import OutOfTime, check
from verifiers.search import combination, slopes
from verifiers.search.branching import Branching, best_bisections
from verifiers.search.context import CaseOutcome, SearchContext
from verifiers.search.falsification import Falsifier
from verifiers.search.leaf import ExactDecider
from verifiers.search.proof_units import in_property_units
from verifiers.search.region import (
    Evidence,
    Leaf,
    ParentBounds,
    Region,
    log_volume,
    relative_volume,
)
from verifiers.search.slopes import slope_search
from verifiers.smt.outcome import SatOutcome

log = logging.getLogger(__name__)

BATCH = 64
# z3 gets one capped attempt on a region with this few unstable ReLUs (a cheap case split).
SMT_UNSTABLE_LIMIT = 6
# Regions with this few unstable ReLUs are decided by LPs over their ReLU phases (capped
# attempts, search/leaf.py), before they are split further.
PHASE_LP_UNSTABLE = 28
# Regions this deep have ReLUs split instead of their box: bisecting it has stalled ...
INPUT_DEPTH_LIMIT = 60
# ... and this deep are sent to z3 whatever their unstable count.
SMT_DEPTH_LIMIT = 100
# A region whose bounds miss a proof by less than this (relative) goes to z3 directly.
TIGHT = 1e-9
# Seconds z3 gets on a region that could still be split instead.
SMT_ATTEMPT_S = 2.0
# Every this many batches, the most unsafe-looking point of a batch is polished by an LP.
POLISH_EVERY = 4
# With many inputs, splitting the input box is hopeless: ReLUs are split instead.
INPUT_SPLIT_MAX_DIMS = 16
# Regions with this few unstable ReLUs left have them split too (instead of their box).
RELU_SPLIT_AT = 6
# Where ReLUs are split (many inputs), each region tries this many ReLUs of largest score
# and splits the one whose parts bound best on trial (filtered strong branching) ...
STRONG_CANDIDATES = 8
# ... and this many while more than MANY_UNSTABLE of its ReLUs are unstable. Digits
# 784-256x4 eps-0.02 unknowns (258 unstable at the root), share proved in 60 s with 8 / 16 /
# 32 / 64 / 128 candidates: image 0 15% / 42% / 86% / 99.6% / 99.93%, image 9 14% / 69% /
# 92% / 99.7% / 99.8%; but 64-100-100-10 image 1 eps 0.1 (85 unstable) holds in 3.7 s with
# 8, 10.6 s with 32 and is not decided in 20 s with 128: trials cost more than they save.
STRONG_CANDIDATES_MANY = 128
MANY_UNSTABLE = 128
# Trial parts bounded at once: each keeps its linear bounds for every layer, so 64 regions x
# 128 candidates x 2 parts of a 784-256x4 net peaked at 1.8 GB, past a job's default 2 GB.
TRIAL_PARTS = 1024


class CaseSearch:
    def __init__(self, ctx: SearchContext) -> None:
        self.ctx = ctx
        # What proofs refute: the exact unsafe set (and margin), widened by its rounding.
        self.polytopes = [
            c.outward_matrix(Fraction(ctx.margin), self.output_magnitude()) for c in ctx.case.unsafe
        ]
        self.rows = np.concatenate([a for a, _ in self.polytopes])
        self.rhs = np.concatenate([b for _, b in self.polytopes])
        self.strict = np.array([h.strict for c in ctx.case.unsafe for h in c.halfspaces])
        self.groups = np.repeat(np.arange(len(self.polytopes)), [len(b) for _, b in self.polytopes])
        self.root = Region(ctx.case.lower, ctx.case.upper)
        self.free = self.root.upper > self.root.lower
        self.root_width = np.where(self.free, self.root.upper - self.root.lower, 1.0)
        self.outcome = CaseOutcome(
            log_volume=log_volume(self.root.lower, self.root.upper, self.free)
        )
        self.falsifier = Falsifier(ctx, self.outcome)
        self.exact = ExactDecider(ctx, self.polytopes, self.falsifier, self.outcome, self.record)
        self.branching = Branching(self.rhs, self.free, self.root_width)
        self.splits_relus = ctx.optimise_bounds and self.root.lower.size > INPUT_SPLIT_MAX_DIMS
        self.stack: list[Region] = [self.root]
        self.until: float | None = None
        self.batches = 0

    def output_magnitude(self) -> np.ndarray | None:
        """A bound on |outputs| over the case's box, when the property's coefficients need
        one (not exact in float64); else None."""
        if all(c.coefficients_exact_in_float64 for c in self.ctx.case.unsafe):
            return None
        low, high = interval_bounds(self.ctx.network, self.ctx.case.lower, self.ctx.case.upper)[-1]
        return np.maximum(np.abs(low), np.abs(high))

    def out_of_time(self) -> bool:
        sliced = self.until is not None and time.monotonic() >= self.until
        return sliced or self.ctx.remaining() <= 0 or self.ctx.cancelled()

    @property
    def deadline(self) -> float:
        """When long computations inside a step give up (verifiers/deadline.py): the search's
        deadline only; a slice's end (`until`) lets its last step finish, or a step longer
        than a slice would never be kept."""
        return self.ctx.deadline

    def run(self, until: float | None = None, falsify_root: bool = True) -> CaseOutcome:
        """Search until decided, out of time, cancelled, or (for a slice) `until` passes."""
        self.until = until
        if falsify_root and self.falsifier.falsify(self.root.lower, self.root.upper):
            return self.outcome
        while self.stack and self.outcome.counterexample is None:
            if self.ctx.remaining() <= 0 or self.ctx.cancelled():
                break
            if until is not None and time.monotonic() >= until:
                break
            if self.falsifier.deep_due() and self.falsifier.deep(self.stack):
                break
            batch = [self.stack.pop() for _ in range(min(BATCH, len(self.stack)))]
            if not self.step_or_undo(batch):
                break
            if self.ctx.on_step:
                self.ctx.on_step(self.outcome)
        self.outcome.open_regions = len(self.stack)
        return self.outcome

    def step_or_undo(self, batch: list[Region]) -> bool:
        """One step; False when the deadline passed inside it. Then the step is undone: its
        regions go back on the stack, open, and nothing it proved or pushed is kept."""
        stacked, share, leaves = (
            len(self.stack),
            self.outcome.proved_share,
            len(self.outcome.leaves),
        )
        try:
            self.step(batch)
        except OutOfTime:
            del self.stack[stacked:]
            del self.outcome.leaves[leaves:]
            self.outcome.proved_share = share
            self.stack.extend(reversed(batch))
            return False
        return True

    def step(self, batch: list[Region]) -> None:
        bounds, proved = self.bound(batch)
        open_idx = np.flatnonzero(~proved)
        if len(open_idx) == 0:
            return
        lower = np.stack([batch[i].lower for i in open_idx])
        upper = np.stack([batch[i].upper for i in open_idx])
        corners = bounds.objective_minimizer[open_idx].reshape(-1, lower.shape[1])
        if self.falsifier.try_points(np.concatenate([0.5 * (lower + upper), corners])):
            return
        self.batches += 1
        if self.batches % POLISH_EVERY == 0 and self.falsifier.polish_best(
            np.concatenate([0.5 * (lower + upper), corners])
        ):
            return
        to_split, parents = [], []
        for i in open_idx:
            parent = ParentBounds.of(bounds, i)
            if self.should_split(batch[i], parent):
                to_split.append(batch[i])
                parents.append(parent)
            else:
                self.decide_exactly(batch[i], parent)
                if self.outcome.counterexample is not None:
                    return
        if to_split:
            self.split(to_split, parents)

    def bound(self, regions: list[Region]):
        """Linear bounds of the regions; records and returns which are proved."""
        bounds, score, empty = self.bound_only(regions)
        proved = self.settle(regions, bounds, proves(score), empty)
        lower = np.stack([r.lower for r in regions])
        upper = np.stack([r.upper for r in regions])
        for i in np.flatnonzero(~proved):
            check(self.deadline)
            if self.splits_relus and not combination.worth_trying(
                bounds, i, self.rhs, self.groups, PHASE_LP_UNSTABLE
            ):
                continue
            phase_rows = combination.phase_rows(
                self.ctx.network, regions[i], bounds, i, lower[i], upper[i]
            )
            proofs = self.refuted_by_combination(bounds, i, lower[i], upper[i], phase_rows)
            if proofs is not None:
                proved[i] = True
                if bounds.slopes is not None:  # optimised: the checker needs the numbers
                    proofs = slopes.with_slopes(proofs, self.groups, bounds, i, self.ctx.network)
                self.record(regions[i], Evidence.COMBINATION, -1, proofs)
        return bounds, proved

    def bound_only(self, regions: list[Region], trial: bool = False):
        """Linear bounds of the regions, their scores, and which are empty. `trial`: parts
        bounded to choose a split (split_relus) keep their parent's intermediate bounds."""
        lower = np.stack([r.lower for r in regions])
        upper = np.stack([r.upper for r in regions])
        known = None
        if all(r.known is not None for r in regions):
            known = [
                (
                    np.stack([r.known[k][0] for r in regions]),
                    np.stack([r.known[k][1] for r in regions]),
                )
                for k in range(len(regions[0].known))
            ]
        search = self.slope_search(regions)
        bounds = None
        if search is not None and search.intermediate:
            # The root: plain CROWN first; what it proves needs no optimisation.
            bounds = linear_bounds(
                self.ctx.network, lower, upper, self.rows, known, None, self.deadline
            )
            if not np.all(proves(self.scores(bounds.objective_lower))):
                bounds = None
        if bounds is None:
            bounds = linear_bounds(
                self.ctx.network,
                lower,
                upper,
                self.rows,
                known,
                search,
                self.deadline,
                refine=search is None or search.start is None or not trial,
            )
        self.outcome.subproblems += len(regions)
        # Sound bounds that cross (lower > upper) leave no input: the phases contradict.
        empty = np.zeros(len(regions), dtype=bool)
        for lo, hi in bounds.layers:
            empty |= np.any(lo > hi, axis=1)
        return bounds, self.scores(bounds.objective_lower), empty

    def slope_search(self, regions: list[Region]) -> SlopeSearch | None:
        """Slopes optimised where ReLUs are split (many inputs): search/slopes.py."""
        if not self.ctx.optimise_bounds or self.root.lower.size <= INPUT_SPLIT_MAX_DIMS:
            return None
        search = slope_search(self.ctx.network, regions, self.root, self.rhs)
        if search.intermediate and not self.ctx.optimise_intermediate:
            return replace(search, intermediate=False)  # checkable: docs/certificate.md
        return search

    def settle(self, regions: list[Region], bounds, proved, empty) -> np.ndarray:
        """Record the regions proved by their linear bounds or empty; all such, as a mask."""
        for i in np.flatnonzero(empty):
            self.record(regions[i], Evidence.EMPTY, -1)
        for i in np.flatnonzero(proved & ~empty):
            clearance = bounds.objective_lower[i] - self.rhs
            row = int(np.argmax(clearance))
            proofs = self.row_proofs(clearance)
            if bounds.slopes is not None:  # optimised: the checker needs the numbers
                proofs = slopes.with_slopes(proofs, self.groups, bounds, i, self.ctx.network)
            self.record(regions[i], Evidence.LINEAR, row, proofs)
        return proved | empty

    def row_proofs(self, clearance: np.ndarray) -> list[dict]:
        """Per conjunction, the half-space (index within it) whose bound clears it most."""
        proofs = []
        for g in range(len(self.polytopes)):
            rows = np.flatnonzero(self.groups == g)
            proofs.append({"row": int(np.argmax(clearance[rows]))})
        return proofs

    def refuted_by_combination(
        self, bounds: LinearBounds, i: int, lower, upper, phase_rows=None
    ) -> list[dict] | None:
        """Every unsafe conjunction refuted on the box by one half-space, or a convex
        combination of the half-spaces' linear bounds and the region's phases
        (search/combination.py); per conjunction, what refutes it (None: not refuted)."""
        return combination.combination_proofs(
            bounds, i, lower, upper, self.rhs, self.groups, len(self.polytopes), phase_rows
        )

    def score_of(self, parent: ParentBounds) -> float:
        return float(self.scores(parent.objective_lower[None, :])[0])

    def scores(self, objective_lower: np.ndarray) -> np.ndarray:
        """Per region: min over unsafe conjunctions of the best half-space's clearance.

        > 0 proves the region safe; the larger, the closer to proved."""
        clearance = objective_lower - self.rhs[None, :]
        # A strict unsafe half-space (a.y < b) is already excluded when min a.y == b.
        clearance = np.where(self.strict & (clearance == 0.0), np.finfo(float).tiny, clearance)
        # Overflow proves nothing: NaN (inf - inf) and +inf (a bound beyond the float range)
        # count as no clearance at all.
        clearance = np.where(np.isfinite(clearance), clearance, -np.inf)
        per_group = [clearance[:, self.groups == g].max(axis=1) for g in range(len(self.polytopes))]
        return np.min(np.stack(per_group, axis=1), axis=1)

    def splits_inputs(self, region: Region, unstable: int) -> bool:
        """Few inputs: split the box. Many, or few unstable ReLUs left: split ReLUs (the box
        stays whole)."""
        return (
            region.lower.size <= INPUT_SPLIT_MAX_DIMS
            and unstable > RELU_SPLIT_AT
            and region.depth < INPUT_DEPTH_LIMIT
        )

    def can_split(self, region: Region) -> bool:
        return region.depth < SMT_DEPTH_LIMIT

    def should_split(self, region: Region, parent: ParentBounds) -> bool:
        """Split while the phase LPs (or z3) would face too many unstable ReLUs. ReLU splits go on to the end
        (with every ReLU stable the linear bounds are exact up to rounding, and z3's exact
        simplex over many inputs is slow), unless the bounds miss a proof only by rounding:
        a boundary-tight property (e.g. a ReLU output < 0) needs exact arithmetic."""
        if not self.can_split(region):
            return False
        if self.tight(parent):
            return False
        # The phase LP (and z3) get one capped attempt when few unstable ReLUs are left.
        limit = 0 if region.phases else self.lp_limit(region)
        return parent.unstable > limit

    def lp_limit(self, region: Region) -> int:
        return PHASE_LP_UNSTABLE if region.lp_limit is None else region.lp_limit

    def tight(self, parent: ParentBounds) -> bool:
        """The bounds miss a proof by rounding only."""
        return self.score_of(parent) > -TIGHT * (1.0 + float(np.abs(self.rhs).max()))

    def split(self, regions: list[Region], parents: list[ParentBounds]) -> None:
        by_inputs, by_relus = [], []
        for region, parent in zip(regions, parents, strict=True):
            if self.splits_inputs(region, parent.unstable):
                by_inputs.append((region, parent))
                continue
            choices = []
            if self.splits_relus:
                many = parent.unstable > MANY_UNSTABLE
                count = STRONG_CANDIDATES_MANY if many else STRONG_CANDIDATES
                choices = self.branching.relu_choices(parent, count)
            if choices:
                by_relus.append((region, parent, choices))
                continue
            choice = self.branching.relu(parent)
            score = self.score_of(parent)
            if choice is None:  # nothing left to split: z3 decides the region
                self.decide_exactly(region, parent, final=True)
            else:
                self.stack.extend(region.split_relu(*choice, parent.layers, score, parent.warm))
        if by_inputs:
            self.split_inputs(by_inputs)
        for group in _trial_groups(by_relus):
            self.split_relus(group)

    def split_relus(self, regions: list[tuple[Region, ParentBounds, list]]) -> None:
        """Filtered strong branching: each region's candidate ReLUs (relu_choices) are split
        on trial, the two parts bounded with the parent's intermediate bounds, and the split
        of best merit (best_bisections) is kept; of its parts, those proved are recorded at
        once and the others go on the stack with their trial bounds as a head start. Taken
        up, a part back-substitutes for every unstable neuron again: its splits tighten the
        later layers' bounds (digits 784-256x4 image 0, following the worse part 12 splits
        deep: -3.04 keeping them, -2.50 re-tightened). Any choice is sound: the two parts of
        a split cover the region."""
        parts, options = [], []
        for region, parent, choices in regions:
            score = self.score_of(parent)
            firsts = []
            for layer, neuron in choices:
                firsts.append(len(parts))
                parts.extend(region.split_relu(layer, neuron, parent.layers, score, parent.warm))
            options.append(firsts)
        bounds, score, empty = self.bound_only(parts, trial=True)
        kept = best_bisections(np.where(empty, np.inf, score), options)
        proved = self.settle(parts, bounds, proves(score) & kept, empty & kept)
        for i in np.flatnonzero(kept & ~proved):
            head = ParentBounds.of(bounds, i)
            self.stack.append(
                replace(parts[i], known=head.layers, parent_score=float(score[i]), warm=head.warm)
            )

    def split_inputs(self, regions: list[tuple[Region, ParentBounds]]) -> None:
        """Bisect each region along the candidate dimension whose halves bound best (the
        look-ahead of branching.py): of each region, the chosen halves proved are recorded
        at once and the others go on the stack with their bounds as a head start."""
        scores = [self.score_of(parent) for _, parent in regions]
        # The merit is a min over conjunctions: with several, one stuck conjunction hides
        # the progress on the others (seen on 16 boundary-tight ones), so the default
        # choice is taken without looking ahead.
        halves, options = self.branching.bisections(regions, scores, len(self.polytopes) == 1)
        bounds, score, empty = self.bound_only(halves)
        kept = best_bisections(score, options)
        proved = self.settle(halves, bounds, proves(score) & kept, empty & kept)
        for i in np.flatnonzero(kept & ~proved):
            known = [(lo[i], hi[i]) for lo, hi in bounds.layers]
            self.stack.append(replace(halves[i], known=known, parent_score=float(score[i])))

    def decide_exactly(self, region: Region, parent: ParentBounds, final: bool = False) -> None:
        """The phase LPs, then z3, on the region (search/leaf.py): capped attempts while
        splitting remains possible (`final`: z3 is not capped)."""
        splittable = self.can_split(region) and not final
        if self.out_of_time():
            self.stack.append(region)  # left open for later, or for an unknown verdict
            return
        if region.phases and self.exact.falsify_leaf(region, parent):
            return
        if parent.unstable <= self.lp_limit(region):
            if self.exact.by_phase_lp(region, parent):
                return
            # Given up: the LP waits, in this subtree, for markedly fewer unstable ReLUs.
            region = replace(region, lp_limit=parent.unstable * 3 // 4)
        if splittable and parent.unstable > SMT_UNSTABLE_LIMIT and not self.tight(parent):
            self.split([region], [parent])
            return
        # A capped attempt: a region z3 cannot settle quickly is split further instead.
        budget = min(self.ctx.remaining(), SMT_ATTEMPT_S) if splittable else self.ctx.remaining()
        answer = self.exact.by_smt(region, parent, budget)
        if answer.outcome is not SatOutcome.UNKNOWN:
            return
        if splittable and self.ctx.remaining() > 0:
            self.split([region], [parent])
        else:
            self.outcome.unknown_reasons.append(f"z3: {answer.reason or 'unknown'}")

    def record(
        self, region: Region, evidence: Evidence, detail: int, proofs: list[dict] | None = None
    ) -> None:
        self.outcome.proved_share += region.share * relative_volume(
            region.lower, region.upper, self.free, self.root_width
        )
        if self.ctx.record_tree:
            self.outcome.leaves.append(
                Leaf(
                    region.lower.tolist(),
                    region.upper.tolist(),
                    evidence,
                    detail,
                    [(k, j, active) for k, j, active in region.phases],
                    region.path,
                    in_property_units(proofs, self.ctx.case),
                )
            )


def _trial_groups(regions: list[tuple[Region, ParentBounds, list]]):
    """The regions to split on trial, in groups of about TRIAL_PARTS parts (at least one
    region a group)."""
    group: list[tuple[Region, ParentBounds, list]] = []
    parts = 0
    for entry in regions:
        if group and parts + 2 * len(entry[2]) > TRIAL_PARTS:
            yield group
            group, parts = [], 0
        group.append(entry)
        parts += 2 * len(entry[2])
    if group:
        yield group
