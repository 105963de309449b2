"""Outward rounding: how much float64 arithmetic may have moved a computed bound.

For a dot product of length n computed in float64, |fl(w.x) - w.x| <= gamma(n) * |w|.|x|
with gamma(n) = n*u / (1 - n*u), u = 2**-53 (Higham, Accuracy and Stability, 3.1). Every
bound engine subtracts (or adds) such a term so that a computed bound is never tighter than
the exact real bound. UNDERFLOW covers the absolute error of products in the subnormal range.
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
    return lower - (slack + UNDERFLOW)


def widen_up(upper: np.ndarray, slack: np.ndarray) -> np.ndarray:
    return upper + (slack + UNDERFLOW)
