"""Exact dyadic arithmetic on arrays: every number is m * 2**e with an integer m.

A matrix is a pair (ints, exps): `ints` an array (rows, cols) of Python ints (dtype object)
or of int64, `exps` an int64 array (rows,) of per-row exponents; a vector of per-row scalars
is (ints (rows,), exps (rows,)). Nothing here rounds, except the functions that say so
(round_rows, snap, fixed, floor_rows), each in a stated direction.

Products of matrices are exact and fast: the integers are cut into limbs of b bits, each
pair of limb matrices is multiplied in float64 BLAS, exact because n terms below 2**(2b)
each sum below 2**53 (b is chosen from n: limb_bits), and the partial products are put back
together in Python ints.
"""

from __future__ import annotations

import math
import sys
from fractions import Fraction

import numpy as np


def is_number(value) -> bool:
    """A finite JSON number (a bool is not one, though Python counts it an int)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


class NotFinite(ValueError):
    """A number that is not a finite float (a certificate's, or a bound's)."""


def limb_bits(n: int) -> int:
    """Limb size for dot products of n terms: n * 2**(2b) <= 2**52."""
    return max(8, (52 - max(n, 1).bit_length()) // 2)


def from_floats(values) -> tuple[np.ndarray, int]:
    """Floats exactly, as integers with one common exponent: (ints, exp); int64 when they
    fit in 62 bits, else Python ints."""
    m, rel, exp = _float_parts(values)
    if int(rel.max(initial=0)) + 53 <= 62:
        return m << rel, exp
    return m.astype(object) << rel.astype(object), exp


def _float_parts(values) -> tuple[np.ndarray, np.ndarray, int]:
    """Floats exactly as m << rel times 2**exp: (m int64 below 2**53, rel >= 0, exp)."""
    a = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise NotFinite("a number is not finite")
    mant, e = np.frexp(a)
    m = np.ldexp(mant, 53).astype(np.int64)
    shift = e.astype(np.int64) - 53
    nz = m != 0
    if not nz.any():
        return np.zeros(a.shape, dtype=np.int64), np.zeros(a.shape, dtype=np.int64), 0
    # Drop trailing zero bits: a float32 weight has at most 24 significant ones.
    low = np.where(nz, m & -m, 1)
    tz = np.round(np.log2(low.astype(np.float64))).astype(np.int64)
    m = m >> tz
    shift = shift + tz
    exp = int(shift[nz].min())
    return m, np.where(nz, shift - exp, 0), exp


def fixed(values: np.ndarray, bits: int = 46) -> tuple[np.ndarray, np.ndarray]:
    """Rows rounded to nearest on a grid of `bits` bits relative to their largest entry:
    (int64 ints, exps). For multipliers, which may take any value."""
    values = np.where(np.isfinite(values), values, 0.0)
    top = np.max(np.abs(values), axis=1) if values.shape[1] else np.zeros(values.shape[0])
    _, e = np.frexp(top)
    exps = np.where(top > 0.0, e.astype(np.int64) - bits, 0)
    ints = np.rint(np.ldexp(values, -exps[:, None])).astype(np.int64)
    return ints, exps


def limbs(ints: np.ndarray, bits: int) -> list[np.ndarray]:
    """Signed limbs of `bits` bits, least significant first, as float64 arrays."""
    mask = (1 << bits) - 1
    if ints.dtype == object:
        neg = np.asarray(ints < 0, dtype=bool)
        mag = np.where(neg, -ints, ints)
    else:
        neg = ints < 0
        mag = np.abs(ints.astype(np.int64))
    sign = np.where(neg, -1.0, 1.0)
    out = []
    while True:
        out.append((mag & mask).astype(np.int64).astype(np.float64) * sign)
        mag = mag >> bits
        if not np.any(mag != 0):
            return out


class Matrix:
    """A fixed right factor: exact integers with one exponent, kept as limbs."""

    def __init__(self, ints: np.ndarray, exp: int) -> None:
        self.bits = limb_bits(ints.shape[0])
        self.limbs = limbs(ints, self.bits)
        self.exp = exp

    @classmethod
    def of_floats(cls, values: np.ndarray) -> Matrix:
        """Floats' limbs straight from their mantissas and shifts, in int64: weights span
        many binades, and their common-exponent integers would be slow Python ints."""
        m, rel, exp = _float_parts(values)
        matrix = cls.__new__(cls)
        matrix.bits, matrix.exp = limb_bits(m.shape[0]), exp
        matrix.limbs = _shifted_limbs(m, rel, matrix.bits)
        return matrix


def _shifted_limbs(m: np.ndarray, rel: np.ndarray, bits: int) -> list[np.ndarray]:
    """limbs(m << rel, bits) for int64 m below 2**53 and shifts rel >= 0: limb i holds bits
    [i bits, (i + 1) bits) of |m| << rel, which is |m| >> (i bits - rel) or |m| << (rel -
    i bits), masked (int64 shifts keep the low bits, all the mask needs)."""
    mag, sign = np.abs(m), np.where(m < 0, -1.0, 1.0)
    length = np.where(mag != 0, np.frexp(mag.astype(np.float64))[1] + rel, 0)  # bit lengths
    count = max(1, -(-int(length.max(initial=0)) // bits))
    mask = (1 << bits) - 1
    out = []
    for i in range(count):
        s = i * bits - rel
        right = mag >> np.clip(s, 0, 63)
        left = mag << np.clip(-s, 0, bits)
        part = np.where(s >= 0, right, np.where(-s >= bits, 0, left)) & mask
        out.append(part.astype(np.float64) * sign)
    return out


def _limb_products(a: np.ndarray, b: Matrix) -> dict[int, np.ndarray]:
    """The limb products of a @ b summed per diagonal i + j (int64, exact: see limbs)."""
    if a.shape[1] >= (1 << 20):
        raise ValueError(f"dot products of {a.shape[1]} terms are beyond the exact product")
    diagonals: dict[int, np.ndarray] = {}
    for i, la in enumerate(limbs(a, b.bits)):
        for j, lb in enumerate(b.limbs):
            part = (la @ lb).astype(np.int64)
            diagonals[i + j] = diagonals[i + j] + part if i + j in diagonals else part
    return diagonals


def matmul(a: np.ndarray, a_exps: np.ndarray, b: Matrix) -> tuple[np.ndarray, np.ndarray]:
    """(a * 2**a_exps) @ (b * 2**b.exp), exactly: (Python ints, exps)."""
    bits = b.bits
    diagonals = _limb_products(a, b)
    acc = None
    for d in range(max(diagonals), -1, -1):
        part = diagonals[d].astype(object)
        acc = part if acc is None else (acc << bits) + part
    return acc, a_exps + b.exp


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
    """The float next to n * 2**e on the safe side: at or below it, or at or above it."""
    n, e = int(n), int(e)
    if n == 0:
        return 0.0
    extra = abs(n).bit_length() - 53
    if extra > 0:
        n = -((-n) >> extra) if up else n >> extra
        e += extra
    try:
        f = math.ldexp(float(n), e)
    except OverflowError:
        big = sys.float_info.max
        if up:
            return math.inf if n > 0 else -big
        return big if n > 0 else -math.inf
    if abs(f) < 2.0**-1000:  # subnormal: ldexp may have rounded either way
        value = to_fraction(n, e)
        f = float(value)
        if up and Fraction(f) < value:
            f = math.nextafter(f, math.inf)
        if not up and Fraction(f) > value:
            f = math.nextafter(f, -math.inf)
    return f


def round_rows(ints: np.ndarray, exps: np.ndarray, up: bool) -> np.ndarray:
    """Floats on the safe side of ints * 2**exps, elementwise (1-D)."""
    ints = np.asarray(ints, dtype=object)
    exps = np.broadcast_to(np.asarray(exps, dtype=np.int64), ints.shape)
    try:
        approx = np.ldexp(ints.astype(np.float64), exps)
    except OverflowError:
        return np.array([round_float(n, e, up) for n, e in zip(ints, exps, strict=True)])
    out = approx.copy()
    normal = np.isfinite(approx) & ((np.abs(approx) >= 2.0**-1000) | (ints == 0))
    if normal.any():
        # The float back at scale 2**exps: m * 2**(e - 53 - exps), a multiple of it here
        # (a float nearest to an integer multiple of 2**exps with >= 53 bits is one).
        mant, e = np.frexp(approx[normal])
        m = np.ldexp(mant, 53).astype(np.int64).astype(object)
        shift = e.astype(np.int64) - 53 - exps[normal]
        value = ints[normal]
        left = m << np.maximum(shift, 0).astype(object)
        # shift < 0: the float has bits below 2**exps; compare value << -shift with m.
        scaled_value = value << np.maximum(-shift, 0).astype(object)
        float_big = np.where(shift >= 0, left > value, m > scaled_value).astype(bool)
        float_small = np.where(shift >= 0, left < value, m < scaled_value).astype(bool)
        wrong = float_small if up else float_big
        chosen = approx[normal]
        chosen[wrong] = np.nextafter(chosen[wrong], np.inf if up else -np.inf)
        out[normal] = chosen
    for i in np.flatnonzero(~normal):
        out[i] = round_float(int(ints[i]), int(exps[i]), up)
    return out


def snap(values: np.ndarray, up: bool, bits: int = 46) -> np.ndarray:
    """Floats rounded outward (down, or up) to `bits` bits relative to the largest: the
    interval [snap(lo, False), snap(hi, True)] contains [lo, hi] and has short numbers."""
    finite = np.isfinite(values)
    top = float(np.max(np.abs(values[finite]))) if finite.any() else 0.0
    if top == 0.0:
        return values.astype(np.float64)
    exp = math.frexp(top)[1] - bits
    scaled = np.ldexp(values, -exp)
    return np.ldexp(np.ceil(scaled) if up else np.floor(scaled), exp)


def floor_rows(ints: np.ndarray, exps: np.ndarray, new_exps: np.ndarray) -> np.ndarray:
    """floor(ints * 2**(exps - new_exps)) per row, as int64 (callers keep it below 2**62)."""
    shift = (new_exps - exps)[:, None]
    ints = _obj(ints)
    right = ints >> np.maximum(shift, 0).astype(object)
    out = np.where(shift >= 0, right, ints << np.maximum(-shift, 0).astype(object))
    return out.astype(np.int64)


class Digits:
    """An exact integer matrix in base 2**bits, kept in int64 arrays: value =
    sum_d digits[d] * 2**(bits * d), every digit in [0, 2**bits) but the last, which carries
    the sign. One exponent per row, like the other matrices here. Products of matrices
    come out in this form (matmul_digits); reading a few exact values, floats near all of
    them, their signs and their floors by a power of two need no Python integers."""

    def __init__(self, digits: np.ndarray, bits: int, exps: np.ndarray) -> None:
        self.digits = digits  # (count, rows, cols) int64
        self.bits = bits
        self.exps = exps

    @property
    def shape(self) -> tuple[int, int]:
        return self.digits.shape[1:]

    def sign(self) -> np.ndarray:
        """-1, 0 or 1 per entry, exactly."""
        top = self.digits[-1]
        rest = np.any(self.digits[:-1] != 0, axis=0)
        return np.where(top < 0, -1, np.where((top > 0) | rest, 1, 0))

    def approx(self) -> np.ndarray:
        """Floats near the values (Horner from the top: no cancellation)."""
        acc = self.digits[-1].astype(np.float64)
        scale = float(2**self.bits)
        for d in range(len(self.digits) - 2, -1, -1):
            acc = acc * scale + self.digits[d]
        with np.errstate(over="ignore"):
            return np.ldexp(acc, np.clip(self.exps, -3000, 3000)[:, None])

    def exact(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The exact values of the entries (rows[i], cols[i]), as Python ints."""
        acc = self.digits[-1][rows, cols].astype(object)
        for d in range(len(self.digits) - 2, -1, -1):
            acc = (acc << self.bits) + self.digits[d][rows, cols].astype(object)
        return acc

    def column(self, j: int) -> np.ndarray:
        rows = np.arange(self.shape[0])
        return self.exact(rows, np.full(len(rows), j))

    def floor(self, new_exps: np.ndarray) -> np.ndarray:
        """floor(value * 2**(exps - new_exps)) per entry, int64; the caller picks new_exps so
        that it stays below 2**60."""
        t = (new_exps - self.exps).astype(np.int64)
        down = np.maximum(t, 0)
        q, r = down // self.bits, down % self.bits
        count = len(self.digits)
        q = np.minimum(q, count - 1)  # a shift beyond the top digit: the top's floor
        acc = np.zeros(self.shape, dtype=np.int64)
        with np.errstate(over="ignore"):
            for d in range(count - 1, 0, -1):
                above = (d > q)[:, None]
                acc = np.where(above, acc * (np.int64(1) << self.bits) + self.digits[d], acc)
        at_q = np.take_along_axis(self.digits, q[None, :, None].repeat(self.shape[1], 2), 0)[0]
        extra = (down - q * self.bits)[:, None]  # r, or more when q was capped
        low = at_q >> np.minimum(extra, 63)
        value = (acc << (self.bits - r)[:, None]) + low
        return value << np.maximum(-t, 0)[:, None]


def matmul_digits(a: np.ndarray, a_exps: np.ndarray, b: Matrix) -> Digits:
    """(a * 2**a_exps) @ (b * 2**b.exp) exactly, as Digits."""
    bits = b.bits
    diagonals = _limb_products(a, b)
    mask = (np.int64(1) << bits) - 1
    digits, carry = [], np.zeros(next(iter(diagonals.values())).shape, dtype=np.int64)
    for d in range(max(diagonals) + 1):
        v = diagonals[d] + carry
        digits.append(v & mask)
        carry = v >> bits
    while np.any((carry != 0) & (carry != -1)):
        digits.append(carry & mask)
        carry = carry >> bits
    digits.append(carry)
    return Digits(np.stack(digits), bits, a_exps + b.exp)
