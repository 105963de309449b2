"""The phase LP search (search/phase_lp.py) against exact ground truth.

REFUTED is a soundness claim, so every verdict is checked against an oracle that shares no
code with the engine: the exhaustive activation-pattern enumeration of tests/oracle.py on the
small instances, and on larger networks a depth-first enumeration of the activation patterns
the box admits (an LP prunes each phase the box and the phases above it rule out), one LP per
pattern for the exact unsafe margin. Thresholds sit a hair (1e-6 relative) on either side of
the exact optimum; z3 (smt/restricted.py) is a second opinion on some of them. A fuzz test
puts a sampled input exactly (in rational arithmetic) on the unsafe set's boundary.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest
from scipy.optimize import linprog

from tests.oracle import random_network
from tests.unit.test_search_oracle import at_least_case, instances
from verifiers.bounds.linear import linear_bounds
from verifiers.model.network import AffineLayer, PiecewiseLinearNetwork, ReluLayer
from verifiers.search.phase_lp import PhaseOutcome, PhaseSearch
from verifiers.smt.restricted import decide_region
from verifiers.smt.solver import SatOutcome
from verifiers.spec.property import Conjunction, HalfSpace, round_up

MAX_LPS = 20_000  # generous: every instance here needs a few hundred LPs at most
TIME_S = 20.0
RELATIVE_GAP = 1e-6
# HiGHS' primal feasibility tolerance: how far a candidate may sit outside its constraints.
LP_TOLERANCE = 1e-7

Phase = tuple[int, int, bool]  # (ReLU layer, neuron, active)


# --- the oracle: activation patterns of a box, and the exact unsafe margin ------------------


@dataclass(frozen=True)
class Piece:
    """One activation pattern: on {x in box : a_ub x <= b_ub} the output is out_w x + out_b."""

    a_ub: np.ndarray
    b_ub: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray


@dataclass(frozen=True)
class Net:
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    alpha: float

    @functools.cached_property
    def network(self) -> PiecewiseLinearNetwork:
        layers = []
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            layers.append(AffineLayer(w, b, np.zeros_like(w), np.zeros_like(b)))
            if k < len(self.weights) - 1:
                layers.append(ReluLayer(len(b), self.alpha))
        return PiecewiseLinearNetwork(tuple(layers))

    def pieces(self, lower, upper, fixed: tuple[Phase, ...] = ()) -> list[Piece]:
        """Every activation pattern some input of the box has (up to LP tolerance: a pattern
        the LP drops has an input set of width ~1e-9, on which the continuous network is
        within ~1e-9 of a neighbouring pattern); `fixed` phases are imposed."""
        found: list[Piece] = []
        n = len(lower)
        phases = {(k, j): active for k, j, active in fixed}
        start = (np.eye(n), np.zeros(n), np.zeros((0, n)), np.zeros(0))
        self._layer(0, *start, (lower, upper), phases, found)
        return found

    def _layer(self, k, lin_w, lin_b, a_ub, b_ub, box, fixed, found) -> None:
        """Extend a pattern by layer k; lin_w x + lin_b is layer k's input on the pattern."""
        w, b = self.weights[k], self.biases[k]
        if k == len(self.weights) - 1:
            found.append(Piece(a_ub, b_ub, w @ lin_w, w @ lin_b + b))
            return
        pre_w, pre_b = w @ lin_w, w @ lin_b + b
        stack = [(0, a_ub, b_ub, ())]
        while stack:
            j, a, c, slopes = stack.pop()
            if j == len(b):
                s = np.array(slopes)
                self._layer(k + 1, pre_w * s[:, None], pre_b * s, a, c, box, fixed, found)
                continue
            phases = [fixed[k, j]] if (k, j) in fixed else _phases(pre_w[j], pre_b[j], a, c, box)
            for active in phases:
                sign = -1.0 if active else 1.0  # active: -pre <= 0; inactive: pre <= 0
                stack.append(
                    (
                        j + 1,
                        np.vstack([a, sign * pre_w[j]]),
                        np.append(c, -sign * pre_b[j]),
                        (*slopes, 1.0 if active else self.alpha),
                    )
                )


