"""The piecewise-linear normal form every engine works on.

An ONNX (sub)network is normalised into alternating affine and ReLU layers over flat
vectors: ``Affine, Relu, Affine, ..., Affine``. Affine layers are what the linear ONNX ops
between two activations compose to.

Soundness contract of an affine layer: for every input x, the exact real-valued map defined
by the float32 weights differs from ``weight @ x + bias`` by at most
``weight_err @ |x| + bias_err`` in each output (both are 0 when no rounding happened while
composing the layer). Every bound engine and the z3 encoding honour this error term.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True, eq=False)
class AffineLayer:
    weight: np.ndarray  # (n_out, n_in) float64
    bias: np.ndarray  # (n_out,) float64
    weight_err: np.ndarray  # (n_out, n_in) float64, >= 0
    bias_err: np.ndarray  # (n_out,) float64, >= 0

    @cached_property
    def is_identity(self) -> bool:
        """An exact identity map (e.g. the trailing layer after a final ReLU): every engine
        passes values through it unchanged, with no rounding to account for."""
        return (
            self.weight.shape[0] == self.weight.shape[1]
            and np.array_equal(self.weight, np.eye(self.weight.shape[0]))
            and not np.any(self.bias)
            and self.exact
        )

    @property
    def exact(self) -> bool:
        return not (np.any(self.weight_err) or np.any(self.bias_err))

    @property
    def n_in(self) -> int:
        return self.weight.shape[1]

    @property
    def n_out(self) -> int:
        return self.weight.shape[0]

    def apply(self, x: np.ndarray) -> np.ndarray:
        """x: (batch, n_in) -> (batch, n_out), the float64 approximation."""
        return x @ self.weight.T + self.bias


@dataclass(frozen=True)
class ReluLayer:
    """y = x for x >= 0, alpha * x otherwise (alpha = 0: ReLU; 0 < alpha < 1: LeakyRelu)."""

    size: int
    alpha: float = 0.0

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.where(x >= 0, x, self.alpha * x)


Layer = AffineLayer | ReluLayer


@dataclass(frozen=True, eq=False)
class PiecewiseLinearNetwork:
    layers: tuple[Layer, ...]  # Affine, Relu, Affine, ..., Affine

    @property
    def n_inputs(self) -> int:
        return self.affine_layers[0].n_in

    @property
    def n_outputs(self) -> int:
        return self.affine_layers[-1].n_out

    @property
    def affine_layers(self) -> list[AffineLayer]:
        return [layer for layer in self.layers if isinstance(layer, AffineLayer)]

    @property
    def relu_layers(self) -> list[ReluLayer]:
        return [layer for layer in self.layers if isinstance(layer, ReluLayer)]

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """x: (batch, n_inputs) float64 -> (batch, n_outputs)."""
        for layer in self.layers:
            x = layer.apply(x)
        return x

    def pre_activations(self, x: np.ndarray) -> list[np.ndarray]:
        """Each affine layer's output at x (batch, n): the inputs of the ReLU layers and the
        final output."""
        values = []
        for layer in self.layers:
            x = layer.apply(x)
            if isinstance(layer, AffineLayer):
                values.append(x)
        return values
