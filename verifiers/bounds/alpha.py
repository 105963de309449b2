"""Optimised lower slopes of unstable ReLUs (alpha-CROWN), as a proposal only.

An unstable ReLU with pre-activation bounds l < 0 < u is bounded below by the line
y >= lam * x for any lam in [alpha, 1] (alpha: the LeakyRelu slope, 0 for a ReLU); CROWN
picks lam by a rule of thumb (1 when u > -l, else alpha). Every lam gives a valid bound, so
the slopes can be chosen per objective row to make that row's bound as large as possible
(Xu et al., "Fast and Complete", ICLR 2021): projected gradient ascent (Adam) on the bound.

The bound of a row is piecewise linear in the slopes, and its gradient is analytic: the
back-substitution's value equals the relaxed network evaluated forward at the minimising
input corner x*, with each ReLU replaced by its lower line where the row's coefficient on
its output is positive and by its upper line where negative. d value / d lam_j is then
(that coefficient) x (the relaxed pre-activation at x*), one backward and one forward pass
per step, both in plain float64.

Nothing here is sound by itself: the caller re-evaluates the best slopes with the outward-
rounded back-substitution (bounds/linear.py), for which any float lam in [alpha, 1] is a
valid slope. The slopes returned are clipped to that interval and are finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verifiers.deadline import check
from verifiers.model.network import PiecewiseLinearNetwork

# Adam's step size and moment decays (alpha-CROWN's defaults), and the step's decay.
LEARNING_RATE = 0.1
BETA1, BETA2 = 0.9, 0.999
DECAY = 0.98


@dataclass(frozen=True)
class SlopeSearch:
    """How linear_bounds optimises slopes: `iterations` Adam steps for the objective rows,
    and (`intermediate`) for the pre-activation bounds of every layer too; `start` warm-starts
    the objective rows from earlier slopes (one array (batch, m, n) per ReLU layer)."""

    iterations: int = 20
    intermediate: bool = False
    intermediate_iterations: int = 10
    start: list[np.ndarray] | None = None


@dataclass(frozen=True)
class Lines:
    """A ReLU layer's relaxation in float64, for the optimiser (broadcast over rows)."""

    default: np.ndarray  # (batch, 1, n): CROWN's lower slopes
    upper: np.ndarray  # (batch, 1, n): the upper line's slope
    intercept: np.ndarray  # (batch, n): the upper line's intercept
    floor: float  # the smallest valid lower slope (the LeakyRelu slope)
    unstable: np.ndarray  # (batch, 1, n)


def optimise_slopes(
    network: PiecewiseLinearNetwork,
    rows: np.ndarray,
    last_affine: int,
    lines: list[Lines],
    box: tuple[np.ndarray, np.ndarray],
    iterations: int,
    start: list[np.ndarray] | None = None,
    deadline: float | None = None,
) -> list[np.ndarray]:
    """Per ReLU layer before affine layer `last_affine`, lower slopes (batch, m, n) for the
    rows (batch, m, n_out) that make each row's (float) lower bound as large as found."""
    lines = lines[:last_affine]
    shape = rows.shape[:2]
    slopes = [
        _initial(line, shape, s)
        for line, s in zip(lines, start or [None] * len(lines), strict=True)
    ]
    best = [s.copy() for s in slopes]
    best_value = np.full(shape, -np.inf)
    first = [np.zeros_like(s) for s in slopes]
    second = [np.zeros_like(s) for s in slopes]
    rate = LEARNING_RATE
    for step in range(1, iterations + 2):
        check(deadline)
        value, saved, corner = _bound(network, rows, last_affine, lines, slopes, box)
        better = value > best_value
        best_value = np.where(better, value, best_value)
        for b, s in zip(best, slopes, strict=True):
            b[better] = s[better]
        if step > iterations:
            break
        grads = _gradient(network, last_affine, lines, slopes, saved, corner)
        for k, (line, grad) in enumerate(zip(lines, grads, strict=True)):
            first[k] = BETA1 * first[k] + (1 - BETA1) * grad
            second[k] = BETA2 * second[k] + (1 - BETA2) * grad * grad
            m_hat = first[k] / (1 - BETA1**step)
            v_hat = second[k] / (1 - BETA2**step)
            moved = slopes[k] + rate * m_hat / (np.sqrt(v_hat) + 1e-8)
            slopes[k] = _project(moved, line)
        rate *= DECAY
    return [_project(b, line) for b, line in zip(best, lines, strict=True)]


def _initial(line: Lines, shape: tuple[int, int], start: np.ndarray | None) -> np.ndarray:
    slopes = np.broadcast_to(line.default, (*shape, line.default.shape[-1])).copy()
    if start is not None:
        slopes = np.where(line.unstable, np.broadcast_to(start, slopes.shape), slopes)
    return _project(slopes, line)


def _project(slopes: np.ndarray, line: Lines) -> np.ndarray:
    """Into [floor, 1] on unstable ReLUs (a non-finite value falls back to CROWN's); stable
    ones keep their exact line."""
    clipped = np.clip(np.where(np.isfinite(slopes), slopes, line.default), line.floor, 1.0)
    return np.where(line.unstable, clipped, line.default)


def _bound(network, rows, last_affine, lines, slopes, box):
    """The float back-substitution: each row's lower bound (batch, m), the coefficients on
    every ReLU layer's output, and the minimising input corner (batch, m, n_in)."""
    coeffs = rows
    const = np.zeros(rows.shape[:2])
    saved: list[np.ndarray] = [np.empty(0)] * last_affine
    affine_layers = network.affine_layers
    for k in range(last_affine, -1, -1):
        layer = affine_layers[k]
        if not layer.is_identity:
            const = const + coeffs @ layer.bias
            coeffs = coeffs @ layer.weight
        if k > 0:
            line = lines[k - 1]
            saved[k - 1] = coeffs
            const = const + np.einsum("bmn,bn->bm", np.minimum(coeffs, 0.0), line.intercept)
            coeffs = np.where(coeffs >= 0.0, coeffs * slopes[k - 1], coeffs * line.upper)
    lower, upper = box
    corner = np.where(coeffs >= 0.0, lower[:, None, :], upper[:, None, :])
    return np.einsum("bmn,bmn->bm", coeffs, corner) + const, saved, corner


def _gradient(network, last_affine, lines, slopes, saved, corner) -> list[np.ndarray]:
    """d bound / d slopes: the relaxed network run forward from the corner x*."""
    z = corner
    grads = []
    for k in range(last_affine):
        layer = network.affine_layers[k]
        if not layer.is_identity:
            z = z @ layer.weight.T + layer.bias
        coeffs, line = saved[k], lines[k]
        grads.append(np.where(line.unstable & (coeffs > 0.0), coeffs * z, 0.0))
        z = np.where(coeffs >= 0.0, slopes[k] * z, line.upper * z + line.intercept[:, None, :])
    return grads