def _phases(row, const, a_ub, b_ub, box) -> list[bool]:
    """The phases of the neuron row x + const that inputs of the node have; [] when the node
    has no input."""
    # The range over the whole box first: it settles most neurons without an LP.
    reach = np.maximum(row * box[0], row * box[1]), np.minimum(row * box[0], row * box[1])
    if const + reach[1].sum() >= 0.0:
        return [True]
    if const + reach[0].sum() <= 0.0:
        return [False]
    constraints = {"A_ub": a_ub, "b_ub": b_ub} if len(b_ub) else {}
    bounds = list(zip(*box, strict=True))
    low = linprog(row, bounds=bounds, method="highs", **constraints)
    if low.status == 2:
        return []
    high = linprog(-row, bounds=bounds, method="highs", **constraints)
    assert low.status == 0 and high.status == 0
    if low.fun + const >= 0.0:
        return [True]
    if -high.fun + const <= 0.0:
        return [False]
    return [True, False]


def unsafe_margin(pieces: list[Piece], a, b, lower, upper) -> tuple[float, np.ndarray | None]:
    """max over the box of min_i (b - a y)_i, and an argmax: >= 0 iff some input is in
    {a y <= b}; -inf when no piece is left."""
    best, best_x = -np.inf, None
    n = len(lower)
    for piece in pieces:
        # Variables (x, s): maximise s subject to s + a (out_w x + out_b) <= b.
        rows = np.hstack([a @ piece.out_w, np.ones((len(b), 1))])
        rows = np.vstack([rows, np.hstack([piece.a_ub, np.zeros((len(piece.b_ub), 1))])])
        rhs = np.concatenate([b - a @ piece.out_b, piece.b_ub])
        cost = np.zeros(n + 1)
        cost[-1] = -1.0
        bounds = [*zip(lower, upper, strict=True), (None, None)]
        res = linprog(cost, A_ub=rows, b_ub=rhs, bounds=bounds, method="highs")
        if res.status == 0 and -res.fun > best:
            best, best_x = -res.fun, res.x[:n]
    return float(best), best_x


# --- helpers ---------------------------------------------------------------------------------


def layer_bounds(network, lower, upper, known=None):
    if known is not None:
        known = [(lo[None], hi[None]) for lo, hi in known]
    bounds = linear_bounds(network, lower[None], upper[None], known=known)
    return [(lo[0], hi[0]) for lo, hi in bounds.layers]


def conjunction(a: np.ndarray, b: np.ndarray) -> Conjunction:
    return Conjunction(
        tuple(
            HalfSpace(tuple(Fraction(float(v)) for v in row), Fraction(float(rhs)))
            for row, rhs in zip(a, b, strict=True)
        )
    )


def decide(network, lower, upper, layers, unsafe: list[Conjunction], keep=None):
    search = PhaseSearch(network, lower, upper, layers, [c.matrix() for c in unsafe], keep)
    return search.decide(MAX_LPS, time.monotonic() + TIME_S)


def check_candidate(network, answer, lower, upper, unsafe: list[Conjunction], scale) -> None:
    """The candidate lies in the box and its float64 output is unsafe, up to LP tolerance."""
    assert answer.outcome is PhaseOutcome.CANDIDATE and answer.candidates
    x = answer.candidates[0]
    width = upper - lower
    assert np.all(x >= lower - LP_TOLERANCE * (1 + width))
    assert np.all(x <= upper + LP_TOLERANCE * (1 + width))
    y = network.evaluate(x[None, :])[0]
    assert max(c.margin(y) for c in unsafe) >= -LP_TOLERANCE * (1 + scale)


