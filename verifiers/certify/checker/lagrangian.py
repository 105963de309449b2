"""Exact bounds of a piecewise-linear network on a region, re-derived from its weights.

The network is  z_1 = W_1 x + b_1,  r_k = relu(z_k),  z_{k+1} = W_{k+1} r_k + b_{k+1}.
For ANY multipliers lambda_k (one per neuron) the identity

    c . z_K = sum_k sum_j (nu_kj r_kj - lambda_kj z_kj) + (W_1^T lambda_1) . x + constants,
    nu_{k-1} = W_k^T lambda_k,  lambda_K = c,

holds at every point of the network, so a lower bound of c . z_K over the region is the
sum of each neuron's minimum of (nu r - lambda z) over a set containing its graph on its
bounds [lo, hi] (the triangle (lo, alpha lo), (0, 0), (hi, hi): a linear function is least
at a vertex) plus the input part's minimum over the box. Everything is evaluated exactly
(exact.py): the multipliers only steer how tight the bound is, never whether it is valid.
By default they follow CROWN (nu times the ReLU's lower slope where nu >= 0, its chord slope
where nu < 0); a certificate may give some of them (the Lagrange multipliers of an LP).

A layer whose composition rounded (the loader's weight_err, bias_err) is an interval of
weights: its effect on c . z is bounded by |lambda| . (weight_err |r| + bias_err).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verifiers.certify.checker import exact

Bounds = list[tuple[np.ndarray, np.ndarray]]  # per hidden layer: pre-activation lo, hi
Overrides = dict[int, tuple[np.ndarray, np.ndarray]]  # hidden layer -> (neurons, lambdas)


@dataclass(frozen=True)
class ExactLayer:
    w_limbs: list[np.ndarray]  # of W, the right factor of lambda @ W
    w_exp: int
    pos_t: list[np.ndarray]  # of max(W, 0)^T and min(W, 0)^T, for interval bounds
    neg_t: list[np.ndarray]
    b_limbs: list[np.ndarray]  # of b as a column
    bias: np.ndarray  # exact ints of b
    b_exp: int
    err_t: list[np.ndarray] | None  # of weight_err^T (None: the layer is exact)
    err_exp: int
    bias_err: np.ndarray | None
    n_out: int

    @classmethod
    def of(cls, layer) -> ExactLayer:
        w, w_exp = exact.from_floats(layer.weight)
        pos = np.where(layer.weight > 0, w, 0)
        neg = np.where(layer.weight < 0, w, 0)
        b, b_exp = exact.from_floats(layer.bias)
        inexact = bool(np.any(layer.weight_err) or np.any(layer.bias_err))
        err, err_exp = exact.from_floats(layer.weight_err) if inexact else (None, 0)
        return cls(
            exact.limbs(w),
            w_exp,
            exact.limbs(pos.T),
            exact.limbs(neg.T),
            exact.limbs(b[:, None]),
            b,
            b_exp,
            exact.limbs(err.T) if inexact else None,
            err_exp,
            np.asarray(layer.bias_err, dtype=np.float64) if inexact else None,
            layer.weight.shape[0],
        )

    def error(self, magnitude: np.ndarray) -> np.ndarray | None:
        """Per output, a float above weight_err |r| + bias_err for every |r| <= magnitude."""
        if self.err_t is None:
            return None
        m, m_exp = exact.from_floats(magnitude[None, :])
        value, exps = exact.matmul(m, np.array([m_exp]), self.err_t, self.err_exp)
        b, b_exp = exact.from_floats(self.bias_err)
        total, t_exp = exact.add(value, exps, b[None, :], np.array([b_exp]))
        return exact.round_rows(total[0], np.full(self.n_out, t_exp[0]), up=True)


@dataclass(frozen=True)
class ExactNetwork:
    layers: list[ExactLayer]  # affine layers; a ReLU (slope alpha below 0) after each but the last
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


@dataclass
class Region:
    """A box, pre-activation bounds valid on the region, and each layer's error bound."""

    lower: np.ndarray
    upper: np.ndarray
    bounds: Bounds
    errors: list[np.ndarray | None]

    def layer_input(self, net: ExactNetwork, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k == 0:
            return self.lower, self.upper
        return relu_box(*self.bounds[k - 1], net.alphas[k - 1])


def layer_error(net: ExactNetwork, region: Region, k: int) -> np.ndarray | None:
    lo, hi = region.layer_input(net, k)
    return net.layers[k].error(np.maximum(np.abs(lo), np.abs(hi)))


def interval(net: ExactNetwork, region: Region, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Interval bounds of affine layer k's output, from its input's box, rounded outward."""
    layer = net.layers[k]
    lo, hi = region.layer_input(net, k)
    both, e = exact.from_floats(np.stack([lo, hi]))
    base = np.array([e, e], dtype=np.int64)
    pos, exps = exact.matmul(both, base, layer.pos_t, layer.w_exp)
    neg, _ = exact.matmul(both[::-1], base, layer.neg_t, layer.w_exp)
    total = pos + neg  # row 0: W+ lo + W- hi (the lower bound); row 1: W+ hi + W- lo
    bias = np.broadcast_to(layer.bias, total.shape)
    total, bias, exps = exact.align(total, exps, bias, np.array([layer.b_exp] * 2))
    total = total + bias
    low = exact.round_rows(total[0], np.full(layer.n_out, exps[0]), up=False)
    high = exact.round_rows(total[1], np.full(layer.n_out, exps[1]), up=True)
    err = region.errors[k]
    if err is not None:
        low, high = _widen(low, -err), _widen(high, err)
    return low, high


def _widen(values: np.ndarray, by: np.ndarray) -> np.ndarray:
    """values + by, rounded away from values' side (down when by < 0, up when by > 0)."""
    total = values + by
    return np.where(by < 0, np.nextafter(total, -np.inf), np.nextafter(total, np.inf))


def lower_linear(
    net: ExactNetwork,
    region: Region,
    k: int,
    rows: tuple[np.ndarray, np.ndarray],
    overrides: Overrides | None = None,
):
    """For rows c (exact: ints, exps) over affine layer k's output: an exact linear lower
    bound  c . z_k >= g . x + h  valid on the region. Returns (g, g_exps, h, h_exps)."""
    lam, lam_exps = rows
    m = lam.shape[0]
    h, h_exps = np.zeros(m, dtype=object), np.zeros(m, dtype=np.int64)
    for layer_index in range(k, -1, -1):
        layer = net.layers[layer_index]
        bias, bias_exps = exact.matmul(lam, lam_exps, layer.b_limbs, layer.b_exp)
        h, h_exps = exact.add(h, h_exps, bias[:, 0], bias_exps)
        err = region.errors[layer_index]
        if err is not None:
            err_ints, err_exp = exact.from_floats(err[:, None])
            cost, cost_exps = exact.matmul(np.abs(lam), lam_exps, exact.limbs(err_ints), err_exp)
            h, h_exps = exact.add(h, h_exps, -cost[:, 0], cost_exps)
        nu, nu_exps = exact.matmul(lam, lam_exps, layer.w_limbs, layer.w_exp)
        if layer_index == 0:
            return nu, nu_exps, h, h_exps
        hidden = layer_index - 1
        lo, hi = region.bounds[hidden]
        alpha = net.alphas[hidden]
        lam, lam_exps = _multipliers(nu, nu_exps, lo, hi, alpha, (overrides or {}).get(hidden))
        term, term_exps = _vertex_minimum(nu, nu_exps, lam, lam_exps, lo, hi, alpha)
        h, h_exps = exact.add(h, h_exps, term, term_exps)
    raise AssertionError("unreachable")


def _approx(ints: np.ndarray, exps: np.ndarray) -> np.ndarray:
    """Floats near the exact values (to choose multipliers; never for a bound)."""
    try:
        values = ints.astype(np.float64)
    except OverflowError:
        values = np.array([[float(int(v) >> 900) for v in row] for row in ints])
        exps = exps + 900
    return np.ldexp(values, np.clip(exps, -2000, 2000)[:, None])


def _multipliers(nu, nu_exps, lo, hi, alpha, override):
    """CROWN's choice, lambda = nu * slope, rounded to 53 bits (any value is valid)."""
    nu_f = _approx(nu, nu_exps)
    active, inactive = lo >= 0.0, hi <= 0.0
    width = np.where(active | inactive, 1.0, hi - lo)
    chord = np.where(active | inactive, 0.0, (hi - alpha * lo) / width)
    lower_slope = np.where(hi > -lo, 1.0, alpha)
    slope = np.where(nu_f >= 0.0, lower_slope, chord)
    slope = np.where(active, 1.0, np.where(inactive, alpha, slope))
    lam = nu_f * slope
    if override is not None:
        neurons, values = override
        lam[:, neurons] = values
    return exact.fixed(lam)


def _vertex_minimum(nu, nu_exps, lam, lam_exps, lo, hi, alpha):
    """Per row, sum over neurons of min(0, (nu s_lo - lam) lo, (nu s_hi - lam) hi), the
    least value of nu r - lam z on the neuron's triangle (a superset of its graph: adding
    the vertex (0, 0) to a stable neuron's segment only lowers the bound)."""
    values = []
    for z in (lo, hi):
        slope = np.where(z >= 0.0, 1.0, alpha)
        s, s_exp = exact.from_floats(slope)
        z_ints, z_exp = exact.from_floats(z)
        scaled = nu * s[None, :]
        coeff, lam_aligned, exps = exact.align(scaled, nu_exps + s_exp, lam, lam_exps)
        values.append(((coeff - lam_aligned) * z_ints[None, :], exps + z_exp))
    (a, a_exps), (b, b_exps) = values
    a, b, exps = exact.align(a, a_exps, b, b_exps)
    least = np.minimum(np.minimum(a, b), 0)
    return least.sum(axis=1), exps


def box_minimum(g, g_exps, h, h_exps, lower: np.ndarray, upper: np.ndarray):
    """Exact min over the box of g . x + h, per row: (ints, exps)."""
    lo, lo_exp = exact.from_floats(lower)
    hi, hi_exp = exact.from_floats(upper)
    a, b, exps = exact.align(g * lo[None, :], g_exps + lo_exp, g * hi[None, :], g_exps + hi_exp)
    least = np.minimum(a, b).sum(axis=1)
    return exact.add(least, exps, h, h_exps)


def unit_rows(size: int, neurons: np.ndarray, signs: np.ndarray):
    rows = np.zeros((len(neurons), size), dtype=np.int64)
    rows[np.arange(len(neurons)), neurons] = signs
    return rows, np.zeros(len(neurons), dtype=np.int64)


def region_bounds(
    net: ExactNetwork,
    lower: np.ndarray,
    upper: np.ndarray,
    parent: Bounds | None,
    phases: list[tuple[int, int, bool]],
) -> tuple[Region, bool]:
    """Pre-activation bounds on the region (the box where the phases hold): interval bounds,
    intersected with the enclosing region's, the phases, then every unstable neuron of
    layers past the first tightened by an exact linear bound. True when bounds cross: the
    region holds no input."""
    region = Region(lower, upper, [], [])
    for k in range(len(net.alphas)):
        region.errors.append(layer_error(net, region, k))
        lo, hi = interval(net, region, k)
        lo, hi = _clip(lo, hi, parent[k] if parent else None, phases, k)
        if k > 0:
            lo, hi = _tighten(net, region, k, lo, hi)
            lo, hi = _clip(lo, hi, None, phases, k)
        region.bounds.append((lo, hi))
        if np.any(lo > hi):
            return region, True
    region.errors.append(layer_error(net, region, len(net.alphas)))
    return region, False


def tighten_again(net: ExactNetwork, region: Region, phases) -> tuple[Region, bool]:
    """One more pass of linear tightening, each layer with the tighter bounds before it."""
    again = Region(region.lower, region.upper, [], [])
    for k in range(len(net.alphas)):
        again.errors.append(layer_error(net, again, k))
        lo, hi = region.bounds[k]
        if k > 0:
            lo, hi = _tighten(net, again, k, lo, hi)
            lo, hi = _clip(lo, hi, None, phases, k)
        again.bounds.append((lo, hi))
        if np.any(lo > hi):
            return again, True
    again.errors.append(layer_error(net, again, len(net.alphas)))
    return again, False


def _clip(lo, hi, parent, phases, k):
    if parent is not None:
        lo, hi = np.maximum(lo, parent[0]), np.minimum(hi, parent[1])
    for layer, neuron, active in phases:
        if layer == k:
            lo, hi = lo.copy(), hi.copy()
            if active:
                lo[neuron] = max(lo[neuron], 0.0)
            else:
                hi[neuron] = min(hi[neuron], 0.0)
    return lo, hi


def _tighten(net, region, k, lo, hi):
    unstable = np.flatnonzero((lo < 0.0) & (hi > 0.0))
    if len(unstable) == 0:
        return lo, hi
    neurons = np.concatenate([unstable, unstable])
    signs = np.concatenate([np.ones(len(unstable)), -np.ones(len(unstable))]).astype(np.int64)
    g, g_exps, h, h_exps = lower_linear(net, region, k, unit_rows(len(lo), neurons, signs))
    least, exps = box_minimum(g, g_exps, h, h_exps, region.lower, region.upper)
    n = len(unstable)
    new_lo = exact.round_rows(least[:n], exps[:n], up=False)
    new_hi = -exact.round_rows(least[n:], exps[n:], up=False)
    lo, hi = lo.copy(), hi.copy()
    lo[unstable] = np.maximum(lo[unstable], new_lo)
    hi[unstable] = np.minimum(hi[unstable], new_hi)
    return lo, hi
