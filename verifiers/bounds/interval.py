"""Interval bound propagation through the piecewise-linear normal form, on many boxes."""

from __future__ import annotations

import numpy as np

from verifiers.bounds.rounding import UNIT_ROUNDOFF, gamma, widen_down, widen_up
from verifiers.model.network import AffineLayer, PiecewiseLinearNetwork, ReluLayer


def affine_interval(
    layer: AffineLayer, lower: np.ndarray, upper: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sound bounds of an affine layer's exact output over boxes (batch, n_in)."""
    if layer.is_identity:
        return lower, upper
    pos, neg = np.maximum(layer.weight, 0.0), np.minimum(layer.weight, 0.0)
    low = lower @ pos.T + upper @ neg.T + layer.bias
    high = upper @ pos.T + lower @ neg.T + layer.bias
    magnitude = np.maximum(np.abs(lower), np.abs(upper))
    slack = gamma(layer.n_in) * (magnitude @ np.abs(layer.weight).T + np.abs(layer.bias))
    slack = slack + magnitude @ layer.weight_err.T + layer.bias_err
    return widen_down(low, slack), widen_up(high, slack)


def relu_interval(
    layer: ReluLayer, lower: np.ndarray, upper: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    # Monotone; a max is exact, a product by a LeakyRelu slope rounds by at most one ulp.
    low, high = layer.apply(lower), layer.apply(upper)
    if layer.alpha:
        low = widen_down(low, 2.0 * UNIT_ROUNDOFF * np.abs(low))
        high = widen_up(high, 2.0 * UNIT_ROUNDOFF * np.abs(high))
    return low, high


def interval_bounds(
    network: PiecewiseLinearNetwork, lower: np.ndarray, upper: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Bounds of every affine layer's output (pre-activations, then the network output)."""
    bounds = []
    for layer in network.layers:
        if isinstance(layer, AffineLayer):
            lower, upper = affine_interval(layer, lower, upper)
            bounds.append((lower, upper))
        else:
            lower, upper = relu_interval(layer, lower, upper)
    return bounds
