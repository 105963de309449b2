"""Optimised slopes and split multipliers (bounds/alpha.py, bounds/optimised.py).

The optimiser only proposes; every bound must still enclose the true values: against dense
sampling and the exact activation-pattern oracle, on boxes and on regions narrowed by ReLU
splits. Each row's optimised bound is never looser than CROWN's on the same intermediate
bounds, and a non-finite proposal changes nothing.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.oracle import exact_maximum, random_instance
from tests.unit.test_search_oracle import at_least_case, to_network
from verifiers.bounds import alpha
from verifiers.bounds.alpha import SlopeSearch
from verifiers.bounds.linear import LinearBounds, linear_bounds
from verifiers.search import bab, combination
from verifiers.search.bab import CaseSearch
from verifiers.search.context import SearchContext


def instance(seed: int):
    weights, biases, lower, upper, rng = random_instance(seed)
    c = rng.normal(size=(3, len(biases[-1])))
    return weights, biases, to_network(weights, biases), c, lower, upper, rng


def pre_activations(network, x: np.ndarray) -> list[np.ndarray]:
    values, out = [], x
    for layer in network.layers:
        out = layer.apply(out)
        if hasattr(layer, "weight"):
            values.append(out)
    return values


@pytest.mark.parametrize("seed", range(6))
def test_optimised_bounds_enclose_sampled_and_exact_values(seed: int) -> None:
    weights, biases, network, c, lower, upper, rng = instance(seed)
    search = SlopeSearch(30, intermediate=True, intermediate_iterations=15)
    bounds = linear_bounds(network, lower[None], upper[None], c, slopes=search)
    x = rng.uniform(lower, upper, size=(20000, lower.size))
    x = np.concatenate([x, np.where(rng.random((2000, lower.size)) < 0.5, lower, upper)])
    for (lo, hi), values in zip(bounds.layers, pre_activations(network, x), strict=True):
        assert np.all(values >= lo[0]) and np.all(values <= hi[0])
    outputs = network.evaluate(x) @ c.T
    assert np.all(outputs >= bounds.objective_lower[0])
    top, _ = exact_maximum(weights, biases, -c[0], lower, upper)
    assert bounds.objective_lower[0, 0] <= -top  # the exact minimum is -top


@pytest.mark.parametrize("seed", range(12))
def test_optimised_rows_are_never_looser_than_crown(seed: int) -> None:
    _, _, network, c, lower, upper, _ = instance(seed)
    box = (np.stack([lower, lower * 0.5]), np.stack([upper, upper * 0.5 + 0.1]))
    crown = linear_bounds(network, *box, c)
    tuned = linear_bounds(network, *box, c, slopes=SlopeSearch(20))
    for (lo, hi), (tlo, thi) in zip(crown.layers, tuned.layers, strict=True):
        np.testing.assert_array_equal(lo, tlo)  # no intermediate search: same layers
        np.testing.assert_array_equal(hi, thi)
    assert np.all(tuned.objective_lower >= crown.objective_lower)
    assert np.all(np.isfinite(tuned.objective_lower))


def split_region(network, lower, upper, rng):
    """Bounds of a region narrowed by splitting two unstable ReLUs, with their signs."""
    known = [(lo[0], hi[0]) for lo, hi in linear_bounds(network, lower[None], upper[None]).layers]
    phases, signs = [], [np.zeros((1, layer.size)) for layer in network.relu_layers]
    for k in range(len(network.relu_layers)):
        lo, hi = known[k]
        unstable = np.flatnonzero((lo < 0) & (hi > 0))
        if len(unstable) and len(phases) < 2:
            j, active = int(rng.choice(unstable)), bool(rng.random() < 0.5)
            lo, hi = lo.copy(), hi.copy()
            (lo if active else hi)[j] = 0.0
            known[k] = (lo, hi)
            phases.append((k, j, active))
            signs[k][0, j] = -1.0 if active else 1.0
    return [(lo[None], hi[None]) for lo, hi in known], phases, signs


def split_instance(seed: int):
    """A random instance narrowed by ReLU splits (skipped when no ReLU is unstable):
    network, rows, box, known bounds, phases, signs, plain CROWN's bounds on it, and rng."""
    _, _, network, c, lower, upper, rng = instance(seed)
    known, phases, signs = split_region(network, lower, upper, rng)
    if not phases:
        pytest.skip("no unstable ReLU to split")
    box = (lower[None], upper[None])
    plain = linear_bounds(network, *box, c, known, refine=False)
    return network, c, box, known, phases, signs, plain, rng


