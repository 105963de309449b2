"""Linear bound propagation (CROWN / DeepPoly back-substitution) on many boxes at once.

Each ReLU is replaced by two linear functions that enclose it on its pre-activation interval;
a linear objective is substituted backwards through the layers down to the input box, where
its minimum is read off the box corners. Intermediate pre-activation bounds come from the
same procedure, layer by layer, intersected with interval bounds.

Soundness in floating point: every backward step adds to a running `slack` a bound on what
float64 rounding (and the layers' own composition error) may have changed; the returned
lower bounds subtract it, so they are never above the exact real minimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verifiers.bounds.interval import affine_interval, relu_interval
from verifiers.bounds.rounding import UNIT_ROUNDOFF, gamma, widen_down
from verifiers.model.network import AffineLayer, PiecewiseLinearNetwork, ReluLayer


@dataclass
class _Backward:
    """A linear lower bound  objective >= coeffs . z + const - slack  for a layer's values z."""

    coeffs: np.ndarray  # (batch, m, n)
    const: np.ndarray  # (batch, m)
    slack: np.ndarray  # (batch, m)
    const_magnitude: np.ndarray  # (batch, m): sum of |terms| added into const

    def add_const(self, term: np.ndarray) -> None:
        self.const = self.const + term
        self.const_magnitude = self.const_magnitude + np.abs(term)


@dataclass(frozen=True)
class LinearBounds:
    """Pre-activation bounds of every affine layer, and the objective's input-level form."""

    layers: list[tuple[np.ndarray, np.ndarray]]
    objective_lower: np.ndarray | None  # (batch, m)
    objective_coeffs: np.ndarray | None  # (batch, m, n_inputs)
    objective_minimizer: np.ndarray | None  # (batch, m, n_inputs): box corner of the minimum


def _magnitude(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(lower), np.abs(upper))


def _affine_back(state: _Backward, layer: AffineLayer, magnitude_in: np.ndarray) -> None:
    if layer.is_identity:
        return
    abs_coeffs = np.abs(state.coeffs)
    state.add_const(state.coeffs @ layer.bias)
    # Error of fl(coeffs @ W) and fl(coeffs @ b), plus the layer's own composition error.
    per_output = gamma(layer.n_out) * (magnitude_in @ np.abs(layer.weight).T + np.abs(layer.bias))
    per_output = per_output + magnitude_in @ layer.weight_err.T + layer.bias_err
    state.slack = state.slack + np.einsum("bmn,bn->bm", abs_coeffs, per_output)
    state.coeffs = state.coeffs @ layer.weight


