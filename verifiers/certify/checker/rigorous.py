"""Linear lower bounds of pre-activations in float64, with an a-priori rounding bound.

Only the checker's *intermediate* bounds come from here (regions._tighten); a leaf's
own inequality is evaluated exactly (lagrangian.lower_linear). The argument is
lagrangian.py's identity: for ANY multipliers lambda_k,

    c . z_K = sum_k sum_j (nu_kj r_kj - lambda_kj z_kj) + nu_0 . x + sum_k lambda_k . b_k,
    nu_{k-1} = W_k^T lambda_k,  lambda_K = c.

The multipliers here are floats (CROWN's choice; any numbers are valid, so their rounding
does not matter). nu is only computed, as nu~ = fl(lambda W), with |nu - nu~| <= e; then
nu r - lambda z >= nu~ r - lambda z - e |r|, and the least value of nu~ r - lambda z over
the neuron's triangle is at a vertex, as in lagrangian.py. Every float result's error is
bounded a priori by the standard model (Higham, "Accuracy and Stability of Numerical
Algorithms", 2nd ed., sections 2.2 and 3.1):

    fl(a op b) = (a op b)(1 + d) + t,  |d| <= u = 2**-53,  |t| <= 2**-1075 (t = 0 for + -);
    a sum or dot product of n terms, in any order, with or without FMA (BLAS included):
    |fl(sum x_i) - sum x_i| <= gamma_n sum |x_i| (+ n 2**-1075 for products),
    gamma_n = n u / (1 - n u).

G(n) = 2 (n + 4) u over-estimates gamma_{n+4} by a factor of about 2, which also covers
the rounding of the error terms themselves (computed in float from non-negative numbers,
so they are off by at most a factor 1 + gamma). Absolute underflow terms are added as
UNDER = 2**-1020 per element (times the magnitude they are multiplied by): that covers an
underflow of 2**-1075 under IEEE gradual underflow and also a subnormal flushed to zero
(at most 2**-1022) should some library have set flush-to-zero, in each of a few
operations. TINY = 2**-960 covers the rest: far fewer than 2**60 operations, each off by
at most 2**-1022.

Each row's result is value - slack - G(P) (|parts| + slack) - TINY, where value is the
float sum of the P computed parts and slack the sum of their error bounds: a lower bound
of the true c . z_K on the row's region. A result that is not finite (an overflow) is
replaced by -inf: no bound.
"""

from __future__ import annotations

import numpy as np

from verifiers.certify.checker.exact import NotFinite

U = 2.0**-53
UNDER = 2.0**-1020  # per element: an underflow (<= 2**-1022 even flushed to zero) in a few ops
TINY = 2.0**-960


def G(n: int) -> float:
    """An over-estimate of gamma_{n+4}, covering the rounding of what it multiplies."""
    return 2.0 * (n + 4) * U


def lower_bounds(net, region, k: int, neurons, signs, own) -> np.ndarray:
    """Float lower bounds of signs[i] * z_k[neurons[i]] on region own[i] of the batch,
    rigorous (see the module's docstring); -inf where none."""
    with np.errstate(all="ignore"):  # an overflow ends as -inf (_Sum.lower)
        return _lower_bounds(net, region, k, neurons, signs, own)


def _lower_bounds(net, region, k, neurons, signs, own) -> np.ndarray:
    m = len(neurons)
    lam = np.zeros((m, net.sizes[k]))
    lam[np.arange(m), neurons] = signs
    acc = _Sum(m)
    for index in range(k, -1, -1):
        layer = net.layers[index]
        n = lam.shape[1]
        a_lam = np.abs(lam)
        acc.add(lam @ layer.b, G(n) * (a_lam @ np.abs(layer.b)) + n * UNDER)
        err = region.errors[index]
        if err is not None:  # the layer composed inexactly: an interval of weights
            cost = np.einsum("ij,ij->i", a_lam, err[own])
            acc.add(np.zeros(m), cost * (1.0 + G(n)) + n * UNDER)
        nu = lam @ layer.w
        error = _NuError(layer, a_lam, own)
        if index == 0:
            acc.add(*_box_terms(nu, error, region.lower, region.upper))
            return acc.lower()
        hidden = index - 1
        lo, hi = region.bounds[hidden]
        lam, part, slack = _relu_terms(nu, error, lo, hi, own, net.alphas[hidden])
        acc.add(part, slack)
    raise AssertionError("unreachable")


class _NuError:
    """The error of nu~ = fl(lambda W): |nu_j - nu~_j| <= e_j = gamma_n (|lambda| |W|)_j plus
    the products' underflow (n terms). Only sums e . z over a region's magnitudes z >= 0
    are needed; dot takes them as G(n) |lambda| . (|W| z): the same non-negative terms
    regrouped (their float rounding, a factor 1 + gamma, is covered by G as above), plus
    n UNDER per z_j for nu~'s underflow and n_in UNDER per |lambda_i| for |W| z's. One
    product with |W| per region instead of one per row."""

    def __init__(self, layer, a_lam: np.ndarray, own: np.ndarray) -> None:
        self.layer, self.a_lam, self.own = layer, a_lam, own

    def dot(self, z: np.ndarray) -> np.ndarray:
        """Per row, an upper bound of e . z[own] (z: a row of magnitudes per region)."""
        n, n_in = self.a_lam.shape[1], z.shape[1]
        weighted = (z @ self.layer.abs_w.T)[self.own]  # |W| z per region, then per row
        through = np.einsum("ij,ij->i", self.a_lam, weighted)
        spilled = n_in * UNDER * self.a_lam.sum(axis=1)
        return G(n) * (through + spilled) + n * UNDER * z.sum(axis=1)[self.own]


