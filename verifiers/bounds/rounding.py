"""Outward rounding: how much float64 arithmetic may have moved a computed bound.

For a dot product of length n computed in float64, |fl(w.x) - w.x| <= gamma(n) * |w|.|x|
with gamma(n) = n*u / (1 - n*u), u = 2**-53 (Higham, Accuracy and Stability, 3.1). Every
bound engine subtracts (or adds) such a term so that a computed bound is never tighter than
the exact real bound. UNDERFLOW covers the absolute error of products in the subnormal range.

Non-finite values fail closed: a bound that overflowed (or became NaN) is no bound (-inf for
a lower bound, +inf for an upper one), and a proof is accepted only on a finite value > 0.
"""

from __future__ import annotations

import numpy as np

UNIT_ROUNDOFF = 2.0**-53
UNDERFLOW = 1e-300


def gamma(n: int) -> float:
    # Doubled, and padded by 2 operations, to also cover the rounding of the slack itself.
    k = n + 2
    return 2.0 * k * UNIT_ROUNDOFF / (1.0 - k * UNIT_ROUNDOFF)


def widen_down(lower: np.ndarray, slack: np.ndarray) -> np.ndarray:
    """A lower bound moved down by its rounding slack. Overflow means no bound: a result
    that is not finite (inf, or NaN from inf - inf or 0 * inf) becomes -inf, so it can never
    prove anything downstream."""
    with np.errstate(over="ignore", invalid="ignore"):
        value = lower - (slack + UNDERFLOW)
    return np.where(np.isfinite(value), value, -np.inf)


def widen_up(upper: np.ndarray, slack: np.ndarray) -> np.ndarray:
    """An upper bound moved up by its rounding slack; not finite becomes +inf (no bound)."""
    with np.errstate(over="ignore", invalid="ignore"):
        value = upper + (slack + UNDERFLOW)
    return np.where(np.isfinite(value), value, np.inf)


def proves(value: np.ndarray | float) -> np.ndarray | bool:
    """A computed lower bound of (a.y - b) proves a.y > b only when it is finite and
    positive: every comparison that accepts a proof goes through here, so NaN fails closed."""
    value = np.asarray(value, dtype=np.float64)
    result = np.isfinite(value) & (value > 0.0)
    return bool(result) if result.ndim == 0 else result