def in_region(network, x: np.ndarray, phases) -> np.ndarray:
    values = pre_activations(network, x)
    keep = np.ones(len(x), dtype=bool)
    for k, j, active in phases:
        keep &= values[k][:, j] >= 0 if active else values[k][:, j] <= 0
    return keep


@pytest.mark.parametrize("seed", range(12))
def test_split_multipliers_bound_the_region(seed: int) -> None:
    """With beta-CROWN's multipliers the bound holds on the region (the box's inputs with
    the split phases), and is never looser than without them."""
    network, c, box, known, phases, signs, plain, rng = split_instance(seed)
    lower, upper = box[0][0], box[1][0]
    search = SlopeSearch(40, signs=signs)
    tuned = linear_bounds(network, *box, c, known, search, refine=False)
    assert np.all(tuned.objective_lower >= plain.objective_lower)
    x = rng.uniform(lower, upper, size=(40000, lower.size))
    x = x[in_region(network, x, phases)]
    assert np.all(network.evaluate(x) @ c.T >= tuned.objective_lower[0])


def test_a_non_finite_proposal_is_ignored(monkeypatch) -> None:
    """NaN or infinite slopes and multipliers from the optimiser never become a bound."""
    _, _, network, c, lower, upper, _ = instance(1)
    crown = linear_bounds(network, lower[None], upper[None], c)

    def broken(*args, **kwargs):
        slopes, betas = real(*args, **kwargs)
        return [np.full_like(s, np.nan) for s in slopes], [np.full_like(b, np.inf) for b in betas]

    real = alpha.optimise_slopes
    monkeypatch.setattr("verifiers.bounds.linear.optimise_slopes", broken)
    tuned = linear_bounds(network, lower[None], upper[None], c, slopes=SlopeSearch(5))
    np.testing.assert_array_equal(tuned.objective_lower, crown.objective_lower)


def test_projection_keeps_slopes_valid() -> None:
    lines = alpha.Lines(
        default=np.array([[[0.0, 1.0, 0.0]]]),
        upper=np.array([[[0.5, 1.0, 0.0]]]),
        intercept=np.zeros((1, 3)),
        floor=0.0,
        unstable=np.array([[[True, False, False]]]),
        sign=np.array([[[0.0, -1.0, 0.0]]]),
    )
    slopes = alpha._project(np.array([[[np.nan, 7.0, -3.0]]]), lines)
    np.testing.assert_array_equal(slopes, [[[0.0, 1.0, 0.0]]])
    betas = alpha._project_beta(np.array([[[5.0, np.inf, 2.0]]]), lines)
    np.testing.assert_array_equal(betas, [[[0.0, 0.0, 0.0]]])
    betas = alpha._project_beta(np.array([[[5.0, -2.0, 2.0]]]), lines)
    np.testing.assert_array_equal(betas, [[[0.0, 0.0, 0.0]]])
    betas = alpha._project_beta(np.array([[[5.0, 3.0, 2.0]]]), lines)
    np.testing.assert_array_equal(betas, [[[0.0, 3.0, 0.0]]])


def assert_decided_a_hair_either_side_of_the_maximum(seed: int) -> None:
    """The search on instance(seed) holds just above the exact maximum (enumeration) and
    finds a counterexample just below it."""
    weights, biases, network, c, lower, upper, _ = instance(seed)
    c = c[0]
    best, _ = exact_maximum(weights, biases, c, lower, upper)
    delta = 1e-6 * (1.0 + abs(best))
    for threshold, want in ((best + delta, "holds"), (best - delta, "violated")):
        ctx = SearchContext(
            network,
            at_least_case(c, threshold, lower, upper),
            lambda x: network.evaluate(x.astype(np.float64)),
            deadline=time.monotonic() + 30,
        )
        outcome = CaseSearch(ctx).run()
        if want == "holds":
            assert outcome.counterexample is None and outcome.decided
        else:
            assert outcome.counterexample is not None


