"""Exact z3 encoding of a piecewise-linear network.

Each affine layer is encoded with the exact rationals of its float64 coefficients; where the
layer's composition rounded (non-zero error terms, see model/network.py) a bounded slack
variable per neuron absorbs the difference, so an `unsat` answer is a proof about the exact
network. ReLUs proved stable by bounds are encoded as linear; the others as a case split
tightened with their triangle relaxation, which helps z3's simplex prune.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import z3

from verifiers.model.network import AffineLayer, PiecewiseLinearNetwork, ReluLayer
from verifiers.smt.solver import rational

Bounds = Sequence[tuple[np.ndarray, np.ndarray]]


def encode_network(
    network: PiecewiseLinearNetwork,
    inputs: Sequence[z3.ArithRef],
    solver: z3.Solver,
    prefix: str = "n",
    bounds: Bounds | None = None,
    input_box: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[z3.ArithRef]:
    """Add the network's constraints to `solver`; return its output terms.

    `bounds`, if given, holds sound (lower, upper) bounds of each affine layer's output (the
    pre-activations and the final output) over the input domain; they fix stable ReLUs.
    With them and `input_box`, the rounding slack of inexact layers is a constant.
    """
    values: list[z3.ArithRef] = list(inputs)
    affine_index = 0
    for depth, layer in enumerate(network.layers):
        name = f"{prefix}_{depth}"
        if isinstance(layer, AffineLayer):
            magnitude = _input_magnitude(network, affine_index, bounds, input_box)
            values = _encode_affine(layer, values, solver, name, magnitude)
            affine_index += 1
        else:
            layer_bounds = bounds[affine_index - 1] if bounds is not None else None
            values = _encode_relu(layer, values, solver, name, layer_bounds)
    return values


def _linear_term(row: np.ndarray, values: Sequence[z3.ArithRef], bias: float) -> z3.ArithRef:
    terms = [rational(w) * v for w, v in zip(row, values, strict=True) if w != 0.0]
    if bias != 0.0 or not terms:
        terms.append(rational(bias))
    return z3.Sum(terms) if len(terms) > 1 else terms[0]


def _input_magnitude(
    network: PiecewiseLinearNetwork,
    affine_index: int,
    bounds: Bounds | None,
    input_box: tuple[np.ndarray, np.ndarray] | None,
) -> np.ndarray | None:
    """A bound on |x| for the inputs of an affine layer, when the bounds give one."""
    if affine_index == 0:
        return None if input_box is None else np.maximum(np.abs(input_box[0]), np.abs(input_box[1]))
    if bounds is None:
        return None
    relu = network.relu_layers[affine_index - 1]
    low, high = bounds[affine_index - 1]
    return np.maximum(np.abs(relu.apply(low)), np.abs(relu.apply(high)))


def _encode_affine(
    layer: AffineLayer,
    values: Sequence[z3.ArithRef],
    solver: z3.Solver,
    name: str,
    magnitude: np.ndarray | None,
) -> list[z3.ArithRef]:
    """out_j = W_j . x + b_j, within the layer's rounding error when it has one:
    |exact - computed| <= weight_err . |x| + bias_err (model/network.py)."""
    slack_terms = None
    if not layer.exact:
        constants = None
        if magnitude is not None:
            # Rounded up past the float64 evaluation error of the product itself.
            with np.errstate(over="ignore", invalid="ignore"):
                constants = (layer.weight_err @ magnitude + layer.bias_err) * (1 + 1e-9) + 1e-300
        if constants is not None and np.all(np.isfinite(constants)):
            slack_terms = [rational(c) for c in constants]
        else:  # no finite magnitude: the slack stays linear in |x|
            slack_terms = _relative_slack(layer, values, solver, name)
    outputs = []
    for j in range(layer.n_out):
        out = z3.Real(f"{name}_{j}")
        term = _linear_term(layer.weight[j], values, float(layer.bias[j]))
        if slack_terms is None:
            solver.add(out == term)
        else:
            solver.add(out <= term + slack_terms[j], out >= term - slack_terms[j])
        outputs.append(out)
    return outputs


def _relative_slack(layer: AffineLayer, values, solver: z3.Solver, name: str) -> list:
    absolute = [z3.Real(f"{name}_abs{i}") for i in range(layer.n_in)]
    for a, v in zip(absolute, values, strict=True):
        solver.add(a >= 0, z3.Or(a == v, a == -v))
    return [
        _linear_term(layer.weight_err[j], absolute, float(layer.bias_err[j]))
        for j in range(layer.n_out)
    ]


def _encode_relu(
    layer: ReluLayer,
    values: Sequence[z3.ArithRef],
    solver: z3.Solver,
    name: str,
    bounds: tuple[np.ndarray, np.ndarray] | None,
) -> list[z3.ArithRef]:
    alpha = rational(layer.alpha)
    outputs = []
    for i, x in enumerate(values):
        lo, hi = (float(bounds[0][i]), float(bounds[1][i])) if bounds is not None else (None, None)
        if lo is not None and lo >= 0.0:
            outputs.append(x)
            continue
        if hi is not None and hi <= 0.0:
            outputs.append(alpha * x if layer.alpha else z3.RealVal(0))
            continue
        y = z3.Real(f"{name}_{i}")
        solver.add(z3.Or(z3.And(x >= 0, y == x), z3.And(x <= 0, y == alpha * x)))
        solver.add(y >= x, y >= alpha * x)
        if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
            # Triangle upper face through (lo, alpha*lo) and (hi, hi): implied, helps simplex.
            lo_q, hi_q = rational(lo), rational(hi)
            solver.add(
                (hi_q - lo_q) * y
                <= (hi_q - alpha * lo_q) * (x - lo_q) + alpha * lo_q * (hi_q - lo_q)
            )
        outputs.append(y)
    return outputs
