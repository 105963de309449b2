"""Exact bounds of a piecewise-linear network on a region, re-derived from its weights.

The network is  z_1 = W_1 x + b_1,  r_k = relu(z_k),  z_{k+1} = W_{k+1} r_k + b_{k+1}.
For ANY multipliers lambda_k (one per neuron) the identity

    c . z_K = sum_k sum_j (nu_kj r_kj - lambda_kj z_kj) + (W_1^T lambda_1) . x + constants,
    nu_{k-1} = W_k^T lambda_k,  lambda_K = c,

holds at every point of the network. So a lower bound of c . z_K on the region is the sum,
over neurons, of a lower bound of (nu r - lambda z) on a set containing the neuron's graph
over its bounds [lo, hi] (the triangle (lo, alpha lo), (0, 0), (hi, hi), where a linear
function is least at a vertex), plus the minimum of the input part over the box. All of it
is evaluated exactly (exact.py): the multipliers only steer how tight the bound is.

They follow CROWN: lambda = nu times the ReLU's lower slope where nu >= 0 and its chord's
slope where nu < 0, on a grid of 46 bits (a certificate may give some: the Lagrange
multipliers of an LP). Where lambda is nu (slope 1) it is nu rounded *down*, and where it
is 0 it is 0: then nu r - lambda z >= 0 on the whole triangle and the neuron adds nothing
(min(0, ...) = 0), so only chord neurons and given multipliers need their vertices.

Bounds are kept on a grid of 46 bits too, rounded outward (a wider interval: its triangle
still contains the graph). A layer whose composition rounded (the loader's weight_err,
bias_err) is an interval of weights: c . z moves by at most |lambda| . (weight_err |r| +
bias_err), bounded above in integers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from verifiers.certify.checker import exact, rigorous

Bounds = list[tuple[np.ndarray, np.ndarray]]  # per hidden layer: pre-activation lo, hi
# hidden layer -> (which neurons of each row are given, their lambdas): (rows, n) each
Overrides = dict[int, tuple[np.ndarray, np.ndarray]]
GRID = 46


@dataclass(frozen=True)
class ExactLayer:
    wb: exact.Matrix  # [W | b]: lambda @ wb gives nu and lambda . b at once
    err_t: np.ndarray | None  # weight_err^T (None: the layer composed exactly)
    bias_err: np.ndarray | None
    w: np.ndarray  # the weights as floats, for rigorous.py's intermediate bounds
    abs_w: np.ndarray
    b: np.ndarray

    @classmethod
    def of(cls, layer) -> ExactLayer:
        w = np.asarray(layer.weight, dtype=np.float64)
        inexact = bool(np.any(layer.weight_err) or np.any(layer.bias_err))
        return cls(
            exact.Matrix.of_floats(np.concatenate([w, layer.bias[:, None]], axis=1)),
            np.asarray(layer.weight_err, dtype=np.float64).T if inexact else None,
            np.asarray(layer.bias_err, dtype=np.float64) if inexact else None,
            w,
            np.abs(w),
            np.asarray(layer.bias, dtype=np.float64),
        )

    def error(self, magnitude: np.ndarray) -> np.ndarray | None:
        """Per region (row) and output, a float >= weight_err |r| + bias_err for every
        |r| <= magnitude (rows of magnitudes: one per region)."""
        if self.err_t is None:
            return None
        return rigorous.error_bound(magnitude, self.err_t, self.bias_err)


@dataclass(frozen=True)
class ExactNetwork:
    layers: list[ExactLayer]  # affine; a ReLU (slope alpha below 0) after each but the last
    alphas: list[float]
    sizes: list[int]  # neurons per hidden layer

    @classmethod
    def of(cls, network) -> ExactNetwork:
        return cls(
            [ExactLayer.of(layer) for layer in network.affine_layers],
            [float(layer.alpha) for layer in network.relu_layers],
            [layer.size for layer in network.relu_layers],
        )


def relu_box(lo: np.ndarray, hi: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of relu(z) for z in [lo, hi] (a LeakyRelu product widened by an ulp)."""
    if alpha == 0.0:
        return np.maximum(lo, 0.0), np.maximum(hi, 0.0)
    low = np.where(lo >= 0.0, lo, np.nextafter(alpha * lo, -np.inf))
    high = np.where(hi >= 0.0, hi, np.nextafter(alpha * hi, np.inf))
    return low, high


