"""The checker's float64 intermediate bounds (verifiers/certify/checker/rigorous.py) against
exact ground truth: on networks whose ReLUs are all active on the box (so the network is
affine there and CROWN is exact), the true minimum is computed in Fractions from the float32
weights, and the rigorous bound must never exceed it. Weights with heavy cancellation make
plain float64 overshoot the true minimum; the test shows it does (so it has teeth) and that
the rounding bound covers it."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest

from verifiers.certify.checker import lagrangian as lg
from verifiers.certify.checker import regions as rb
from verifiers.certify.checker import rigorous

SIZES = [4, 12, 12, 12]


def _active_network(seed: int, alpha: float = 0.0):
    """Weights of very different magnitudes that cancel; biases large enough that every
    pre-activation is positive on the box [-1, 1]^n (all ReLUs active)."""
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    bound = 1.0
    for a, b in zip(SIZES[:-1], SIZES[1:], strict=True):
        w = rng.normal(size=(b, a)) * 10.0 ** rng.integers(-3, 7, size=(b, a))
        w = w.astype(np.float32)
        bias = (np.abs(w).astype(np.float64).sum(axis=1) * bound * 1.01 + 1.0).astype(np.float32)
        weights.append(w)
        biases.append(bias)
        bound = float(np.max(np.abs(w).astype(np.float64).sum(axis=1) * bound + bias)) * 1.01
    return _Network(
        [
            _Affine(w.astype(np.float64), b.astype(np.float64))
            for w, b in zip(weights, biases, strict=True)
        ],
        [_Relu(alpha, len(b)) for b in biases[:-1]],
    )


@dataclass
class _Affine:
    """A layer as the loader's normal form has it, composed exactly (no error allowance):
    the loader is not under test here, the float64 arithmetic is."""

    weight: np.ndarray
    bias: np.ndarray

    def __post_init__(self):
        self.weight_err = np.zeros_like(self.weight)
        self.bias_err = np.zeros_like(self.bias)


@dataclass
class _Relu:
    alpha: float
    size: int


@dataclass
class _Network:
    affine_layers: list
    relu_layers: list


def _exact_minima(network, k, lower, upper):
    """min over the box of +z_k and -z_k per neuron, exactly (the network is affine)."""
    layers = network.affine_layers[: k + 1]
    a = [[Fraction(int(i == j)) for j in range(len(lower))] for i in range(len(lower))]
    c = [Fraction(0)] * len(lower)
    for layer in layers:  # z = W (A x + c) + b, every ReLU active: identity
        w = [[Fraction(float(v)) for v in row] for row in layer.weight]
        b = [Fraction(float(v)) for v in layer.bias]
        a = [
            [sum(w[i][t] * a[t][j] for t in range(len(a))) for j in range(len(lower))]
            for i in range(len(w))
        ]
        c = [sum(w[i][t] * c[t] for t in range(len(c))) + b[i] for i in range(len(w))]
    lo = [Fraction(float(v)) for v in lower]
    hi = [Fraction(float(v)) for v in upper]
    out = []
    for sign in (1, -1):
        for row, const in zip(a, c, strict=True):
            terms = (min(sign * g * x, sign * g * y) for g, x, y in zip(row, lo, hi, strict=True))
            out.append(sum(terms, Fraction(0)) + sign * const)
    return out


def _bounds(network, seed):
    net = lg.ExactNetwork.of(network)
    rng = np.random.default_rng(seed + 100)
    lower = rng.uniform(-1.0, 0.0, (1, SIZES[0]))
    upper = lower + rng.uniform(0.0, 1.0, (1, SIZES[0]))
    region, crossed = rb.batch_bounds(net, lower, upper, None, [[]])
    assert not crossed[0]
    assert all(np.all(lo >= 0.0) for lo, _ in region.bounds)  # all active, as built
    k = len(net.sizes) - 1
    n = net.sizes[k]
    neurons = np.concatenate([np.arange(n), np.arange(n)])
    signs = np.concatenate([np.ones(n), -np.ones(n)])
    own = np.zeros(2 * n, dtype=np.int64)
    found = rigorous.lower_bounds(net, region, k, neurons, signs, own)
    return found, _exact_minima(network, k, lower[0], upper[0])


@pytest.mark.parametrize("alpha", [0.0, 0.25])
def test_rigorous_bounds_never_exceed_the_exact_minimum(alpha):
    for seed in range(12):
        found, truth = _bounds(_active_network(seed, alpha), seed)
        for value, exact_min in zip(found, truth, strict=True):
            assert np.isfinite(value)
            assert Fraction(float(value)) <= exact_min
            # and they are tight: CROWN is exact on an affine piece, only rounding is lost
            assert float(exact_min) - value <= 1e-9 * (1.0 + abs(float(exact_min)))


def test_plain_float_overshoots_without_the_rounding_bound(monkeypatch):
    """The same computation with every error term zeroed goes above the true minimum on
    some of these networks: the error terms are what makes the bound sound."""
    monkeypatch.setattr(rigorous, "G", lambda n: 0.0)
    monkeypatch.setattr(rigorous, "UNDER", 0.0)
    monkeypatch.setattr(rigorous, "TINY", 0.0)
    over = 0
    for seed in range(12):
        found, truth = _bounds(_active_network(seed), seed)
        over += sum(Fraction(float(v)) > t for v, t in zip(found, truth, strict=True))
    assert over > 0


def test_huge_bounds_give_sound_bounds_or_none_never_nan():
    """Intermediate bounds near the float range overflow inside: the result is -inf (no
    bound) or a valid one, never NaN (which would poison max/min)."""
    network = _active_network(0)
    net = lg.ExactNetwork.of(network)
    lower, upper = -np.ones((1, 4)), np.ones((1, 4))
    region, _ = rb.batch_bounds(net, lower, upper, None, [[]])
    for scale in (1e150, 1e300):
        huge = [(np.full_like(lo, -scale), np.full_like(hi, scale)) for lo, hi in region.bounds]
        wide = lg.Region(region.lower, region.upper, huge, region.errors)
        k = len(net.sizes) - 1
        n = net.sizes[k]
        found = rigorous.lower_bounds(net, wide, k, np.arange(n), np.ones(n), np.zeros(n, int))
        assert not np.any(np.isnan(found))
        truth = _exact_minima(network, k, lower[0], upper[0])[:n]
        assert all(
            v == -np.inf or Fraction(float(v)) <= t for v, t in zip(found, truth, strict=True)
        )


def test_rigorous_interval_bounds_enclose_the_exact_range():
    rng = np.random.default_rng(7)
    for _ in range(20):
        w = (rng.normal(size=(6, 9)) * 10.0 ** rng.integers(-4, 8, size=(6, 9))).astype(np.float32)
        b = (rng.normal(size=6) * 1e6).astype(np.float32)
        net = lg.ExactNetwork.of(
            _Network([_Affine(w.astype(np.float64), b.astype(np.float64))], [])
        )
        lo = rng.uniform(-3.0, 0.0, (2, 9))
        hi = lo + rng.uniform(0.0, 3.0, (2, 9))
        low, high = rigorous.interval(net.layers[0], lo, hi)
        for r in range(2):
            for i in range(6):
                terms = [
                    (
                        Fraction(float(w[i, j])) * Fraction(lo[r, j]),
                        Fraction(float(w[i, j])) * Fraction(hi[r, j]),
                    )
                    for j in range(9)
                ]
                least = sum((min(t) for t in terms), Fraction(float(b[i])))
                most = sum((max(t) for t in terms), Fraction(float(b[i])))
                assert Fraction(low[r, i]) <= least and Fraction(high[r, i]) >= most
                assert float(least) - low[r, i] <= 1e-9 * (1.0 + abs(float(least)))


@pytest.mark.parametrize("seed", range(4))
def test_a_layers_composition_error_bound_is_above_its_exact_value(seed):
    """error_bound (float64) is >= weight_err |r| + bias_err computed in Fractions, on rows
    of magnitudes spanning many binades (where a plain float sum rounds below the exact
    value about half the time: the test counts that it does, so it has teeth)."""
    rng = np.random.default_rng(seed)
    magnitude = np.abs(rng.normal(size=(30, 40))) * 10.0 ** rng.integers(-8, 8, size=(30, 40))
    err_t = np.abs(rng.normal(size=(40, 7))) * 10.0 ** rng.integers(-16, -8, size=(40, 7))
    bias_err = np.abs(rng.normal(size=7)) * 1e-14
    bound = rigorous.error_bound(magnitude, err_t, bias_err)
    plain = magnitude @ err_t + bias_err
    below = 0
    for i in range(30):
        for j in range(7):
            exact = sum(
                (
                    Fraction(float(a)) * Fraction(float(b))
                    for a, b in zip(magnitude[i], err_t[:, j], strict=True)
                ),
                Fraction(float(bias_err[j])),
            )
            assert Fraction(float(bound[i, j])) >= exact
            below += Fraction(float(plain[i, j])) < exact
    assert below > 0


@pytest.mark.parametrize("seed", range(4))
def test_the_bound_on_nus_rounding_covers_it_exactly(seed):
    """nu~ = fl(lambda W) misses nu = lambda W; what the bounds use of that error is
    e . z for magnitudes z >= 0, bounded by _NuError.dot (regrouped as |lambda| (|W| z)).
    Against Fractions: sum_j |nu_j - nu~_j| z_j <= dot(z) + TINY, on weights spanning many
    binades with cancellation (plain float error is not zero: the test checks that)."""
    rng = np.random.default_rng(seed)
    m, n, n_in, regions = 12, 9, 7, 3
    lam = rng.normal(size=(m, n)) * 10.0 ** rng.integers(-6, 6, size=(m, n))
    w = rng.normal(size=(n, n_in)) * 10.0 ** rng.integers(-6, 6, size=(n, n_in))
    own = rng.integers(0, regions, size=m)
    z = np.abs(rng.normal(size=(regions, n_in))) * 10.0 ** rng.integers(-3, 3, (regions, n_in))
    layer = SimpleNamespace(abs_w=np.abs(w))  # W as lagrangian.ExactLayer keeps it: nu = lam W
    bound = rigorous._NuError(layer, np.abs(lam), own).dot(z)
    nu = lam @ w
    missed = 0
    for i in range(m):
        total = Fraction(0)
        for j in range(n_in):
            true = sum(Fraction(float(lam[i, t])) * Fraction(float(w[t, j])) for t in range(n))
            total += abs(true - Fraction(float(nu[i, j]))) * Fraction(float(z[own[i], j]))
        assert total <= Fraction(float(bound[i])) + Fraction(rigorous.TINY)
        missed += total > 0
    assert missed > 0