def z3_says(network, lower, upper, layers, unsafe: list[Conjunction]) -> SatOutcome:
    """z3 on the region (its stable ReLUs eliminated, smt/restricted.py); a sat witness must
    be unsafe in float64 too."""
    answer = decide_region(
        network,
        [Fraction(float(v)) for v in lower],
        [Fraction(float(v)) for v in upper],
        layers,
        unsafe,
        30,
    )
    if answer.outcome is SatOutcome.SAT:
        x = np.array([float(v) for v in answer.inputs])
        y = network.evaluate(x[None, :])[0]
        assert max(c.margin(y) for c in unsafe) >= -1e-9
    return answer.outcome


# --- 1: the small oracle instances -----------------------------------------------------------


@pytest.mark.parametrize("index", range(16))
def test_phase_search_matches_the_enumeration_oracle(index: int) -> None:
    """Just above the exact maximum the whole box is refuted; just below, a candidate."""
    network, c, lower, upper, best = instances(16)[index]
    layers = layer_bounds(network, lower, upper)
    delta = RELATIVE_GAP * (1.0 + abs(best))
    safe = list(at_least_case(c, best + delta, lower, upper).unsafe)
    assert decide(network, lower, upper, layers, safe).outcome is PhaseOutcome.REFUTED
    unsafe = list(at_least_case(c, best - delta, lower, upper).unsafe)
    answer = decide(network, lower, upper, layers, unsafe)
    check_candidate(network, answer, lower, upper, unsafe, abs(best))


# --- 2: random deeper networks against the pattern oracle, z3 and sampling -------------------

SHAPES = [[3, 8, 8, 2], [2, 8, 8, 8, 1], [4, 8, 8, 2], [3, 8, 8, 8, 2]]


@functools.cache
def random_instance(index: int) -> tuple[Net, np.ndarray, np.ndarray]:
    """A network of 2-3 hidden layers of 8 (ReLU, or LeakyRelu every third) and a box."""
    rng = np.random.default_rng(100 + index)
    sizes = SHAPES[index % len(SHAPES)]
    weights, biases = random_network(rng, sizes)
    center = rng.uniform(-1.0, 1.0, sizes[0])
    half = rng.uniform(0.05, 0.3, sizes[0])
    return Net(weights, biases, 0.1 if index % 3 == 2 else 0.0), center - half, center + half


@functools.cache
def random_pieces(index: int, fixed: tuple[Phase, ...] = ()) -> list[Piece]:
    net, lower, upper = random_instance(index)
    return net.pieces(lower, upper, fixed)


def unsafe_sets(rng, n_out: int):
    """DNFs of (a, b): one row, a conjunction of two rows, and a decoy conjunction (b = -1e3,
    far on the safe side) or'ed with one row. b None: the tight conjunction, its b to be set."""
    one = rng.normal(size=(1, n_out))
    two = rng.normal(size=(2, n_out))
    return [[(one, None)], [(two, None)], [(rng.normal(size=(1, n_out)), -1e3), (one, None)]]


def widened(layers):
    """Looser bounds, still sound: more ReLUs unstable, more phases to split."""
    return [(lo - 0.05 * (hi - lo) - 1e-3, hi + 0.05 * (hi - lo) + 1e-3) for lo, hi in layers]


