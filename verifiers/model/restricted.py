"""A network restricted to a small box: affine in its inputs and its unstable ReLU outputs.

On a small region most ReLUs are stable, and the network there is an affine map of the inputs
and of the few unstable ReLU outputs. This module composes that map in float64 while tracking
a rigorous bound on everything the composition rounded (the same argument as
bounds/rounding.py). The exact back ends (smt/restricted.py with z3, search/phase_lp.py with
LPs) decide a region over these few variables instead of one per neuron.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from verifiers.bounds.rounding import UNDERFLOW, gamma
from verifiers.model.network import AffineLayer, PiecewiseLinearNetwork, ReluLayer


@dataclass
class Affine:
    """values = coeffs @ v + const, within +-err, for v = [inputs; unstable ReLU outputs]."""

    coeffs: np.ndarray  # (n, n_vars)
    const: np.ndarray  # (n,)
    err: np.ndarray  # (n,)


@dataclass(frozen=True)
class UnstableRelu:
    coeffs: np.ndarray
    const: float
    err: float
    lower: float
    upper: float
    alpha: float
    # Where it sits in the network (ReLU layer, neuron): for certificates.
    layer: int = -1
    index: int = -1


def _magnitude(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(lower), np.abs(upper))


def _through_affine(
    rep: Affine, layer: AffineLayer, var_mag: np.ndarray, in_mag: np.ndarray
) -> Affine:
    if layer.is_identity:
        return rep
    coeffs = layer.weight @ rep.coeffs
    const = layer.weight @ rep.const + layer.bias
    abs_w = np.abs(layer.weight)
    rounding = gamma(layer.n_in + 1) * (
        abs_w @ (np.abs(rep.coeffs) @ var_mag + np.abs(rep.const)) + np.abs(layer.bias)
    )
    err = abs_w @ rep.err + layer.weight_err @ in_mag + layer.bias_err + rounding
    return Affine(coeffs, const, err * (1.0 + 1e-9) + UNDERFLOW)


def _through_relu(
    rep: Affine,
    layer: ReluLayer,
    lower: np.ndarray,
    upper: np.ndarray,
    var_mag: list[float],
    unstable: list[UnstableRelu],
    keep: np.ndarray | None = None,
    layer_index: int = -1,
) -> Affine:
    active, inactive = lower >= 0.0, upper <= 0.0
    scale = np.where(active, 1.0, layer.alpha)
    coeffs = rep.coeffs * scale[:, None]
    const = rep.const * scale
    err = rep.err * scale
    if layer.alpha:
        err = err + 2.0 * gamma(1) * (np.abs(coeffs) @ np.array(var_mag) + np.abs(const))
    variable = ~(active | inactive) if keep is None else ~(active | inactive) | keep
    rows = np.flatnonzero(variable)
    coeffs = np.concatenate([coeffs, np.zeros((len(coeffs), len(rows)))], axis=1)
    for k, i in enumerate(rows):
        unstable.append(
            UnstableRelu(
                rep.coeffs[i].copy(),
                float(rep.const[i]),
                float(rep.err[i]),
                float(lower[i]),
                float(upper[i]),
                layer.alpha,
                layer_index,
                int(i),
            )
        )
        coeffs[i] = 0.0
        coeffs[i, rep.coeffs.shape[1] + k] = 1.0
        const[i] = 0.0
        err[i] = 0.0
        var_mag.append(float(max(abs(upper[i]), abs(layer.alpha * lower[i]))) * (1 + 1e-12))
    return Affine(coeffs, const, err)


def restrict(
    network: PiecewiseLinearNetwork,
    lower: np.ndarray,
    upper: np.ndarray,
    layer_bounds: Sequence[tuple[np.ndarray, np.ndarray]],
    keep: Sequence[np.ndarray] | None = None,
) -> tuple[list[UnstableRelu], Affine]:
    """The unstable ReLUs (in order) and the output, each affine in [inputs; ReLU outputs].

    `keep`: per ReLU layer, ReLUs kept as variables even when their bounds say stable (the
    split ReLUs of a region: their bounds then become constraints that z3 must respect)."""
    n_in = lower.size
    rep = Affine(np.eye(n_in), np.zeros(n_in), np.zeros(n_in))
    var_mag = list(_magnitude(lower, upper) * (1 + 1e-12))
    in_mag = np.array(var_mag)
    unstable: list[UnstableRelu] = []
    affine_index = 0
    for layer in network.layers:
        if isinstance(layer, AffineLayer):
            # Columns added by earlier ReLUs: widen this layer's representation to match.
            pad = len(var_mag) - rep.coeffs.shape[1]
            if pad:
                rep = Affine(np.pad(rep.coeffs, ((0, 0), (0, pad))), rep.const, rep.err)
            rep = _through_affine(rep, layer, np.array(var_mag), in_mag)
            affine_index += 1
        else:
            low, high = layer_bounds[affine_index - 1]
            kept = None if keep is None else keep[affine_index - 1]
            rep = _through_relu(rep, layer, low, high, var_mag, unstable, kept, affine_index - 1)
            post_low, post_high = layer.apply(low), layer.apply(high)
            in_mag = _magnitude(post_low, post_high) * (1 + 1e-12)
    return unstable, rep
