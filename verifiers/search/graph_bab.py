"""Branch and bound on a graph network (bounds/graph): the search for models that are not
an Affine/ReLU chain (residual joins, pooling, S-shaped activations, ...).

Regions are bounded in batches by graph_bounds; a region is proved when, for every unsafe
conjunction, some half-space's sound lower bound clears its right-hand side (a finite
value > 0: NaN and -inf never prove). Open regions are split:
- few inputs (INPUT_SPLIT_MAX_DIMS, or SSHAPED_INPUT_DIMS for networks with Sigmoid/Tanh,
  whose element splits never make a relaxation exact): the input box, along the dimension
  of largest |coefficient| x width over the open half-spaces;
- otherwise the input interval of one element of an elementwise non-linear op, the one of
  largest |coefficient| x gap between its relaxation's lines: at a breakpoint inside it
  (a ReLU phase split) or, for Sigmoid/Tanh, where the function is farthest from its
  chord (graph_branching.py chooses; a child keeps its parent's bounds upstream of the
  split: GraphRegion.changed). Each part
  asserts its interval (the parts cover the region), like a ReLU phase split; bounds that
  then cross show a part empty. On networks with Sigmoid/Tanh, split multipliers
  (graph_beta.py, beta-CROWN) bring the asserted intervals into the bound. On the others,
  filtered strong branching: of the STRONG_CANDIDATES elements (and max cases) of largest
  merit, the one whose worse part bounds best on trial (strong_choice).
Where slopes are optimised, an open root that the first falsification leaves open is
bounded again with its intermediate bounds optimised (alpha.intermediate), which every
region below inherits.
Relaxations of Sigmoid/Tanh/MaxPool never become exact, so the search is complete only up
to its split budget (MAX_DEPTH): a region at the budget is left unproved and the verdict is
`unknown` with the proved fraction, never a guess.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from verifiers.bounds.graph import alpha
from verifiers.bounds.graph.backsub import DeadlinePassed, GraphBounds, graph_bounds
from verifiers.bounds.graph.network import GraphNetwork
from verifiers.bounds.graph.ops.maxes import MaxOf
from verifiers.bounds.graph.ops.sshaped import SShaped
from verifiers.bounds.rounding import proves
from verifiers.search.context import CaseOutcome, SearchContext
from verifiers.search.graph_beta import refine, tighten
from verifiers.search.graph_branching import GraphBranching
from verifiers.search.graph_cuts import prove_by_cuts
from verifiers.search.graph_falsify import GraphFalsifier
from verifiers.search.proof_units import in_property_units
from verifiers.search.region import Evidence, Leaf, log_volume, relative_volume

log = logging.getLogger(__name__)

BATCH = 32
INPUT_SPLIT_MAX_DIMS = 8
SSHAPED_INPUT_DIMS = 16
SSHAPED_PLAIN_INPUT_DIMS = 256
# Networks with Max/MaxPool/Min: a max-case split's part where one candidate is the max
# keeps every other output's candidates, so case splits seldom close regions; measured on
# the 9-input MaxPool CNNs of tests/unit/test_graph_verify.py: element splits decide
# neither in 30 s, input splits both in 0.3 s.
MAXES_INPUT_DIMS = 16
MAX_DEPTH = 80
# Filtered strong branching on networks without Sigmoid/Tanh: digits cnn-maxpool, eps 0.05,
# 20 s of search: images 2 and 5 hold with 12 candidates (0.99 and 1.0 proved with 3 or 6,
# 0.37 without); trial parts take plain CROWN's lines (STRONG_SLOPES): the slopes' steps
# were 70% of the time and image 0 went 0.78 -> 0.89 proved in 20 s without them.
STRONG_CANDIDATES = 12
STRONG_SLOPES = False
ELEMENT_SHARE = 0.7
# Re-bound the S-shaped ops' inputs with the multipliers too (graph_beta.refine): a third
# to a half of the subproblems on the digits Sigmoid MLP, but each costs more than it saves
# (eps 0.05, image 4, interleaved: 18-20 s with, 12-13 s without): off until it is cheaper.
REFINE_WITH_MULTIPLIERS = False
WARM_STEPS = 4
# Steps of the root's optimised intermediate bounds (alpha.intermediate): on the digits
# residual CNN (eps 0.05) 64 steps gave the same root bounds as 16.
INTERMEDIATE_STEPS = 16
# Optimised tangent points of Sigmoid/Tanh lines (bounds/graph/alpha.py) in the search: on
# the digits Sigmoid MLP (eps 0.05, image 4, 30 s) they slowed the element-split search
# with multipliers (98.6% proved, against 99.996% without); images 7 and tanh 4 unchanged.
SSHAPED_SLOPES = False
BUDGET_REASON = "split budget exhausted on regions the relaxations could not prove"

Box = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True, eq=False)
class GraphRegion:
    lower: np.ndarray
    upper: np.ndarray
    depth: int = 0
    known: dict[str, Box] | None = None  # per tensor, bounds valid on this region
    share: float = 1.0  # of the box (halved by each element split)
    splits: tuple[tuple[str, int, float, bool], ...] = ()  # (tensor, index, at, upper part)
    # Max case splits: per Max/MaxPool output tensor, the candidates (n_out, K) the max is
    # taken over on this region.
    cases: dict[str, np.ndarray] | None = None
    parent_score: float = -np.inf
    multipliers: dict | None = None  # split multipliers found here: the children's start
    slopes: dict | None = None  # optimised ReLU slopes found here: the children's start
    # The splits from the case's box, for the certificate's tree: ("input", dim, at, side),
    # ("interval", tensor, index, at, side) or ("max", tensor, index, candidate, side).
    path: tuple[tuple, ...] = ()
    # The first node whose output may differ from the parent's (`known`): the split's; the
    # nodes before it keep the parent's bounds (graph_bounds' `reuse`). 0: everything anew.
    changed: int = 0


def search_graph_case(ctx: SearchContext) -> CaseOutcome:
    """One case on a graph network. Networks with Sigmoid/Tanh and more inputs than
    SSHAPED_INPUT_DIMS get two searches in turn: element splits with multipliers for
    ELEMENT_SHARE of the time, then box splits (up to SSHAPED_PLAIN_INPUT_DIMS inputs) from
    scratch. Neither won everywhere while S-shaped elements were split at 0 or the midpoint
    (digits Sigmoid MLP, 30 s: eps 0.05 image 7 was 99.97% proved by element splits, 6% by
    box splits; eps 0.03 image 9 held by box splits in 11 s and stayed 97% proved by element
    splits). Split where the function is farthest from its chord, element splits decide
    every digits Sigmoid/Tanh instance at eps 0.03 and all but tanh image 4 at eps 0.05
    (6000 regions each), box splits none of the rest: the element splits get most of the
    time (ELEMENT_SHARE 0.7, was 0.35). Proofs are not combined across the two:
    each answers alone, and an undecided pair reports the larger proved fraction."""
    first = GraphCaseSearch(ctx)
    if not first.multipliers or ctx.case.lower.size <= SSHAPED_INPUT_DIMS:
        return first.run()
    outcome = first.run(until=time.monotonic() + ELEMENT_SHARE * ctx.remaining())
    if outcome.counterexample is not None or outcome.decided:
        return outcome
    if ctx.remaining() <= 0 or ctx.cancelled() or ctx.case.lower.size > SSHAPED_PLAIN_INPUT_DIMS:
        return outcome
    second = GraphCaseSearch(ctx, box_splits=True).run(falsify_root=False, cuts=False)
    second.subproblems += outcome.subproblems
    if second.decided or second.proved_share >= outcome.proved_share:
        return second
    outcome.subproblems = second.subproblems
    return outcome


class GraphCaseSearch(GraphBranching):
    def __init__(self, ctx: SearchContext, box_splits: bool = False) -> None:
        self.ctx = ctx
        self.net: GraphNetwork = ctx.network  # type: ignore[assignment]
        polytopes = [
            c.outward_matrix(Fraction(ctx.margin), self._magnitude()) for c in ctx.case.unsafe
        ]
        self.rows = np.concatenate([a for a, _ in polytopes])
        self.rhs = np.concatenate([b for _, b in polytopes])
        self.strict = np.array([h.strict for c in ctx.case.unsafe for h in c.halfspaces])
        self.groups = np.repeat(np.arange(len(polytopes)), [len(b) for _, b in polytopes])
        self.n_groups = len(polytopes)
        lower, upper = ctx.case.lower, ctx.case.upper
        self.free = upper > lower
        self.root_width = np.where(self.free, upper - lower, 1.0)
        self.outcome = CaseOutcome(log_volume=log_volume(lower, upper, self.free))
        self.falsifier = GraphFalsifier(ctx, self.outcome)
        self.stack: list[GraphRegion] = [GraphRegion(lower, upper)]
        self.root_bounds: GraphBounds | None = None  # the root's last bounds (cut_root)
        self.budget_hit = False
        self.sshaped = any(isinstance(n.op, SShaped) for n in self.net.nodes)
        # Split multipliers (graph_beta) on S-shaped networks, where they decide what box
        # and plain element splits could not (digits MLPs, eps 0.05). On the digits residual
        # ReLU CNN they changed no subproblem count, cost 10-20% time (interleaved A/B on
        # images 1, 7, 8) and left the open instances open: off there for now.
        self.multipliers = self.sshaped and ctx.optimise_bounds and not box_splits
        self.box_splits = box_splits
        # Optimised slopes (bounds/graph/alpha.py) wherever bounds may be optimised. The
        # graph certificate does not carry them (as the chain's intermediate slopes): off
        # where certificates are re-checked (optimise_intermediate off, the service's
        # workers), so that a graph holds there checks at the first try. Only where elements
        # are split: box splits make many small regions, on which the slopes cost more than
        # they gain (digits Sigmoid MLP, eps 0.05, image 4, 30 s, with tangent points
        # optimised: 2.5x fewer regions bounded than without).
        self.maxes = any(isinstance(n.op, MaxOf) for n in self.net.nodes)
        self.slopes = (
            ctx.optimise_bounds
            and ctx.optimise_intermediate
            and ctx.case.lower.size > self.few_inputs
            and any(alpha.relu_like(n.op) for n in self.net.nodes)
        )

    @property
    def few_inputs(self) -> int:
        """Up to this many inputs, the search splits the input box."""
        if self.sshaped:
            return SSHAPED_INPUT_DIMS if self.multipliers else SSHAPED_PLAIN_INPUT_DIMS
        return MAXES_INPUT_DIMS if self.maxes else INPUT_SPLIT_MAX_DIMS

    def _magnitude(self) -> np.ndarray | None:
        if all(c.coefficients_exact_in_float64 for c in self.ctx.case.unsafe):
            return None
        case = self.ctx.case
        box = graph_bounds(self.net, case.lower[None], case.upper[None]).boxes[
            self.net.bound_output
        ]
        return np.maximum(np.abs(box[0][0]), np.abs(box[1][0]))

    def run(
        self, until: float | None = None, falsify_root: bool = True, cuts: bool = True
    ) -> CaseOutcome:
        """Bound the root first (cheap, and it decides most robust instances), then a
        gradient search for a counterexample, then (`cuts`) domain cuts at the root, then
        branch and bound."""
        case = self.ctx.case
        optimise_root = self.slopes and INTERMEDIATE_STEPS > 0
        # Domain cuts rest on bounds over cut boxes that the certificate does not carry:
        # only where the root's optimised bounds (not carried either) are allowed.
        cuts = cuts and self.ctx.optimise_bounds and self.ctx.optimise_intermediate
        self.step([self.stack.pop()], split=not (optimise_root or cuts))
        if self.stack and falsify_root and self.outcome.counterexample is None:
            self.falsifier.falsify(case.lower, case.upper)
        if self.stack and optimise_root and self.outcome.counterexample is None:
            # Open and not falsified: the root again, its intermediate bounds optimised
            # (every region below inherits them); only now, as it costs ~30 plain bounds.
            self.step([self.stack.pop()], intermediate=True, split=not cuts)
        if self.stack and cuts and self.outcome.counterexample is None:
            root = self.stack.pop()
            if self.cut_root(root):
                self.record(root, Evidence.CUTS, -1)
            elif self.root_bounds is not None:  # split it, its bounds as they were
                boxes = self.root_bounds.boxes
                known = {name: (lo[0], hi[0]) for name, (lo, hi) in boxes.items()}
                self.step([replace(root, known=known, changed=len(self.net.nodes))])
            else:
                self.step([root])
        self.falsifier.restart_clock()
        while self.stack and self.outcome.counterexample is None:
            if self.ctx.remaining() <= 0 or self.ctx.cancelled():
                break
            if until is not None and time.monotonic() >= until:
                break
            if self.falsifier.deep_due():
                starts = np.stack([0.5 * (r.lower + r.upper) for r in self.stack[-256:]])
                if self.falsifier.deep(starts):
                    break
            batch = [self.stack.pop() for _ in range(min(BATCH, len(self.stack)))]
            self.step(batch)
            if self.ctx.on_step:
                self.ctx.on_step(self.outcome)
        self.outcome.open_regions = len(self.stack)
        if self.budget_hit:
            self.outcome.unknown_reasons.append(BUDGET_REASON)
        return self.outcome

    def step(
        self, batch: list[GraphRegion], split: bool = True, intermediate: bool = False
    ) -> None:
        """Bound the regions (`intermediate`: with optimised intermediate bounds), record the
        proved ones, try points of the open ones, and split these (or, without `split`,
        leave them on the stack as they are)."""
        try:
            bounds, score, multipliers, slopes = self.bound(batch, intermediate=intermediate)
        except DeadlinePassed:  # the regions stay open: the verdict will say timeout
            self.stack.extend(batch)
            return
        if len(batch) == 1 and batch[0].depth == 0:
            self.root_bounds = bounds
        empty = bounds.empty
        open_idx = []
        for i, region in enumerate(batch):
            if empty[i]:
                self.record(region, Evidence.EMPTY, -1)
            elif proves(score[i]):
                proof = self.proof_rows(bounds.objective_lower[i], multipliers[i])
                self.record(region, Evidence.LINEAR, *proof)
            else:
                open_idx.append(i)
        if not open_idx:
            return
        centres = np.stack([0.5 * (batch[i].lower + batch[i].upper) for i in open_idx])
        corners = bounds.objective_minimizer[open_idx].reshape(-1, centres.shape[1])
        if self.falsifier.try_points(np.concatenate([centres, corners])):
            return
        if not split:
            self.stack.extend(batch[i] for i in open_idx)
            return
        for i in open_idx:
            start = replace(batch[i], multipliers=multipliers[i], slopes=slopes[i])
            self.split(start, bounds, i, float(score[i]))

    def cut_root(self, root: GraphRegion) -> bool:
        """Whether domain cuts (graph_cuts.py) prove every unsafe conjunction on the root,
        with the root's last bounds (optimised intermediate ones too) intersected in."""
        known = None
        if self.root_bounds is not None:
            boxes = self.root_bounds.boxes
            known = {
                n: (lo[:1], hi[:1]) for n, (lo, hi) in boxes.items() if n != self.net.input_name
            }
        return prove_by_cuts(
            self.net, (root.lower, root.upper), self.rows, self.rhs, self.strict, self.groups,
            known, self.ctx.deadline,
        )  # fmt: skip

    def bound(
        self, regions: list[GraphRegion], slopes_too: bool = True, intermediate: bool = False
    ) -> tuple[GraphBounds, np.ndarray, list, list]:
        """Bounds of the regions, their scores and per region the split multipliers and
        the optimised slopes found, for its children to start from. `slopes_too`: False
        leaves the slopes out (plain CROWN's lines); `intermediate`: the intermediate
        bounds optimised too (alpha.intermediate)."""
        lower = np.stack([r.lower for r in regions])
        upper = np.stack([r.upper for r in regions])
        found: list = [None] * len(regions)
        slopes: list = [None] * len(regions)
        known = None
        if all(r.known is not None for r in regions):
            names = regions[0].known.keys()  # type: ignore[union-attr]
            known = {
                name: (
                    np.stack([r.known[name][0] for r in regions]),  # type: ignore[index]
                    np.stack([r.known[name][1] for r in regions]),  # type: ignore[index]
                )
                for name in names
            }
        cases = None
        if any(r.cases for r in regions):
            cases = {
                node.output: np.stack([self.allowed(r, node) for r in regions])
                for node in self.net.nodes
                if isinstance(node.op, MaxOf)
            }
        reuse = min(r.changed for r in regions) if known is not None else 0
        optimised_boxes = None
        if intermediate:
            optimised_boxes = alpha.intermediate(INTERMEDIATE_STEPS, self.ctx.deadline)
        with np.errstate(invalid="ignore", over="ignore"):
            bounds = graph_bounds(
                self.net, lower, upper, self.rows, known, cases, self.ctx.deadline, reuse,
                optimised_boxes,
            )  # fmt: skip
        if self.slopes and slopes_too:
            with np.errstate(invalid="ignore", over="ignore"):
                warm = [r.slopes for r in regions]
                # Children start from their parent's slopes: a few steps go on from there.
                steps = WARM_STEPS if all(warm) else alpha.STEPS
                bounds.objective_lower, slopes = alpha.optimise(
                    self.net, bounds, self.rows, self.ctx.deadline, warm, steps, SSHAPED_SLOPES
                )
        if self.multipliers and any(r.splits for r in regions):
            splits, deadline = [r.splits for r in regions], self.ctx.deadline
            if REFINE_WITH_MULTIPLIERS:
                # Boxes tightened by the splits upstream, then the relaxations redone on them.
                with np.errstate(invalid="ignore", over="ignore"):
                    tighter = refine(self.net, bounds, splits, deadline)
                    if tighter:
                        bounds = graph_bounds(
                            self.net, lower, upper, self.rows, {**bounds.boxes, **tighter},
                            cases, deadline=deadline,
                        )  # fmt: skip
            warm = [r.multipliers or {} for r in regions]
            bounds.objective_lower, found = tighten(
                self.net, bounds, self.rows, splits, deadline, warm=warm
            )
        self.outcome.subproblems += len(regions)
        return bounds, self.scores(bounds.objective_lower), found, slopes

    def scores(self, objective_lower: np.ndarray) -> np.ndarray:
        """Per region: min over unsafe conjunctions of the best half-space's clearance; only a
        finite value > 0 proves (NaN counts as -inf)."""
        clearance = np.nan_to_num(objective_lower - self.rhs[None, :], nan=-np.inf, posinf=-np.inf)
        clearance = np.where(self.strict & (clearance == 0.0), np.finfo(float).tiny, clearance)
        per_group = [clearance[:, self.groups == g].max(axis=1) for g in range(self.n_groups)]
        return np.min(np.stack(per_group, axis=1), axis=1)

    def split(self, region: GraphRegion, bounds: GraphBounds, i: int, score: float) -> None:
        if region.depth >= MAX_DEPTH:
            self.budget_hit = True
            return
        known = {name: (lo[i], hi[i]) for name, (lo, hi) in bounds.boxes.items()}
        child = replace(region, depth=region.depth + 1, known=known, parent_score=score)
        open_rows = bounds.objective_lower[i] <= self.rhs
        element = None
        # Few inputs: the box is split; else the loosest element (the box when none is).
        # S-shaped networks: which kind wins depends on the network. Measured in 20 s runs:
        # digits Sigmoid MLP (64 inputs, eps 0.05, image 7): box splits 6% proved, element
        # splits 47%, element splits with multipliers (graph_beta) 99.97%; random 12-input
        # Sigmoid MLPs (tests/unit/test_graph_beta.py): box splits hold in 0.2 s, element
        # splits with multipliers 5% proved. Hence box splits up to SSHAPED_INPUT_DIMS
        # inputs with multipliers (up to SSHAPED_PLAIN_INPUT_DIMS without, as before).
        if region.lower.size > self.few_inputs:
            element = self.strong_choice(child, bounds, i, open_rows)
        if element is None:
            self.stack.extend(self.split_input(child, bounds, i, open_rows))
        else:
            self.stack.extend(self.split_element(child, *element))

    def strong_choice(self, child: GraphRegion, bounds: GraphBounds, i: int, open_rows):
        """Of the STRONG_CANDIDATES elements of largest merit, the one whose two parts'
        bounds (computed here, as filtered strong branching does) have the best worse
        score; the first one when the others are not better."""
        ranked = self.element_choices(
            bounds, i, open_rows, 1 if self.sshaped else STRONG_CANDIDATES
        )
        if len(ranked) <= 1:
            return ranked[0] if ranked else None
        parts = [p for choice in ranked for p in self.split_element(child, *choice)]
        try:
            _, score, _, _ = self.bound(parts, slopes_too=STRONG_SLOPES)
        except DeadlinePassed:
            return ranked[0]
        worse = np.nan_to_num(np.minimum(score[0::2], score[1::2]), nan=-np.inf)
        return ranked[int(np.argmax(worse))]

    def proof_rows(
        self, objective_lower: np.ndarray, multipliers: dict | None = None
    ) -> tuple[int, list[dict] | None]:
        """The proved row overall, and per unsafe conjunction the row (counted within it)
        of the half-space whose bound clears it best (the certificate's proofs), with the
        split multipliers that gave its bound (graph_beta.tighten), nonzero ones only."""
        clearance = objective_lower - self.rhs
        proofs = []
        for g in range(self.n_groups):
            rows = np.flatnonzero(self.groups == g)
            best = int(np.argmax(clearance[rows]))
            proof: dict = {"row": best}
            gammas = [
                [name, int(j), float(values[rows[best]])]
                for (name, j), values in (multipliers or {}).items()
                if values[rows[best]] != 0
            ]
            if gammas:
                proof["gammas"] = gammas
            proofs.append(proof)
        return int(np.argmax(clearance)), proofs

    def record(
        self, region: GraphRegion, evidence: Evidence, detail: int, proofs: list | None = None
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
                    [],
                    region.path,
                    in_property_units(proofs, self.ctx.case),
                )  # fmt: skip
            )
