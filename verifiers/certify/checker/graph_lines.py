"""Interval bounds and linear relaxations of the graph checker's non-linear nodes, each
valid by construction: the slopes are any floats (chosen by a float heuristic), and the
intercepts are computed rigorously for those slopes, then rounded outward.

- Piecewise linear f: min and max of f(x) - s x over [l, u] are at l, u or a breakpoint
  inside, evaluated in exact rationals.
- Sigmoid, Tanh: f(x) - s x has its extremes at l, u or where f'(x) = s (two points,
  +-z*, in closed form: f' is 1 - tanh^2, or (1 - tanh^2(x/2)) / 4); z* and f are enclosed
  by mpmath interval arithmetic (80 bits), so the enclosure of f - s x over [l, u] holds
  every value it takes there.
- Max (MaxPool, Max, Min): y >= x_a for any candidate a; y <= max(x_b, U') (U' the other
  candidates' largest upper bound) <= its chord over [L_b, U_b], whose intercept is the
  larger of its two endpoint values (exact rationals).
A Relax holds, per variable input, the lines' coefficients (a vector: elementwise; a
matrix (n_out, n_in): max) and the intercepts (n_out,), so that
lower . x + lower_icpt <= y <= upper . x + upper_icpt on the region.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from mpmath import mp
from mpmath.ctx_iv import MPIntervalContext
from mpmath.libmp import finf, fnan, fninf

from verifiers.certify.checker.graph_net import Node, down, up

IV = MPIntervalContext()
IV.prec = 80


@dataclass(frozen=True)
class Relax:
    lower: list[np.ndarray]
    upper: list[np.ndarray]
    lower_icpt: np.ndarray
    upper_icpt: np.ndarray


# --- piecewise linear ----------------------------------------------------------------------


def _pieces(node: Node, n: int) -> tuple[np.ndarray, np.ndarray]:
    return (np.broadcast_to(node.slopes, (len(node.slopes), n)),
            np.broadcast_to(node.icpts, (len(node.icpts), n)))  # fmt: skip


def _points(node: Node, lo: float, hi: float) -> list[float]:
    return [lo, hi, *(p for p in node.breakpoints if lo < p < hi)]


def _value(node: Node, slopes, icpts, j: int, p: float) -> Fraction:
    """f_j(p) exactly (f is continuous: at a breakpoint both pieces agree)."""
    k = sum(1 for b in node.breakpoints if b < p)
    return Fraction(float(slopes[k, j])) * Fraction(p) + Fraction(float(icpts[k, j]))


def piecewise(node: Node, box) -> tuple[tuple[np.ndarray, np.ndarray], Relax]:
    lo, hi = box
    n = len(lo)
    slopes, icpts = _pieces(node, n)
    out_lo, out_hi = np.empty(n), np.empty(n)
    ls, li, us, ui = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    # Elements without a breakpoint inside are one exact line; where it is y = x or a
    # constant, its interval is exact in floats; other elements take the exact path below.
    k = (0.5 * lo[:, None] + 0.5 * hi[:, None] > np.array(node.breakpoints)).sum(axis=1)
    k = k.astype(np.int64)
    s, t = slopes[k, np.arange(n)], icpts[k, np.arange(n)]
    inside = np.zeros(n, dtype=bool)
    for b in node.breakpoints:
        inside |= (lo < b) & (b < hi)
    ls[:], us[:], li[:], ui[:] = s, s, t, t
    identity, flat = (s == 1.0) & (t == 0.0), s == 0.0
    out_lo[:] = np.where(identity, lo, t)
    out_hi[:] = np.where(identity, hi, t)
    for j in np.flatnonzero(inside | ~(identity | flat)):
        points = _points(node, float(lo[j]), float(hi[j]))
        values = [_value(node, slopes, icpts, j, p) for p in points]
        out_lo[j], out_hi[j] = down(min(values)), up(max(values))
        if len(points) == 2:  # no breakpoint inside: f is one exact line here
            continue
        width = float(hi[j] - lo[j])
        chord = float(values[1] - values[0]) / width
        candidates = [chord, *(float(s) for s in slopes[:, j])]
        mid = Fraction(float(lo[j])) / 2 + Fraction(float(hi[j])) / 2
        best_lo = best_hi = None
        for s in candidates:
            terms = [v - Fraction(s) * Fraction(p) for v, p in zip(values, points, strict=True)]
            low, high = min(terms), max(terms)
            # Ties (a ReLU with u = -l) go as the search's float choice does: to the line of
            # least magnitude |f(p)| + |s p| (the least rounding pushed onto it there).
            pairs = zip(values, points, strict=True)
            size = max(abs(v) + abs(Fraction(s) * Fraction(p)) for v, p in pairs)
            key_lo, key_hi = (Fraction(s) * mid + low, -size), (Fraction(s) * mid + high, size)
            if best_lo is None or key_lo > best_lo[0]:
                best_lo = (key_lo, s, low)
            if best_hi is None or key_hi < best_hi[0]:
                best_hi = (key_hi, s, high)
        ls[j], li[j] = best_lo[1], down(best_lo[2])
        us[j], ui[j] = best_hi[1], up(best_hi[2])
    return (out_lo, out_hi), Relax([ls], [us], li, ui)


# --- Sigmoid, Tanh ---------------------------------------------------------------------------


def _f(function: str, z):
    """f at an interval z, by a formula with one occurrence of z (no dependency problem)."""
    if function == "Sigmoid":
        return 1 / (1 + IV.exp(-z))
    return 1 - 2 / (IV.exp(2 * z) + 1)


def _ends(x):
    """The endpoints of an interval, as plain mpf numbers (comparable, possibly infinite)."""
    return mp.make_mpf(x._mpi_[0]), mp.make_mpf(x._mpi_[1])


def _f_range(function: str, a, b):
    """f over [a, b] (mpf endpoints): f is increasing."""
    return IV.mpf([_ends(_f(function, IV.mpf(a)))[0], _ends(_f(function, IV.mpf(b)))[1]])


def _critical(function: str, s: float):
    """An enclosure [z_lo, z_hi] (mpf, z_hi may be +inf) of the z >= 0 with f'(z) = s, or
    None when there is none (f' takes its values in (0, 1/4] or (0, 1])."""
    if s <= 0.0:
        return None
    scale, top = (2, 4) if function == "Sigmoid" else (1, 1)
    d_lo, d_hi = _ends(1 - top * IV.mpf(s))  # tanh(z / scale)^2
    if d_hi < 0:
        return None
    t_lo = _ends(IV.sqrt(IV.mpf(d_lo)))[0] if d_lo > 0 else mp.mpf(0)
    t_hi = _ends(IV.sqrt(IV.mpf(d_hi)))[1]

    def atanh(t, upper: bool):
        if upper and t >= 1:
            return mp.inf
        t = IV.mpf(t)
        return _ends(scale * IV.log((1 + t) / (1 - t)) / 2)[1 if upper else 0]

    return atanh(t_lo, False), atanh(t_hi, True)


def _extremes(function: str, s: float, a: float, b: float) -> tuple[Fraction, Fraction]:
    """(lower bound of min, upper bound of max) of f(z) - s z over [a, b]."""
    a_, b_ = mp.mpf(a), mp.mpf(b)  # floats are exact in 53 bits
    pieces = [(a_, a_), (b_, b_)]
    found = _critical(function, s)
    if found is not None:
        z_lo, z_hi = found
        for lo_, hi_ in ((z_lo, z_hi), (-z_hi, -z_lo)):
            lo_, hi_ = max(lo_, a_), min(hi_, b_)
            if lo_ <= hi_:
                pieces.append((lo_, hi_))
    low, high = None, None
    for lo_, hi_ in pieces:
        g = _f_range(function, lo_, hi_) - IV.mpf(s) * IV.mpf([lo_, hi_])
        g_lo, g_hi = _fraction(g._mpi_[0]), _fraction(g._mpi_[1])
        low = g_lo if low is None else min(low, g_lo)
        high = g_hi if high is None else max(high, g_hi)
    return low, high


def _fraction(raw) -> Fraction:
    if raw in (finf, fninf, fnan):
        raise ArithmeticError("an enclosure is not finite")
    sign, man, exp, _ = raw
    return (-1) ** sign * Fraction(man) * Fraction(2) ** exp


def _derivative(function: str, z: np.ndarray) -> np.ndarray:
    """f' in floats (for slopes only), accurate where f saturates too."""
    with np.errstate(over="ignore"):
        if function == "Sigmoid":
            return 0.25 / np.cosh(0.5 * z) ** 2
        return 1.0 / np.cosh(z) ** 2


def _approx(function: str, z):
    return 0.5 * (1.0 + np.tanh(0.5 * z)) if function == "Sigmoid" else np.tanh(z)


def sshaped(node: Node, box) -> tuple[tuple[np.ndarray, np.ndarray], Relax]:
    lo, hi = box
    fn = node.function
    n = len(lo)
    out_lo, out_hi = np.empty(n), np.empty(n)
    ls, li, us, ui = np.zeros(n), np.empty(n), np.zeros(n), np.empty(n)
    for j in range(n):
        a, b = float(lo[j]), float(hi[j])
        out_lo[j] = down(_fraction(_f(fn, IV.mpf(a))._mpi_[0]))
        out_hi[j] = up(_fraction(_f(fn, IV.mpf(b))._mpi_[1]))
        li[j], ui[j] = out_lo[j], out_hi[j]  # constant lines: valid, the fallback
        if not a < b:
            continue
        s_lo, s_hi = _slopes(fn, a, b)
        low, _ = _extremes(fn, s_lo, a, b)
        _, high = _extremes(fn, s_hi, a, b)
        ls[j], li[j], us[j], ui[j] = s_lo, down(low), s_hi, up(high)
    return (out_lo, out_hi), Relax([ls], [us], li, ui)


def _slopes(fn: str, a: float, b: float) -> tuple[float, float]:
    """The slopes of the lower and the upper line as the search chooses them
    (bounds/graph/ops/sshaped.py), computed here in floats: any slopes are sound, the
    intercepts being rigorous, and the search's proofs rest on these. A convex part
    (b <= 0): the tangent at the midpoint below, the chord above; a concave part: the mirror
    image; a mixed one: the chord where it lies below (above) f, else the better at the
    midpoint of DeepPoly's slope min(f'(a), f'(b)) and CROWN's tangent through the far end.
    (A choice by the value at the midpoint among the chord and tangents at a, b and the
    midpoint missed the latter and left proofs of the search unchecked.)"""
    fa, fb = _approx(fn, np.array([a, b]))
    mid = 0.5 * a + 0.5 * b
    d_a, d_b, d_mid = _derivative(fn, np.array([a, b, mid]))
    chord = (fb - fa) / (b - a)
    if b <= 0:
        return _finite(d_mid), _finite(chord)
    if a >= 0:
        return _finite(chord), _finite(d_mid)
    least = min(d_a, d_b)
    low = chord if d_a >= chord else _better(fn, a, b, [least, _pinned(fn, a, 0.0, b)], True)
    high = chord if d_b >= chord else _better(fn, a, b, [least, _pinned(fn, 0.0, b, a)], False)
    return _finite(low), _finite(high)


def _finite(s: float) -> float:
    return float(s) if np.isfinite(s) else 0.0


def _pinned(fn: str, a: float, b: float, far: float) -> float:
    """The slope of a tangent at a point of [a, b] whose line passes near (far, f(far))."""
    f_far = float(_approx(fn, np.array(far)))
    lower = far > b
    for _ in range(24):
        d = 0.5 * a + 0.5 * b
        line = float(_approx(fn, np.array(d)) + _derivative(fn, np.array(d)) * (far - d))
        a, b = (a, d) if line > f_far else (d, b)
    return float(_derivative(fn, np.array(a if lower else b)))


def _better(fn: str, a: float, b: float, candidates: list[float], lower: bool) -> float:
    """Of the slopes, the one whose lower (upper) line is highest (lowest) at the midpoint,
    by float estimates of f - s z at a, b, the midpoint and where f' = s."""
    mid = 0.5 * (a + b)
    best = None
    for s in candidates:
        if not np.isfinite(s):
            continue
        zs = [a, b, mid]
        top = 0.25 if fn == "Sigmoid" else 1.0
        if 0 < s < top:
            scale = 2.0 if fn == "Sigmoid" else 1.0
            z = scale * np.arctanh(min(np.sqrt(1 - s / top), 1 - 1e-16))
            zs += [min(max(v, a), b) for v in (z, -z)]
        g = _approx(fn, np.array(zs)) - s * np.array(zs)
        value = s * mid + g.min() if lower else -(s * mid + g.max())
        if best is None or value > best[0]:
            best = (value, float(s))
    return 0.0 if best is None else best[1]


# --- Max, MaxPool, Min -----------------------------------------------------------------------


def candidates(node: Node, boxes, allowed: np.ndarray):
    """Candidate bounds (n_out, K) in max space (Min: on the negated inputs), -inf where a
    candidate is not allowed here or missing (MaxPool padding)."""
    if node.negate:
        boxes = [(-hi, -lo) for lo, hi in boxes]
    lows, highs = [], []
    for (lo, hi), index in zip(boxes, node.index, strict=True):
        lows.append(np.where(index >= 0, lo[np.maximum(index, 0)], -np.inf))
        highs.append(np.where(index >= 0, hi[np.maximum(index, 0)], -np.inf))
    if node.const is not None:
        k = -node.const if node.negate else node.const
        lows.append(k[:, None])
        highs.append(k[:, None])
    lows, highs = np.concatenate(lows, axis=1), np.concatenate(highs, axis=1)
    return np.where(allowed, lows, -np.inf), np.where(allowed, highs, -np.inf)


def maxes(node: Node, boxes, allowed: np.ndarray):
    """(interval, Relax), or None when some output has no allowed candidate (no input of
    the region reaches it)."""
    if not np.all(allowed.any(axis=1)):
        return None
    lows, highs = candidates(node, boxes, allowed)
    n_out = len(lows)
    lower = [np.zeros((n_out, len(b[0]))) for b in boxes]
    upper = [np.zeros((n_out, len(b[0]))) for b in boxes]
    li, ui = np.zeros(n_out), np.zeros(n_out)
    sign = -1.0 if node.negate else 1.0
    mids = np.where(allowed, 0.5 * lows + 0.5 * highs, -np.inf)
    for j in range(n_out):
        a, b = int(np.argmax(mids[j])), int(np.argmax(highs[j]))
        rest = np.max(np.delete(highs[j], b), initial=-np.inf)
        s, t = _chord(float(lows[j, b]), float(highs[j, b]), float(rest))
        # max space: m >= u_a, m <= s u_b + t. y = sign * m, x = sign * u.
        low_line, up_line = (lower, upper) if sign > 0 else (upper, lower)
        low_icpt, up_icpt = (li, ui) if sign > 0 else (ui, li)
        _place(node, low_line, low_icpt, j, a, 1.0, 0.0, sign, lows[j, a])
        _place(node, up_line, up_icpt, j, b, s, t, sign, highs[j, b])
    out = (lows.max(axis=1), highs.max(axis=1))
    box = (-out[1], -out[0]) if node.negate else out
    return box, Relax(lower, upper, li, ui)


def _chord(low_b: float, high_b: float, rest: float) -> tuple[float, float]:
    """Slope and intercept (rounded up) of a line above max(u, rest) on [low_b, high_b]."""
    if rest <= low_b:
        return 1.0, 0.0
    if rest >= high_b:
        return 0.0, rest
    s = (high_b - rest) / (high_b - low_b)
    r, sf = Fraction(rest), Fraction(s)
    t = max(
        max(Fraction(low_b), r) - sf * Fraction(low_b), Fraction(high_b) - sf * Fraction(high_b)
    )
    return s, up(t)


def _place(node, lines, icpts, j, cand, s, t, sign, const_value) -> None:
    """Write the line (s, t) on candidate `cand` of output j, in y space."""
    icpts[j] = sign * t
    start = 0
    for i, index in enumerate(node.index):
        if cand < start + index.shape[1]:
            lines[i][j, index[j, cand - start]] = s
            return
        start += index.shape[1]
    icpts[j] = sign * const_value  # the constant candidate: the line is that constant
