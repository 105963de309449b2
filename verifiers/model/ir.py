"""The graph IR: a single-input, single-output DAG of typed ops over numpy float64 arrays.

Batch convention: every variable tensor of ONNX shape ``S`` is held as an array of shape
``(batch, *S)``. The batch axis is *prepended* to the ONNX shape (which already has its own
batch dimension fixed to 1), so ops never have to guess which ONNX axis is the batch, and
ONNX axis ``a`` is numpy axis ``a + 1``. Constants are folded into the ops that use them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

Shape = tuple[int, ...]


class OpKind(enum.Enum):
    """How an op takes part in the piecewise-linear normal form."""

    LINEAR = "linear"  # affine in its variable inputs; collapses into an AffineLayer
    ACTIVATION = "activation"  # Relu / LeakyRelu: becomes a ReluLayer
    NONLINEAR = "nonlinear"  # evaluated, but has no piecewise-linear normal form here


class Op(Protocol):
    """One ONNX operator with its constant operands folded in."""

    kind: ClassVar[OpKind]

    def evaluate(self, *inputs: np.ndarray) -> np.ndarray:
        """Batched float64 evaluation; ``inputs`` are the node's variable inputs in order."""
        ...


class LinearOp(Op, Protocol):
    """An affine op, with what the normal form needs to collapse it and bound its rounding."""

    def without_bias(self) -> LinearOp:
        """The linear (homogeneous) part: the op with its additive constants set to zero."""
        ...

    def magnitude(self) -> LinearOp:
        """The op with every coefficient and additive constant replaced by its absolute
        value (|L|); applied to non-negative inputs it bounds |L(x)| from above."""
        ...

    def rounding_depth(self) -> int:
        """k such that float64 evaluation is within gamma_k * |L|(|x|) of exact arithmetic."""
        ...


@dataclass(frozen=True, eq=False)
class Node:
    name: str  # the ONNX node name (or a generated one naming its output)
    op_type: str
    op: Op
    inputs: tuple[str, ...]  # variable input tensors only, in ONNX order
    output: str


@dataclass(frozen=True, eq=False)
class Graph:
    input_name: str
    input_shape: Shape  # ONNX shape, batch dimension fixed to 1
    output_name: str
    output_shape: Shape
    nodes: tuple[Node, ...]  # topological order, only nodes the output depends on
    shapes: Mapping[str, Shape]  # ONNX shape of every variable tensor

    def producer(self) -> dict[str, Node]:
        return {node.output: node for node in self.nodes}

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape, dtype=np.int64))

    @property
    def n_outputs(self) -> int:
        return int(np.prod(self.output_shape, dtype=np.int64))