def snap_pair(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi] widened onto one grid of GRID bits (lo down, hi up)."""
    both = exact.snap(np.concatenate([lo, -hi]), up=False, bits=GRID)
    return both[: len(lo)], -both[len(lo) :]


@dataclass
class Region:
    """A box, pre-activation bounds valid on the region, each layer's error bound. Either one
    region (1-D arrays) or a batch of regions bounded together (2-D arrays, a row each:
    the products with the weights are shared, which is where exact arithmetic spends)."""

    lower: np.ndarray
    upper: np.ndarray
    bounds: Bounds = field(default_factory=list)
    errors: list[np.ndarray | None] = field(default_factory=list)
    exact_bounds: dict = field(default_factory=dict)  # hidden layer -> from_floats([lo, hi])

    def bounds_exactly(self, k: int):
        if k not in self.exact_bounds:
            self.exact_bounds[k] = exact.from_floats(np.stack(self.bounds[k]))
        return self.exact_bounds[k]

    def layer_input(self, net: ExactNetwork, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k == 0:
            return self.lower, self.upper
        return relu_box(*self.bounds[k - 1], net.alphas[k - 1])

    def with_bounds(self, k: int, lo: np.ndarray, hi: np.ndarray) -> Region:
        bounds = [*self.bounds[:k], (lo, hi), *self.bounds[k + 1 :]]
        cached = {j: v for j, v in self.exact_bounds.items() if j != k}
        return Region(self.lower, self.upper, bounds, self.errors, cached)

    def crossed(self) -> bool:
        return any(bool(np.any(lo > hi)) for lo, hi in self.bounds)

    def one(self, i: int) -> Region:
        """Region i of a batch."""
        errors = [None if e is None else e[i] for e in self.errors]
        bounds = [(lo[i], hi[i]) for lo, hi in self.bounds]
        return Region(self.lower[i], self.upper[i], bounds, errors)

    def as_batch(self) -> Region:
        """A batch (of one, for a single region)."""
        if self.lower.ndim == 2:
            return self
        errors = [None if e is None else e[None, :] for e in self.errors]
        bounds = [(lo[None, :], hi[None, :]) for lo, hi in self.bounds]
        return Region(self.lower[None, :], self.upper[None, :], bounds, errors)


def lower_linear(
    net: ExactNetwork, region: Region, k: int, rows, overrides=None, own=None, optimised=None
):
    """For rows c (exact: ints, exps) over affine layer k's output, an exact linear lower
    bound c . z_k >= g . x + h on the region: (g, g_exps, h, h_exps). For a batch of
    regions, row i bounds on region own[i] (own: None for a single region). `optimised`:
    a certificate's slopes and split multipliers for the rows (Optimised)."""
    region = region.as_batch()
    lam, lam_exps = rows
    m = lam.shape[0]
    own = np.zeros(m, dtype=np.int64) if own is None else own
    h, h_exps = np.zeros(m, dtype=object), np.zeros(m, dtype=np.int64)
    for index in range(k, -1, -1):
        layer = net.layers[index]
        out = exact.matmul_digits(lam, lam_exps, layer.wb)
        h, h_exps = exact.add(h, h_exps, out.column(out.shape[1] - 1), out.exps)
        err = region.errors[index]
        if err is not None:
            cost, cost_exps = _error_cost(lam, lam_exps, err[own])
            h, h_exps = exact.add(h, h_exps, -cost, cost_exps)
        nu = exact.Digits(out.digits[:, :, :-1], out.bits, out.exps)
        if index == 0:
            rows_, cols = np.nonzero(np.ones(nu.shape, dtype=bool))
            return nu.exact(rows_, cols).reshape(nu.shape), nu.exps, h, h_exps
        hidden = index - 1
        slopes = None if optimised is None else optimised.slopes.get(hidden)
        lam, lam_exps, term, term_exps = _relax(
            nu, region, hidden, own, net.alphas[hidden], (overrides or {}).get(hidden), slopes
        )
        h, h_exps = exact.add(h, h_exps, term, term_exps)
        if optimised is not None and hidden in optimised.betas:
            lam = _with_split_terms(lam, lam_exps, optimised.betas[hidden])
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Optimised:
    """A row's lower slopes per ReLU layer (alpha-CROWN: hidden layer -> (n,) floats, each
    in [alpha, 1]) and split multipliers (beta-CROWN: hidden layer -> (neurons, beta * s),
    beta >= 0 and s = -1 for a split z >= 0, +1 for z <= 0, so beta s z <= 0 on the
    region). The caller checks the ranges and that each split is one of the region's."""

    slopes: dict[int, np.ndarray]
    betas: dict[int, tuple[np.ndarray, np.ndarray]]


