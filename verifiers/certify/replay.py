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


def float32_inside(point: np.ndarray, case: Case) -> np.ndarray | None:
    """The float32 point nearest to `point` that lies in the exact box, or None."""
    x = np.asarray(point, dtype=np.float32).copy()
    for i, (lo, hi) in enumerate(zip(case.lower_exact, case.upper_exact, strict=True)):
        value = x[i]
        while Fraction(float(value)) < lo:
            value = np.nextafter(value, np.float32(np.inf))
        while Fraction(float(value)) > hi:
            value = np.nextafter(value, np.float32(-np.inf))
        if not lo <= Fraction(float(value)) <= hi:
            return None  # the box holds no float32 value in this coordinate
        x[i] = value
    return x


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
