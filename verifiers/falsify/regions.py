"""Counterexample search by linear programming inside one activation region.

A point fixes which ReLUs are active; on the set of inputs sharing that pattern (a polytope)
the network is affine, so the input that goes deepest into an unsafe conjunction there is an
LP. Gradient search often stalls a hair short of a small unsafe set (the margin's limiting
half-space keeps changing); the LP lands inside it when it meets the point's region.
Results are candidates in float64 only: replay decides.
"""

from __future__ import annotations

import numpy as np

from verifiers.bounds.lp import solve
from verifiers.model.network import AffineLayer, PiecewiseLinearNetwork


def activation_pattern(network: PiecewiseLinearNetwork, point: np.ndarray) -> list[np.ndarray]:
    """Which ReLUs are active at `point`, per ReLU layer."""
    pattern = []
    value = point.astype(np.float64)
    for layer in network.layers:
        if isinstance(layer, AffineLayer):
            value = layer.weight @ value + layer.bias
        else:
            pattern.append(value >= 0.0)
            value = layer.apply(value)
    return pattern


def deepest_in_region(
    network: PiecewiseLinearNetwork,
    pattern: list[np.ndarray],
    lower: np.ndarray,
    upper: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
) -> np.ndarray | None:
    """The input of the box with this activation pattern maximising min_i (b_i - a_i . y);
    None when the LP fails (e.g. no input of the box has the pattern)."""
    n = lower.size
    gain, offset = np.eye(n), np.zeros(n)  # the current layer's values as gain @ x + offset
    pattern_rows, pattern_rhs = [], []
    relus = iter(pattern)
    for layer in network.layers:
        if isinstance(layer, AffineLayer):
            gain, offset = layer.weight @ gain, layer.weight @ offset + layer.bias
            continue
        active = next(relus)
        # Stay in the pattern: active ones keep z >= 0 (-z <= 0), inactive ones z <= 0.
        sign = np.where(active, -1.0, 1.0)
        pattern_rows.append(sign[:, None] * gain)
        pattern_rhs.append(-sign * offset)
        slope = np.where(active, 1.0, layer.alpha)
        gain, offset = slope[:, None] * gain, slope * offset
    # Variables [x (n), t]: maximise t subject to a (gain x + offset) + t <= b.
    rows = [np.concatenate([r, np.zeros((len(r), 1))], axis=1) for r in pattern_rows]
    rows.append(np.concatenate([a @ gain, np.ones((len(a), 1))], axis=1))
    rhs = [*pattern_rhs, b - a @ offset]
    cost = np.zeros(n + 1)
    cost[-1] = -1.0
    answer = solve(
        cost,
        np.concatenate(rows),
        np.concatenate(rhs),
        np.append(lower, -np.inf),
        np.append(upper, np.inf),
    )
    if answer is None:
        return None
    return np.clip(answer.x[:n], lower, upper)