@pytest.mark.parametrize("index", range(12))
def test_random_networks_match_the_pattern_oracle(index: int) -> None:
    """2-3 hidden layers of 8 on a random box, with tight and with looser layer bounds: a
    hair on the safe side of the exact margin is refuted, a hair on the unsafe side is not."""
    net, lower, upper = random_instance(index)
    network, pieces = net.network, random_pieces(index)
    rng = np.random.default_rng(index)
    samples = lower + rng.random((2000, len(lower))) * (upper - lower)
    outputs = network.evaluate(samples)
    tight = layer_bounds(network, lower, upper)
    for k, sets in enumerate(unsafe_sets(rng, network.n_outputs)):
        a, _ = sets[-1]
        best, argmax = unsafe_margin(pieces, a, np.zeros(len(a)), lower, upper)
        # The oracle itself: no sample beats it, and its argmax attains it.
        assert np.max(np.min(-outputs @ a.T, axis=1)) <= best + 1e-9
        attained = np.min(-a @ network.evaluate(argmax[None, :])[0])
        assert attained == pytest.approx(best, abs=1e-9 * (1 + abs(best)))
        delta = RELATIVE_GAP * (1.0 + abs(best))
        for shift, violated in ((-delta, False), (delta, True)):
            # The tight conjunction's margin becomes `shift`; a decoy keeps its rhs.
            unsafe = [
                conjunction(m, np.full(len(m), shift - best if rhs is None else rhs))
                for m, rhs in sets
            ]
            for layers in (tight, widened(tight)) if k == 0 else (tight,):
                answer = decide(network, lower, upper, layers, unsafe)
                if violated:
                    check_candidate(network, answer, lower, upper, unsafe, abs(best))
                else:
                    assert answer.outcome is PhaseOutcome.REFUTED
            if k == 0 and index % 2 == 0:  # a second opinion on the oracle's verdict
                want = SatOutcome.SAT if violated else SatOutcome.UNSAT
                assert z3_says(network, lower, upper, tight, unsafe) is want


# --- 3: regions narrowed to a ReLU phase (`keep`) --------------------------------------------


def split(network, lower, upper, layers, phases: tuple[Phase, ...]):
    """The layer bounds and keep masks of the region of the box with these ReLU phases, built
    as bab's Region.split_relu and phase_masks do (bounds narrowed, then recomputed)."""
    known = [(lo.copy(), hi.copy()) for lo, hi in layers]
    masks = [np.zeros(layer.size, dtype=bool) for layer in network.relu_layers]
    for k, j, active in phases:
        lo, hi = known[k]
        if active:
            lo[j] = max(lo[j], 0.0)
        else:
            hi[j] = min(hi[j], 0.0)
        masks[k][j] = True
    return layer_bounds(network, lower, upper, known), masks


def unstable_relus(layers) -> list[tuple[int, int]]:
    return [
        (k, int(j)) for k, (lo, hi) in enumerate(layers[:-1]) for j in np.flatnonzero(lo * hi < 0)
    ]


def in_phase(network, x, phases: tuple[Phase, ...], scale: float) -> bool:
    pre = network.pre_activations(x[None, :])
    tolerance = LP_TOLERANCE * (1.0 + scale)
    return all(
        (pre[k][0, j] >= -tolerance) if a else (pre[k][0, j] <= tolerance) for k, j, a in phases
    )


@pytest.mark.slow
def test_a_phase_region_is_refuted_only_when_that_phase_is_safe() -> None:
    """One or two ReLUs fixed to a phase: the threshold a hair above the phase's own maximum
    is refuted, a hair below gives a candidate in that phase. Where the rest of the box goes
    higher, only the phase restriction (keep) can refute: that must happen too."""
    rng = np.random.default_rng(11)
    decided, phase_only = 0, 0
    for index in range(8):
        net, lower, upper = random_instance(index)
        network = net.network
        tight = layer_bounds(network, lower, upper)
        a = rng.normal(size=(1, network.n_outputs))
        whole, _ = unsafe_margin(random_pieces(index), a, np.zeros(1), lower, upper)
        first = unstable_relus(tight)
        for k, j in [first[i] for i in rng.choice(len(first), min(2, len(first)), replace=False)]:
            for active in (True, False):
                phases: tuple[Phase, ...] = ((k, j, active),)
                layers, masks = split(network, lower, upper, tight, phases)
                more = unstable_relus(layers)
                if more and rng.random() < 0.5:  # a second split, deeper in the search
                    phases = (*phases, (*more[rng.integers(len(more))], bool(rng.random() < 0.5)))
                    layers, masks = split(network, lower, upper, tight, phases)
                best, _ = unsafe_margin(random_pieces(index, phases), a, np.zeros(1), lower, upper)
                if best == -np.inf or any(np.any(lo > hi) for lo, hi in layers):
                    continue  # no input has these phases
                delta = RELATIVE_GAP * (1.0 + abs(best))
                safe = [conjunction(a, np.array([-best - delta]))]
                answer = decide(network, lower, upper, layers, safe, masks)
                assert answer.outcome is PhaseOutcome.REFUTED, (index, phases)
                phase_only += whole - best - delta >= 0.0  # the whole box is unsafe here
                unsafe = [conjunction(a, np.array([-best + delta]))]
                answer = decide(network, lower, upper, layers, unsafe, masks)
                check_candidate(network, answer, lower, upper, unsafe, abs(best))
                assert in_phase(network, answer.candidates[0], phases, abs(best))
                decided += 1
    assert decided >= 20 and phase_only >= 5, (decided, phase_only)


