"""Exact dyadic arithmetic on arrays: every number is m * 2**e with a Python int m.

A matrix is a pair (ints, exps): `ints` an array (rows, cols) of Python ints (dtype object)
or of int64, `exps` an int64 array (rows,) of per-row exponents; a row vector of scalars
is (ints (rows,), exps (rows,)). Nothing here rounds, except the functions named round_*.

Products of matrices are exact and fast: the integers are cut into 20-bit limbs, each pair
of limb matrices is multiplied in float64 BLAS (exact: a dot product of fewer than 8192
terms below 2**40 each stays below 2**53), and the partial products are put back together
in Python ints.
"""

from __future__ import annotations

import math
import sys
from fractions import Fraction

import numpy as np

LIMB = 20
MASK = (1 << LIMB) - 1
MAX_TERMS = 8192


class NotFinite(ValueError):
    """A number that is not a finite float (a certificate's, or a bound's)."""


def from_floats(values) -> tuple[np.ndarray, int]:
    """Floats exactly, as Python ints with one common exponent: (ints, exp)."""
    a = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise NotFinite("a number is not finite")
    mant, e = np.frexp(a)
    m = np.ldexp(mant, 53).astype(np.int64)
    shift = e.astype(np.int64) - 53
    nz = m != 0
    if not nz.any():
        return np.zeros(a.shape, dtype=object), 0
    # Drop trailing zero bits: a float32 weight has at most 24 significant ones.
    low = np.where(nz, m & -m, 1)
    tz = np.round(np.log2(low.astype(np.float64))).astype(np.int64)
    m = m >> tz
    shift = shift + tz
    exp = int(shift[nz].min())
    ints = m.astype(object) << np.where(nz, shift - exp, 0).astype(object)
    return ints, exp


def rows_from_floats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A float matrix exactly, one exponent per row."""
    out = np.zeros(values.shape, dtype=object)
    exps = np.zeros(values.shape[0], dtype=np.int64)
    for i, row in enumerate(values):
        out[i], exps[i] = from_floats(row)
    return out, exps


def fixed(values: np.ndarray, bits: int = 53) -> tuple[np.ndarray, np.ndarray]:
    """Rows rounded to `bits` bits relative to their largest entry: (int64 ints, exps).
    Used for multipliers, which may take any value: rounding them costs no soundness."""
    values = np.where(np.isfinite(values), values, 0.0)
    top = np.max(np.abs(values), axis=1) if values.shape[1] else np.zeros(values.shape[0])
    _, e = np.frexp(top)
    exps = np.where(top > 0.0, e.astype(np.int64) - bits, 0)
    ints = np.rint(np.ldexp(values, -exps[:, None])).astype(np.int64)
    return ints, exps


def limbs(ints: np.ndarray) -> list[np.ndarray]:
    """Signed 20-bit limbs, least significant first, as float64 arrays."""
    if ints.dtype == object:
        neg = np.asarray(ints < 0, dtype=bool)
        mag = np.where(neg, -ints, ints)
    else:
        neg = ints < 0
        mag = np.abs(ints.astype(np.int64))
    sign = np.where(neg, -1.0, 1.0)
    out = []
    while True:
        out.append((mag & MASK).astype(np.int64).astype(np.float64) * sign)
        mag = mag >> LIMB
        if not np.any(mag != 0):
            return out


def matmul(
    a: np.ndarray, a_exps: np.ndarray, b_limbs: list[np.ndarray], b_exp: int
) -> tuple[np.ndarray, np.ndarray]:
    """(a * 2**a_exps) @ (b * 2**b_exp) exactly, b given by its limbs."""
    if a.shape[1] >= MAX_TERMS:
        raise ValueError(f"dot products of {a.shape[1]} terms are beyond the exact product")
    diagonals: dict[int, np.ndarray] = {}
    for i, la in enumerate(limbs(a)):
        for j, lb in enumerate(b_limbs):
            part = (la @ lb).astype(np.int64)
            diagonals[i + j] = diagonals[i + j] + part if i + j in diagonals else part
    acc = None
    for d in range(max(diagonals), -1, -1):
        acc = (
            diagonals[d].astype(object)
            if acc is None
            else (acc << LIMB) + diagonals[d].astype(object)
        )
    return acc, a_exps + b_exp


def align(x: np.ndarray, x_exps: np.ndarray, y: np.ndarray, y_exps: np.ndarray):
    """Both at the smaller exponent of each row: (x', y', exps)."""
    exps = np.minimum(x_exps, y_exps)
    shape = (-1,) + (1,) * (x.ndim - 1)
    sx = (x_exps - exps).reshape(shape).astype(object)
    sy = (y_exps - exps).reshape(shape).astype(object)
    return _obj(x) << sx, _obj(y) << sy, exps


def add(x, x_exps, y, y_exps):
    x, y, exps = align(x, x_exps, y, y_exps)
    return x + y, exps


def _obj(x: np.ndarray) -> np.ndarray:
    return x if x.dtype == object else x.astype(object)


def to_fraction(n: int, e: int) -> Fraction:
    return Fraction(n << e) if e >= 0 else Fraction(n, 1 << -e)


def round_float(n: int, e: int, up: bool) -> float:
    """The float next to n * 2**e on the safe side: below it (up=False) or above it."""
    n = int(n)
    if n == 0:
        return 0.0
    extra = abs(n).bit_length() - 53
    if extra > 0:
        n = -((-n) >> extra) if up else n >> extra
        e += extra
    try:
        f = math.ldexp(float(n), int(e))
    except OverflowError:
        big = sys.float_info.max
        if up:
            return math.inf if n > 0 else -big
        return big if n > 0 else -math.inf
    if f == 0.0 or abs(f) < 2.0**-1000:  # subnormal: ldexp may have rounded either way
        exact = to_fraction(n, int(e))
        f = float(exact)
        if up and Fraction(f) < exact:
            f = math.nextafter(f, math.inf)
        if not up and Fraction(f) > exact:
            f = math.nextafter(f, -math.inf)
    return f


def round_rows(ints: np.ndarray, exps: np.ndarray, up: bool) -> np.ndarray:
    return np.array([round_float(n, e, up) for n, e in zip(ints, exps, strict=True)])
