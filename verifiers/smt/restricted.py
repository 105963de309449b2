"""Exact z3 query for one small region, with its stable ReLUs eliminated.

On a small region most ReLUs are stable: the network there is an affine map of the inputs
and of the few unstable ReLU outputs. This module composes that map in float64 while
tracking a rigorous bound on everything the composition rounded (the same argument as
bounds/rounding.py), and hands z3 only the inputs, one variable per unstable ReLU and the
outputs: a query of a few dozen variables instead of one per neuron.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import z3

from verifiers.bounds.rounding import UNDERFLOW, gamma
from verifiers.model.network import AffineLayer, PiecewiseLinearNetwork, ReluLayer
from verifiers.smt.encode_property import box_constraints, unsafe_constraint
from verifiers.smt.query import BoxAnswer
from verifiers.smt.solver import SatOutcome, check, make_solver, model_value, rational
from verifiers.spec.property import Conjunction


@dataclass
class _Affine:
    """values = coeffs @ v + const, within +-err, for v = [inputs; unstable ReLU outputs]."""

    coeffs: np.ndarray  # (n, n_vars)
    const: np.ndarray  # (n,)
    err: np.ndarray  # (n,)


@dataclass(frozen=True)
class _Unstable:
    coeffs: np.ndarray
    const: float
    err: float
    lower: float
    upper: float
    alpha: float


def _magnitude(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(lower), np.abs(upper))


def _through_affine(
    rep: _Affine, layer: AffineLayer, var_mag: np.ndarray, in_mag: np.ndarray
) -> _Affine:
    if layer.is_identity:
        return rep
    coeffs = layer.weight @ rep.coeffs
    const = layer.weight @ rep.const + layer.bias
    abs_w = np.abs(layer.weight)
    rounding = gamma(layer.n_in + 1) * (
        abs_w @ (np.abs(rep.coeffs) @ var_mag + np.abs(rep.const)) + np.abs(layer.bias)
    )
    err = abs_w @ rep.err + layer.weight_err @ in_mag + layer.bias_err + rounding
    return _Affine(coeffs, const, err * (1.0 + 1e-9) + UNDERFLOW)


def _through_relu(
    rep: _Affine,
    layer: ReluLayer,
    lower: np.ndarray,
    upper: np.ndarray,
    var_mag: list[float],
    unstable: list[_Unstable],
    keep: np.ndarray | None = None,
) -> _Affine:
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
            _Unstable(
                rep.coeffs[i].copy(),
                float(rep.const[i]),
                float(rep.err[i]),
                float(lower[i]),
                float(upper[i]),
                layer.alpha,
            )
        )
        coeffs[i] = 0.0
        coeffs[i, rep.coeffs.shape[1] + k] = 1.0
        const[i] = 0.0
        err[i] = 0.0
        var_mag.append(float(max(abs(upper[i]), abs(layer.alpha * lower[i]))) * (1 + 1e-12))
    return _Affine(coeffs, const, err)


def restrict(
    network: PiecewiseLinearNetwork,
    lower: np.ndarray,
    upper: np.ndarray,
    layer_bounds: Sequence[tuple[np.ndarray, np.ndarray]],
    keep: Sequence[np.ndarray] | None = None,
) -> tuple[list[_Unstable], _Affine]:
    """The unstable ReLUs (in order) and the output, each affine in [inputs; ReLU outputs].

    `keep`: per ReLU layer, ReLUs kept as variables even when their bounds say stable (the
    split ReLUs of a region: their bounds then become constraints that z3 must respect)."""
    n_in = lower.size
    rep = _Affine(np.eye(n_in), np.zeros(n_in), np.zeros(n_in))
    var_mag = list(_magnitude(lower, upper) * (1 + 1e-12))
    in_mag = np.array(var_mag)
    unstable: list[_Unstable] = []
    affine_index = 0
    for layer in network.layers:
        if isinstance(layer, AffineLayer):
            # Columns added by earlier ReLUs: widen this layer's representation to match.
            pad = len(var_mag) - rep.coeffs.shape[1]
            if pad:
                rep = _Affine(np.pad(rep.coeffs, ((0, 0), (0, pad))), rep.const, rep.err)
            rep = _through_affine(rep, layer, np.array(var_mag), in_mag)
            affine_index += 1
        else:
            low, high = layer_bounds[affine_index - 1]
            kept = None if keep is None else keep[affine_index - 1]
            rep = _through_relu(rep, layer, low, high, var_mag, unstable, kept)
            post_low, post_high = layer.apply(low), layer.apply(high)
            in_mag = _magnitude(post_low, post_high) * (1 + 1e-12)
    return unstable, rep


def _affine_term(coeffs: np.ndarray, variables: Sequence[z3.ArithRef], const: float) -> z3.ArithRef:
    terms = [rational(c) * v for c, v in zip(coeffs, variables, strict=False) if c != 0.0]
    terms.append(rational(const))
    return z3.Sum(terms)


def decide_region(
    network: PiecewiseLinearNetwork,
    lower_exact: Sequence[Fraction],
    upper_exact: Sequence[Fraction],
    layer_bounds: Sequence[tuple[np.ndarray, np.ndarray]],
    unsafe: Sequence[Conjunction],
    timeout_s: float,
    seed: int = 0,
    margin: float = 0.0,
    keep: Sequence[np.ndarray] | None = None,
) -> BoxAnswer:
    """unsat: no input of the region is unsafe. `layer_bounds` must be sound on the region;
    a region narrowed by ReLU phases must list those ReLUs in `keep` (see restrict)."""
    lower = np.array([float(v) for v in lower_exact])
    upper = np.array([float(v) for v in upper_exact])
    unstable, output = restrict(network, lower, upper, layer_bounds, keep)
    solver = make_solver(timeout_s, seed)
    inputs = [z3.Real(f"X_{i}") for i in range(lower.size)]
    solver.add(box_constraints(inputs, lower_exact, upper_exact))
    variables = list(inputs)
    for k, relu in enumerate(unstable):
        pre, post = z3.Real(f"p_{k}"), z3.Real(f"r_{k}")
        term = _affine_term(relu.coeffs[: len(variables)], variables, relu.const)
        slack = rational(relu.err)
        solver.add(pre >= term - slack, pre <= term + slack)
        solver.add(pre >= rational(relu.lower), pre <= rational(relu.upper))
        alpha = rational(relu.alpha)
        solver.add(z3.Or(z3.And(pre >= 0, post == pre), z3.And(pre <= 0, post == alpha * pre)))
        solver.add(post >= pre, post >= alpha * pre)
        variables.append(post)
    outputs = []
    for j in range(len(output.const)):
        y = z3.Real(f"Y_{j}")
        term = _affine_term(output.coeffs[j], variables, float(output.const[j]))
        slack = rational(float(output.err[j]))
        solver.add(y >= term - slack, y <= term + slack)
        outputs.append(y)
    solver.add(unsafe_constraint(unsafe, outputs, margin))
    outcome, reason = check(solver)
    if outcome is SatOutcome.SAT:
        model = solver.model()
        return BoxAnswer(outcome, [model_value(model, x) for x in inputs])
    return BoxAnswer(outcome, reason=reason)