def _with_split_terms(lam, lam_exps, betas):
    """lam + beta s at the split neurons: the objective c . z_K + sum beta s z (<= c . z_K
    on the region) back-substitutes through z_k with that coefficient (docs/certificate.md)."""
    neurons, values = betas
    scaled = np.rint(np.ldexp(values[None, :], -lam_exps[:, None]))
    if not np.all(np.abs(scaled) < 2.0**60):  # the int64 grid of lam (46 bits) and room
        raise exact.NotFinite("a split multiplier far above the row's coefficients")
    lam = lam.copy()
    lam[:, neurons] += scaled.astype(np.int64)
    return lam


def _error_cost(lam, lam_exps, err):
    """An exact upper bound of |lam| . err per row (err: a row each): both rounded up to
    short integers."""
    top = float(np.max(err))
    if top == 0.0:
        return np.zeros(lam.shape[0], dtype=np.int64), lam_exps
    t_exp = np.frexp(top)[1] - 20
    t = np.ceil(np.ldexp(err, -t_exp)).astype(np.int64)
    mag = np.abs(lam)
    if mag.dtype == object or lam.shape[1] >= 4096:
        cost = (exact._obj(mag) * t.astype(object)).sum(axis=1)
        return cost, lam_exps + t_exp
    bits = np.array([int(v).bit_length() for v in mag.max(axis=1)], dtype=np.int64)
    shift = np.maximum(bits - 30, 0)
    up = (mag + ((np.int64(1) << shift) - 1)[:, None]) >> shift[:, None]
    # below 2**30 times below 2**21, summed over fewer than 4096 terms: below 2**63
    return (up * t).sum(axis=1), lam_exps + shift + t_exp


