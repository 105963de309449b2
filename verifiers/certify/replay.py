"""Replay of candidate counterexamples: no `violated` without one that checks exactly.

A candidate is rounded to float32 *inside* the exact input box, run through onnxruntime,
and accepted only if the exact rational check puts the float32 output in the unsafe set:
zero tolerance, stricter than VNN-COMP's checker.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import numpy as np

from verifiers.result import Counterexample
from verifiers.spec.property import Case

Runner = Callable[[np.ndarray], np.ndarray]


_F32_MAX = Fraction(float(np.finfo(np.float32).max))


def _float32_at_least(value: Fraction, strict: bool) -> np.float32 | None:
    """The smallest float32 >= value (> value when strict); None when there is none."""
    if value < -_F32_MAX:
        return np.float32(-_F32_MAX)
    if value > _F32_MAX or (strict and value == _F32_MAX):
        return None

    def admits(f: np.float32) -> bool:
        exact = Fraction(float(f))
        return exact > value or (exact == value and not strict)

    start = np.float32(float(value))  # rounded to nearest: a step or two from the answer
    while not admits(start):
        start = np.nextafter(start, np.float32(np.inf))
    while np.isfinite(below := np.nextafter(start, np.float32(-np.inf))) and admits(below):
        start = below
    return start if np.isfinite(start) else None


def _float32_at_most(value: Fraction, strict: bool) -> np.float32 | None:
    below = _float32_at_least(-value, strict)
    return None if below is None else -below


def float32_inside(point: np.ndarray, case: Case) -> np.ndarray | None:
    """The float32 point nearest to `point` that lies in the exact input set (strict bounds
    strictly), or None when some coordinate's set holds no float32 value. A non-finite
    coordinate is moved to the middle of its float32 range."""
    x = np.asarray(point, dtype=np.float64)
    inside = np.empty(len(case.lower_exact), dtype=np.float32)
    for i, (lo, hi) in enumerate(zip(case.lower_exact, case.upper_exact, strict=True)):
        strict_lo, strict_hi = case.strict_at(i)
        first, last = _float32_at_least(lo, strict_lo), _float32_at_most(hi, strict_hi)
        if first is None or last is None or first > last:
            return None
        value = x[i] if np.isfinite(x[i]) else 0.5 * (float(first) + float(last))
        with np.errstate(over="ignore"):
            inside[i] = np.clip(np.float32(value), first, last)
    return inside


def replay(
    candidates: np.ndarray, case: Case, run: Runner, engine: Runner, margin: float = 0.0
) -> Counterexample | None:
    """The first candidate (in order) that is a confirmed counterexample, or None.

    `margin` > 0 asks for a proof with room to spare; a violation of the widened property is
    still reported only when the original property is violated exactly.
    """
    points = [p for p in (float32_inside(c, case) for c in candidates) if p is not None]
    if not points:
        return None
    batch = np.stack(points)
    replayed = np.asarray(run(batch), dtype=np.float32)
    for x, y in zip(batch, replayed, strict=True):
        hit = [c for c in case.unsafe if c.holds_exactly(y)]
        if hit:
            engine_y = engine(x[None, :].astype(np.float64))[0]
            return Counterexample(
                inputs=[float(v) for v in x],
                outputs=[float(v) for v in engine_y],
                onnxruntime_outputs=[float(v) for v in y],
                margin=float(max(c.margin(y.astype(np.float64)) for c in hit)),
            )
    return None