# --- 4: points exactly on the unsafe boundary ------------------------------------------------


def exact_forward(net: Net, x: np.ndarray) -> tuple[list[list[Fraction]], list[Fraction]]:
    """Pre-activations and outputs in exact rational arithmetic (the semantics the search
    must be sound for: real arithmetic on the float weights)."""
    values = [Fraction(float(v)) for v in x]
    alpha = Fraction(net.alpha)
    pres = []
    for k, (w, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        pre = [
            sum((Fraction(float(wij)) * v for wij, v in zip(row, values, strict=True)), Fraction(0))
            + Fraction(float(bi))
            for row, bi in zip(w, b, strict=True)
        ]
        pres.append(pre)
        values = pre if k == len(net.weights) - 1 else [v if v >= 0 else alpha * v for v in pre]
    return pres[:-1], values


def test_an_exactly_unsafe_sample_is_never_refuted() -> None:
    """Fuzz: the most unsafe of a few hundred samples is made unsafe exactly (each rhs is its
    exact a.y rounded up), so the box, or the phase region containing it, has an unsafe
    input however close the rest of the box is. REFUTED would be unsound."""
    rng = np.random.default_rng(2024)
    with_phases = 0
    for index in range(60):
        sizes = SHAPES[index % len(SHAPES)]
        weights, biases = random_network(rng, sizes)
        net = Net(weights, biases, float(rng.choice([0.0, 0.0, 0.1])))
        network = net.network
        center = rng.uniform(-1.0, 1.0, sizes[0])
        half = rng.choice([0.01, 0.1, 0.3]) * rng.uniform(0.5, 1.0, sizes[0])
        lower, upper = center - half, center + half
        a = rng.normal(size=(int(rng.integers(1, 3)), sizes[-1]))
        samples = lower + rng.random((300, sizes[0])) * (upper - lower)
        x = samples[np.argmax(np.min(-network.evaluate(samples) @ a.T, axis=1))]
        pres, y = exact_forward(net, x)
        rhs = [
            round_up(
                sum((Fraction(float(v)) * yi for v, yi in zip(row, y, strict=True)), Fraction(0))
            )
            for row in a
        ]
        unsafe = [conjunction(a, np.array(rhs))]
        layers, masks = layer_bounds(network, lower, upper), None
        candidates = unstable_relus(layers)
        if candidates and index % 2:  # the phase region that holds x
            k, j = candidates[rng.integers(len(candidates))]
            layers, masks = split(network, lower, upper, layers, ((k, j, pres[k][j] >= 0),))
            with_phases += 1
        answer = decide(network, lower, upper, layers, unsafe, masks)
        assert answer.outcome is not PhaseOutcome.REFUTED, index
        check_candidate(network, answer, lower, upper, unsafe, max(abs(float(v)) for v in rhs))
        if masks is not None:
            assert in_phase(network, answer.candidates[0], ((k, j, pres[k][j] >= 0),), 1.0)
    assert with_phases >= 20
