"""Counterexample search: random sampling and projected gradient ascent on the unsafe margin.

The margin of a point is max over unsafe conjunctions of min over their half-spaces of
(b - a.y): it is >= 0 exactly when the output is unsafe. Gradients of the piecewise-linear
network are exact (ReLU masks of the current point), computed for a whole batch in numpy.
Candidates found here are only candidates: replay decides.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from verifiers.model.network import AffineLayer, PiecewiseLinearNetwork

Polytope = tuple[np.ndarray, np.ndarray]  # (A, b): unsafe when A y <= b


def unsafe_margin(outputs: np.ndarray, unsafe: Sequence[Polytope]) -> tuple[np.ndarray, np.ndarray]:
    """Margins (batch,) and, per point, the half-space row (as an output-space vector) that
    limits it: the direction to push."""
    best = np.full(outputs.shape[0], -np.inf)
    direction = np.zeros_like(outputs)
    for a, b in unsafe:
        slack = b[None, :] - outputs @ a.T  # (batch, rows)
        row = np.argmin(slack, axis=1)
        value = slack[np.arange(len(row)), row]
        better = value > best
        best = np.where(better, value, best)
        direction[better] = -a[row[better]]
    return best, direction


def _forward(network: PiecewiseLinearNetwork, x: np.ndarray):
    """The outputs f(x) and, for a chain, the ReLU layers' slopes at x (the gradient's masks:
    one forward pass serves both); None for a graph network, which differentiates itself."""
    if hasattr(network, "gradient"):
        return network.evaluate(x), None
    masks = []
    value = x
    for layer in network.layers:
        if not isinstance(layer, AffineLayer):
            masks.append(np.where(value >= 0, 1.0, layer.alpha))
        value = layer.apply(value)
    return value, masks


def _gradient(network: PiecewiseLinearNetwork, x: np.ndarray, out_dir: np.ndarray, masks):
    """d(out_dir . f(x)) / dx for each row of x, given _forward's masks at x."""
    if masks is None:  # a graph network differentiates itself
        return network.gradient(x, out_dir)
    grad, last_first = out_dir, reversed(masks)
    for layer in reversed(network.layers):
        grad = grad @ layer.weight if isinstance(layer, AffineLayer) else grad * next(last_first)
    return grad


def search(
    network: PiecewiseLinearNetwork,
    lower: np.ndarray,
    upper: np.ndarray,
    unsafe: Sequence[Polytope],
    rng: np.random.Generator,
    *,
    samples: int = 256,
    steps: int = 30,
    starts: np.ndarray | None = None,
    deadline: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Points of the box ordered by decreasing margin (best candidates first), and margins.
    At most `steps` evaluations; fewer when time.monotonic() passes `deadline`."""
    width = upper - lower
    x = lower + width * rng.random((samples, lower.size))
    if starts is not None:
        x = np.concatenate([np.clip(starts, lower, upper), x])
    best_x, best_m = x.copy(), np.full(len(x), -np.inf)
    step = width / 4.0
    for i in range(steps):
        outputs, masks = _forward(network, x)
        margin, direction = unsafe_margin(outputs, unsafe)
        better = margin > best_m
        best_x[better], best_m[better] = x[better], margin[better]
        if i == steps - 1 or (deadline is not None and time.monotonic() > deadline):
            break
        grad = _gradient(network, x, direction, masks)
        x = np.clip(x + step * np.sign(grad), lower, upper)
        step = step * 0.8
    order = np.argsort(-best_m)
    return best_x[order], best_m[order]