def relu_relaxation(
    layer: ReluLayer, lower: np.ndarray, upper: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slopes of the lower line (through 0), and slope + intercept of the upper line.

    Lower line: y >= lam * x with lam in [alpha, 1] (valid everywhere). Upper line: the chord
    over [l, u], its intercept pushed up until it is above both endpoints in float64, which
    makes it valid on the whole interval because the ReLU is convex.
    """
    alpha = layer.alpha
    active, inactive = lower >= 0.0, upper <= 0.0
    unstable = ~(active | inactive)
    width = np.where(unstable, upper - lower, 1.0)
    chord = np.where(unstable, (upper - alpha * lower) / width, 0.0)
    intercept = np.where(unstable, alpha * lower - chord * lower, 0.0)
    short_low = alpha * lower - (chord * lower + intercept)
    short_high = upper - (chord * upper + intercept)
    fix = np.maximum(np.maximum(short_low, short_high), 0.0)
    fix = fix + 4.0 * UNIT_ROUNDOFF * (np.abs(intercept) + chord * _magnitude(lower, upper))
    intercept = np.where(unstable, intercept + fix, 0.0)
    adaptive = np.where(upper > -lower, 1.0, alpha)
    lower_slope = np.where(active, 1.0, np.where(inactive, alpha, adaptive))
    upper_slope = np.where(active, 1.0, np.where(inactive, alpha, chord))
    return lower_slope, upper_slope, intercept


def _relu_back(state: _Backward, layer: ReluLayer, lower: np.ndarray, upper: np.ndarray) -> None:
    lower_slope, upper_slope, intercept = relu_relaxation(layer, lower, upper)
    pos, neg = np.maximum(state.coeffs, 0.0), np.minimum(state.coeffs, 0.0)
    state.add_const(np.einsum("bmn,bn->bm", neg, intercept))
    steepest = np.maximum(np.abs(lower_slope), np.abs(upper_slope)) * _magnitude(lower, upper)
    slack = 2.0 * UNIT_ROUNDOFF * steepest + gamma(lower.shape[-1]) * np.abs(intercept)
    state.slack = state.slack + np.einsum("bmn,bn->bm", np.abs(state.coeffs), slack)
    state.coeffs = pos * lower_slope[:, None, :] + neg * upper_slope[:, None, :]


def _read_off(
    state: _Backward, lower: np.ndarray, upper: np.ndarray, depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """The minimum over the input box, and the corner attaining it."""
    pos, neg = np.maximum(state.coeffs, 0.0), np.minimum(state.coeffs, 0.0)
    value = np.einsum("bmn,bn->bm", pos, lower) + np.einsum("bmn,bn->bm", neg, upper)
    value = value + state.const
    magnitude = _magnitude(lower, upper)
    slack = state.slack * (1.0 + 1e-6)
    slack = slack + gamma(lower.shape[-1]) * np.einsum(
        "bmn,bn->bm", np.abs(state.coeffs), magnitude
    )
    slack = slack + gamma(2 * depth + 2) * state.const_magnitude
    corner = np.where(state.coeffs >= 0.0, lower[:, None, :], upper[:, None, :])
    return widen_down(value, slack), corner


def _back_substitute(
    network: PiecewiseLinearNetwork,
    coeffs: np.ndarray,
    last_affine: int,
    pre_bounds: list[tuple[np.ndarray, np.ndarray]],
    magnitudes: list[np.ndarray],
    box: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower bounds of coeffs . (output of affine layer `last_affine`) over the boxes."""
    batch, m = coeffs.shape[0], coeffs.shape[1]
    state = _Backward(coeffs, np.zeros((batch, m)), np.zeros((batch, m)), np.zeros((batch, m)))
    affine_layers = network.affine_layers
    relu_layers = network.relu_layers
    for k in range(last_affine, -1, -1):
        _affine_back(state, affine_layers[k], magnitudes[k])
        if k > 0:
            lower, upper = pre_bounds[k - 1]
            _relu_back(state, relu_layers[k - 1], lower, upper)
    value, corner = _read_off(state, box[0], box[1], last_affine + 1)
    return value, state.coeffs, corner


def linear_bounds(
    network: PiecewiseLinearNetwork,
    lower: np.ndarray,
    upper: np.ndarray,
    objective: np.ndarray | None = None,
) -> LinearBounds:
    """Bounds over boxes (batch, n_inputs); `objective` (m, n_outputs) rows are minimised."""
    affine_layers, relu_layers = network.affine_layers, network.relu_layers
    batch = lower.shape[0]
    pre_bounds: list[tuple[np.ndarray, np.ndarray]] = []
    magnitudes = [_magnitude(lower, upper)]
    post = (lower, upper)
    for k, layer in enumerate(affine_layers):
        low, high = affine_interval(layer, *post)
        if k > 0:
            eye = np.eye(layer.n_out)
            rows = np.broadcast_to(
                np.concatenate([eye, -eye]), (batch, 2 * layer.n_out, layer.n_out)
            )
            value, _, _ = _back_substitute(
                network, np.array(rows), k, pre_bounds, magnitudes, (lower, upper)
            )
            low = np.maximum(low, value[:, : layer.n_out])
            high = np.minimum(high, -value[:, layer.n_out :])
        pre_bounds.append((low, high))
        if k < len(relu_layers):
            post = relu_interval(relu_layers[k], low, high)
            magnitudes.append(_magnitude(*post))
    if objective is None:
        return LinearBounds(pre_bounds, None, None, None)
    rows = (
        np.broadcast_to(objective, (batch, *objective.shape[-2:]))
        if objective.ndim == 2
        else objective
    )
    value, coeffs, corner = _back_substitute(
        network,
        np.array(rows, dtype=np.float64),
        len(affine_layers) - 1,
        pre_bounds,
        magnitudes,
        (lower, upper),
    )
    return LinearBounds(pre_bounds, value, coeffs, corner)