def interval(layer, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interval bounds of W x + b for x in each row's box [lo, hi], rigorous: a sum of
    2n + 1 terms each, off by at most G(2n + 1) times their magnitudes (|W| max(|lo|, |hi|)
    + |b|) plus the products' underflow, then stepped outward past the last rounding."""
    n = lo.shape[1]
    with np.errstate(all="ignore"):
        pos, neg = np.maximum(layer.w, 0.0).T, np.minimum(layer.w, 0.0).T
        low = lo @ pos + hi @ neg + layer.b
        high = hi @ pos + lo @ neg + layer.b
        size = np.maximum(np.abs(lo), np.abs(hi)) @ layer.abs_w.T + np.abs(layer.b)
        slack = G(2 * n + 1) * size + 2 * n * UNDER
        low = np.nextafter(low - slack, -np.inf)
        high = np.nextafter(high + slack, np.inf)
        finite = np.isfinite(low) & np.isfinite(high)
    return np.where(finite, low, -np.inf), np.where(finite, high, np.inf)


def error_bound(magnitude: np.ndarray, err_t: np.ndarray, bias_err: np.ndarray) -> np.ndarray:
    """Per row, a float >= weight_err r + bias_err for all |r| <= the row's magnitude (err_t
    = weight_err^T): a sum of n + 1 non-negative terms, so its float value times 1 + G(n + 1)
    is above the exact one (then stepped up past that product's rounding), plus the
    products' underflow. An overflow fails closed (exact.NotFinite)."""
    n = magnitude.shape[1]
    with np.errstate(all="ignore"):
        total = (magnitude @ err_t + bias_err) * (1.0 + G(n + 1)) + (n + 1) * UNDER
        total = np.nextafter(total, np.inf)
    if not np.all(np.isfinite(total)):
        raise NotFinite("a layer's composition error bound overflows")
    return total


class _Sum:
    """Float parts and their error bounds, per row."""

    def __init__(self, m: int) -> None:
        self.value = np.zeros(m)
        self.size = np.zeros(m)  # sum of |part|
        self.slack = np.zeros(m)
        self.parts = 0

    def add(self, part: np.ndarray, slack: np.ndarray) -> None:
        self.value = self.value + part
        self.size = self.size + np.abs(part)
        self.slack = self.slack + slack
        self.parts += 1

    def lower(self) -> np.ndarray:
        with np.errstate(all="ignore"):
            # the accumulations of value, size and slack, and the three subtractions here
            rounding = G(self.parts + 3) * (self.size + self.slack)
            out = self.value - self.slack - rounding - TINY
        return np.where(np.isfinite(out), out, -np.inf)


def _box_terms(nu, error: _NuError, lower, upper):
    """min over the box of nu . x (nu within e of nu~): (part, slack) per row; the boxes
    are the regions' (row i of nu on box own[i])."""
    n = nu.shape[1]
    x_max = np.maximum(np.abs(lower), np.abs(upper))
    lo, hi = lower[error.own], upper[error.own]
    least = np.minimum(nu * lo, nu * hi)
    rounded = G(1) * np.einsum("ij,ij->i", np.abs(nu), x_max[error.own])
    errors = error.dot(x_max) + rounded + n * UNDER
    return least.sum(axis=1), errors * (1.0 + G(n)) + G(n) * np.abs(least).sum(axis=1)


def _relu_terms(nu, error: _NuError, lo, hi, own, alpha: float):
    """CROWN's multipliers for a ReLU layer (from nu~) and the sum over its neurons of the
    least value of nu r - lambda z on their triangles: (lambda, part, slack) per row.
    lo, hi: the regions' bounds (a row each); row i of nu is on region own[i]."""
    n = nu.shape[1]
    big = max(1.0, abs(alpha))  # |s|, every slope (1, alpha, or a chord between) <= big
    with np.errstate(all="ignore"):
        # per region first (fewer rows than nu): slopes, vertex slopes, magnitudes
        active, inactive = lo >= 0.0, hi <= 0.0
        unstable = ~(active | inactive)
        chord = (hi - alpha * lo) / np.where(unstable, hi - lo, 1.0)
        pos = np.where(active, 1.0, np.where(inactive | (hi <= -lo), alpha, 1.0))
        neg = np.where(active, 1.0, np.where(inactive, alpha, chord))
        z_max = np.maximum(np.abs(lo), np.abs(hi))
        under = (UNDER * (z_max + 1.0)).sum(axis=1)
        s_lo, s_hi = np.where(lo >= 0.0, 1.0, alpha), np.where(hi >= 0.0, 1.0, alpha)
        lam = nu * np.where(nu >= 0.0, pos[own], neg[own])  # any multiplier is valid
        least = np.minimum((nu * s_lo[own] - lam) * lo[own], (nu * s_hi[own] - lam) * hi[own])
        least = np.minimum(least, 0.0)
        # the vertex values (three roundings each, |lam| <= big |nu| (1 + u)), and nu's
        # error times |r| <= big |z|
        vertices = (2.5 * big * G(3)) * np.einsum("ij,ij->i", np.abs(nu), z_max[own])
        errors = vertices + big * error.dot(z_max) + under[own]
        slack = errors * (1.0 + G(n)) + G(n) * np.abs(least).sum(axis=1)
    return lam, least.sum(axis=1), slack