def _relax(nu: exact.Digits, region: Region, hidden: int, own, alpha: float, override, slopes):
    """The multipliers of a ReLU layer and the exact bound of its neurons' terms (row i's
    neurons bounded by its region own[i]); `slopes`: given lower slopes (n,) for the
    unstable neurons whose coefficient nu is >= 0, instead of CROWN's."""
    lo, hi = (b[own] for b in region.bounds[hidden])
    nu_f = nu.approx()
    top = np.max(np.abs(nu_f), axis=1)
    if override is not None:
        # The grid must hold a certificate's multipliers too: one far above the row's
        # coefficients would not fit an int64 (the cast would make it garbage).
        forced = np.where(override[0], override[1], 0.0)
        if not np.all(np.isfinite(forced)):
            raise exact.NotFinite("a multiplier of the certificate is not finite once scaled")
        top = np.maximum(top, np.max(np.abs(forced), axis=1, initial=0.0))
    exps = np.where(top > 0, np.frexp(top)[1].astype(np.int64) - GRID, nu.exps)
    active, inactive = lo >= 0.0, hi <= 0.0
    unstable = ~(active | inactive)
    positive = nu.sign() >= 0  # exact
    width = np.where(unstable, hi - lo, 1.0)
    chord = np.where(unstable, (hi - alpha * lo) / width, 0.0)
    steep = hi > -lo
    if alpha == 0.0:
        take = active | (unstable & steep) & positive
        lam = np.where(take, nu.floor(exps), 0)
        general = unstable & ~positive
        scaled = np.rint(np.ldexp(nu_f * chord, -exps[:, None])).astype(np.int64)
        lam = np.where(general, scaled, lam)
    else:
        slope = np.where(positive, np.where(steep, 1.0, alpha), chord)
        slope = np.where(active, 1.0, np.where(inactive, alpha, slope))
        lam = np.rint(np.ldexp(nu_f * slope, -exps[:, None])).astype(np.int64)
        general = np.ones(nu.shape, dtype=bool)
    if slopes is not None:
        given = unstable & positive
        scaled = np.rint(np.ldexp(nu_f * slopes[None, :], -exps[:, None])).astype(np.int64)
        lam = np.where(given, scaled, lam)
        general = general | given
    if override is not None:
        scaled = np.rint(np.ldexp(forced, -exps[:, None])).astype(np.int64)
        lam = np.where(override[0], scaled, lam)
        general = general | override[0]
    both, b_exp = region.bounds_exactly(hidden)
    term, term_exps = _vertex_terms(
        nu, lam, exps, (lo, hi), alpha, general, (both[0][own], both[1][own], b_exp)
    )
    return lam, exps, term, term_exps


def _vertex_terms(nu: exact.Digits, lam, lam_exps, lo_hi, alpha, general, exact_lo_hi):
    """Per row, sum over the `general` neurons of min(0, (nu s_lo - lam) lo,
    (nu s_hi - lam) hi), s = 1 at a vertex z >= 0 and alpha below: the least value of
    nu r - lam z on the neuron's triangle (with (0, 0) added to a stable neuron's
    segment, which only lowers it). Every other neuron's term is >= 0 (see _relax).
    Bounds are a row each: floats lo_hi, and exactly (lo ints, hi ints, exponent)."""
    m = nu.shape[0]
    rows, cols = np.nonzero(general)
    *ends, b_exp = exact_lo_hi
    slopes, s_exp = exact.from_floats(np.array([1.0, alpha]))
    ex = np.minimum(nu.exps + s_exp, lam_exps)
    if len(rows) == 0:
        return np.zeros(m, dtype=object), ex + b_exp
    n_e = nu.exact(rows, cols) << (nu.exps[rows] + s_exp - ex[rows]).astype(object)
    l_e = lam[rows, cols].astype(object) << (lam_exps[rows] - ex[rows]).astype(object)
    values = []
    for z, end in zip(lo_hi, ends, strict=True):
        s = np.where(z[rows, cols] >= 0.0, slopes[0], slopes[1]).astype(object)
        values.append((n_e * s - l_e) * exact._obj(end[rows, cols]))
    least = np.minimum(np.minimum(values[0], values[1]), 0)
    total = np.zeros(m, dtype=object)
    np.add.at(total, rows, least)
    return total, ex + b_exp


def box_minimum(g, g_exps, h, h_exps, lower: np.ndarray, upper: np.ndarray, own=None):
    """Exact min over the box of g . x + h, per row: (ints, exps). Boxes: one, or a row
    each of a batch, row i of g on box own[i]."""
    both, e = exact.from_floats(np.stack([np.atleast_2d(lower), np.atleast_2d(upper)]))
    own = np.zeros(len(g), dtype=np.int64) if own is None else own
    g = exact._obj(g)
    a = g * exact._obj(both[0][own])
    b = g * exact._obj(both[1][own])
    least = np.minimum(a, b).sum(axis=1)
    return exact.add(least, g_exps + e, h, h_exps)
