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
    the objective rows from earlier slopes (one array (batch, m, n) per ReLU layer).

    `signs` (one array (batch, n) per ReLU layer: -1 split active, +1 split inactive, 0 not
    split) adds beta-CROWN's multipliers for the split constraints to the objective rows:
    `betas` (>= 0, per row) times sign * pre-activation, which is <= 0 on the region, added
    to the objective; `start_betas` warm-starts them."""

    iterations: int = 20
    intermediate: bool = False
    intermediate_iterations: int = 10
    start: list[np.ndarray] | None = None
    signs: list[np.ndarray] | None = None
    start_betas: list[np.ndarray] | None = None
    # Rows whose CROWN bound is above this (m,) already do their job: not optimised.
    target: np.ndarray | None = None


@dataclass(frozen=True)
class Lines:
    """A ReLU layer's relaxation in float64, for the optimiser (broadcast over rows)."""

    default: np.ndarray  # (batch, 1, n): CROWN's lower slopes
    upper: np.ndarray  # (batch, 1, n): the upper line's slope
    intercept: np.ndarray  # (batch, n): the upper line's intercept
    floor: float  # the smallest valid lower slope (the LeakyRelu slope)
    unstable: np.ndarray  # (batch, 1, n)
    sign: np.ndarray | None = None  # (batch, 1, n): the split constraints (SlopeSearch.signs)


def optimise_slopes(
    network: PiecewiseLinearNetwork,
    rows: np.ndarray,
    last_affine: int,
    lines: list[Lines],
    box: tuple[np.ndarray, np.ndarray],
    iterations: int,
    start: list[np.ndarray] | None = None,
    deadline: float | None = None,
    start_betas: list[np.ndarray] | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per ReLU layer before affine layer `last_affine`, lower slopes (batch, m, n) for the
    rows (batch, m, n_out), and multipliers (batch, m, n) of the split constraints (0 where
    a line has no sign), that make each row's (float) lower bound as large as found."""
    lines = lines[:last_affine]
    shape = rows.shape[:2]
    slopes = [
        _initial(line, shape, s)
        for line, s in zip(lines, start or [None] * len(lines), strict=True)
    ]
    betas = [
        _betas(line, shape, b)
        for line, b in zip(lines, start_betas or [None] * len(lines), strict=True)
    ]
    variables = slopes + betas
    best = [v.copy() for v in variables]
    best_value = np.full(shape, -np.inf)
    adam = _Adam(variables)
    for step in range(1, iterations + 2):
        check(deadline)
        value, saved, corner = _bound(network, rows, last_affine, lines, variables, box)
        better = value > best_value
        best_value = np.where(better, value, best_value)
        for b, v in zip(best, variables, strict=True):
            b[better] = v[better]
        if step > iterations:
            break
        grads = _gradient(network, last_affine, lines, variables, saved, corner)
        variables = adam.ascend(variables, grads, step)
        n = len(lines)
        variables = [_project(v, line) for v, line in zip(variables[:n], lines, strict=True)] + [
            _project_beta(v, line) for v, line in zip(variables[n:], lines, strict=True)
        ]
    n = len(lines)
    return (
        [_project(b, line) for b, line in zip(best[:n], lines, strict=True)],
        [_project_beta(b, line) for b, line in zip(best[n:], lines, strict=True)],
    )


class _Adam:
    """Adam's moments for a list of arrays; the step size decays by DECAY per step."""

    def __init__(self, variables: list[np.ndarray]) -> None:
        self.first = [np.zeros_like(v) for v in variables]
        self.second = [np.zeros_like(v) for v in variables]
        self.rate = LEARNING_RATE

    def ascend(self, variables, grads, step: int) -> list[np.ndarray]:
        moved = []
        for k, (v, g) in enumerate(zip(variables, grads, strict=True)):
            self.first[k] = BETA1 * self.first[k] + (1 - BETA1) * g
            self.second[k] = BETA2 * self.second[k] + (1 - BETA2) * g * g
            m_hat = self.first[k] / (1 - BETA1**step)
            v_hat = self.second[k] / (1 - BETA2**step)
            moved.append(v + self.rate * m_hat / (np.sqrt(v_hat) + 1e-8))
        self.rate *= DECAY
        return moved


def _betas(line: Lines, shape: tuple[int, int], start: np.ndarray | None) -> np.ndarray:
    betas = np.zeros((*shape, line.default.shape[-1]))
    if start is not None:
        betas = betas + start
    return _project_beta(betas, line)


def _project_beta(betas: np.ndarray, line: Lines) -> np.ndarray:
    """>= 0 and finite, and 0 where the ReLU is not split."""
    if line.sign is None:
        return np.zeros_like(betas)
    finite = np.where(np.isfinite(betas), np.maximum(betas, 0.0), 0.0)
    return np.where(line.sign != 0.0, finite, 0.0)


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


def _bound(network, rows, last_affine, lines, variables, box):
    """The float back-substitution: each row's lower bound (batch, m), the coefficients on
    every ReLU layer's output, and the minimising input corner (batch, m, n_in)."""
    slopes, betas = variables[: len(lines)], variables[len(lines) :]
    coeffs = rows
    const = np.zeros(rows.shape[:2])
    saved: list[np.ndarray] = [np.empty(0)] * last_affine
    affine_layers = network.affine_layers
    for k in range(last_affine, -1, -1):
        layer = affine_layers[k]
        if not layer.is_identity:
            const = const + coeffs @ layer.bias
            coeffs = times(coeffs, layer.weight)
        if k > 0:
            line = lines[k - 1]
            saved[k - 1] = coeffs
            const = const + np.einsum("bmn,bn->bm", np.minimum(coeffs, 0.0), line.intercept)
            coeffs = np.where(coeffs >= 0.0, coeffs * slopes[k - 1], coeffs * line.upper)
            if line.sign is not None:
                coeffs = coeffs + betas[k - 1] * line.sign
    lower, upper = box
    corner = np.where(coeffs >= 0.0, lower[:, None, :], upper[:, None, :])
    return np.einsum("bmn,bmn->bm", coeffs, corner) + const, saved, corner


def _gradient(network, last_affine, lines, variables, saved, corner) -> list[np.ndarray]:
    """d bound / d (slopes, betas): the relaxed network run forward from the corner x*."""
    slopes = variables[: len(lines)]
    z = corner
    grads, beta_grads = [], []
    for k in range(last_affine):
        layer = network.affine_layers[k]
        if not layer.is_identity:
            z = times(z, layer.weight.T) + layer.bias
        coeffs, line = saved[k], lines[k]
        grads.append(np.where(line.unstable & (coeffs > 0.0), coeffs * z, 0.0))
        beta_grads.append(z * line.sign if line.sign is not None else np.zeros_like(z))
        z = np.where(coeffs >= 0.0, slopes[k] * z, line.upper * z + line.intercept[:, None, :])
    return grads + beta_grads


def times(stack: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(batch, m, n) @ (n, k) as one matrix product (numpy would loop over the batch)."""
    batch, m, n = stack.shape
    return (stack.reshape(batch * m, n) @ matrix).reshape(batch, m, matrix.shape[1])