@pytest.mark.parametrize("seed", range(8))
def test_relu_split_search_with_optimised_bounds_matches_oracle(seed: int, monkeypatch) -> None:
    """The ReLU-splitting search (slopes and multipliers on, intermediate bounds fixed in the
    sub-regions) against exhaustive enumeration, a hair on either side of the maximum."""
    monkeypatch.setattr(bab, "INPUT_SPLIT_MAX_DIMS", 0)
    assert_decided_a_hair_either_side_of_the_maximum(100 + seed)


@pytest.mark.parametrize("seed", range(3))  # instances whose search meets open regions
def test_relu_split_search_without_combination_lp_matches_oracle(seed: int, monkeypatch) -> None:
    """With no ReLU count low enough for the combination LP (search/combination.worth_trying)
    or the phase LPs, the ReLU-splitting search still decides oracle instances a hair on
    either side of the exact maximum: the optimised multipliers, splitting and z3 do it."""
    monkeypatch.setattr(bab, "INPUT_SPLIT_MAX_DIMS", 0)
    monkeypatch.setattr(bab, "PHASE_LP_UNSTABLE", -1)
    skipped = []
    worth_trying = combination.worth_trying

    def spy(*args):
        answer = worth_trying(*args)
        skipped.append(not answer)
        return answer

    monkeypatch.setattr(combination, "worth_trying", spy)
    assert_decided_a_hair_either_side_of_the_maximum(200 + seed)
    assert skipped and all(skipped)


def test_combination_lp_is_tried_for_several_rows_or_few_unstable_relus() -> None:
    """worth_trying: a conjunction of two open rows may combine them; a single open row only
    once few ReLUs are unstable."""
    layers = [(np.array([[-1.0, -1.0, 1.0]]), np.array([[1.0, 1.0, 2.0]]))] * 2
    bounds = LinearBounds(layers, np.array([[-1.0, -1.0, 5.0]]), None, None)
    rhs = np.zeros(3)
    single = np.array([0, 1, 2])
    assert not combination.worth_trying(bounds, 0, rhs, single, few_unstable=1)
    assert combination.worth_trying(bounds, 0, rhs, single, few_unstable=2)
    pair = np.array([0, 0, 1])
    assert combination.worth_trying(bounds, 0, rhs, pair, few_unstable=0)
    # A conjunction with a proved row is refuted: only the other, single-row one is open.
    proved_pair = np.array([1, 0, 0])
    assert not combination.worth_trying(bounds, 0, rhs, proved_pair, few_unstable=0)


@pytest.mark.parametrize("seed", range(6))
def test_rows_left_alone_keep_crowns_numbers_and_the_warm_start(seed: int) -> None:
    """The optimised rows are merged into the CROWN pass's arrays in place: a row above its
    target keeps exactly CROWN's bound, input coefficients, corner and coefficients on each
    ReLU layer, and its warm-start slopes and multipliers; the caller's warm-start arrays
    are left unchanged; the optimised rows are never looser than CROWN's."""
    network, c, box, known, _, signs, plain, rng = split_instance(seed)
    sizes = [layer.size for layer in network.relu_layers]
    start = [rng.uniform(0.0, 1.0, (1, len(c), n)) for n in sizes]
    start_betas = [
        rng.uniform(0.0, 1.0, (1, len(c), n)) * (s != 0.0)
        for n, s in zip(sizes, signs, strict=True)
    ]
    given = [a.copy() for a in start + start_betas]
    target = np.array([-np.inf] + [np.inf] * (len(c) - 1))  # row 0 is done, the others open
    search = SlopeSearch(10, start=start, signs=signs, start_betas=start_betas, target=target)
    tuned = linear_bounds(network, *box, c, known, search, refine=False)
    for before, after in zip(given, start + start_betas, strict=True):
        np.testing.assert_array_equal(before, after)
    for ours, crowns in [
        (tuned.objective_lower, plain.objective_lower),
        (tuned.objective_coeffs, plain.objective_coeffs),
        (tuned.objective_minimizer, plain.objective_minimizer),
        *zip(tuned.relu_coeffs, plain.relu_coeffs, strict=True),
    ]:
        np.testing.assert_array_equal(ours[:, 0], crowns[:, 0])
    for ours, warm in zip(tuned.slopes + tuned.betas, start + start_betas, strict=True):
        np.testing.assert_array_equal(ours[:, 0], warm[:, 0])
    assert np.all(tuned.objective_lower >= plain.objective_lower)
