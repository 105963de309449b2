"""A graph IR as a DAG of bound ops over flat tensors: what the graph engine bounds,
evaluates and differentiates.

`GraphNetwork.of(graph)` maps every IR node through the op registry (ops/__init__.py); all
nodes without a rule are reported in one error. A final Softmax is kept for evaluation (so
counterexamples show the model's real outputs) but the bounds stop at its input, the
logits (`bound_output`); `strip_softmax_ok` says when a property allows that.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from verifiers.bounds.graph.ops import NO_BOUNDS, RULES, BoundOp
from verifiers.errors import UnsupportedError
from verifiers.model import ops_graph
from verifiers.model.ir import Graph
from verifiers.spec.property import Case


@dataclass(frozen=True, eq=False)
class BoundNode:
    name: str
    op_type: str
    op: BoundOp
    inputs: tuple[str, ...]
    output: str


@dataclass(frozen=True, eq=False)
class GraphNetwork:
    input_name: str
    output_name: str  # what evaluate returns
    bound_output: str  # what the bounds bound (the logits under a stripped Softmax)
    nodes: tuple[BoundNode, ...]  # topological; bounded ones only (no final Softmax)
    sizes: dict[str, int]
    softmax_axis_size: int | None = None  # a stripped final Softmax over the last axis

    @classmethod
    def of(cls, graph: Graph) -> GraphNetwork:
        nodes, problems, first = [], [], None
        sizes = {name: int(np.prod(s, dtype=np.int64)) for name, s in graph.shapes.items()}
        sizes[graph.input_name] = graph.n_inputs
        bound_output, softmax = graph.output_name, None
        for node in graph.nodes:
            if isinstance(node.op, ops_graph.Softmax) and node.output == graph.output_name:
                if node.op.axis != len(graph.shapes[node.output]) - 1:
                    problems.append(f"'{node.name}' (Softmax): only over the last axis")
                    first = first or node.name
                bound_output, softmax = node.inputs[0], graph.shapes[node.output][-1]
                continue
            rule = RULES.get(type(node.op))
            if rule is None:
                why = NO_BOUNDS.get(type(node.op), "no bound rule")
                problems.append(f"'{node.name}' ({node.op_type}): {why}")
                first = first or node.name
                continue
            in_shapes = [graph.shapes[name] for name in node.inputs]
            bound_op = rule(node, in_shapes, graph.shapes[node.output])
            nodes.append(BoundNode(node.name, node.op_type, bound_op, node.inputs, node.output))
        if problems:
            raise UnsupportedError(
                "the graph engine cannot bound: " + "; ".join(problems), node=first
            )
        return cls(graph.input_name, graph.output_name, bound_output, tuple(nodes), sizes, softmax)

    @property
    def n_inputs(self) -> int:
        return self.sizes[self.input_name]

    @property
    def n_outputs(self) -> int:
        return self.sizes[self.output_name]

    @cached_property
    def producer_index(self) -> dict[str, int]:
        return {node.output: i for i, node in enumerate(self.nodes)}

    def values(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every tensor's value at x (batch, n_inputs), flat (batch, n)."""
        values = {self.input_name: np.asarray(x, dtype=np.float64)}
        for node in self.nodes:
            values[node.output] = node.op.evaluate(*(values[name] for name in node.inputs))
        return values

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        logits = self.values(x)[self.bound_output]
        if self.softmax_axis_size is None:
            return logits
        shaped = logits.reshape(len(logits), -1, self.softmax_axis_size)
        shifted = np.exp(shaped - shaped.max(axis=-1, keepdims=True))
        return (shifted / shifted.sum(axis=-1, keepdims=True)).reshape(len(logits), -1)

    def bounded(self, x: np.ndarray) -> np.ndarray:
        """The bounded tensor (the logits under a stripped Softmax) at x."""
        return self.values(x)[self.bound_output]

    def gradient(self, x: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """d(direction . bounded(x)) / dx per row (reverse mode through the DAG)."""
        values = self.values(x)
        grads = {self.bound_output: direction}
        for node in reversed(self.nodes):
            grad = grads.pop(node.output, None)
            if grad is None:
                continue
            parts = node.op.vjp([values[name] for name in node.inputs], grad)
            for name, part in zip(node.inputs, parts, strict=True):
                grads[name] = grads[name] + part if name in grads else part
        return grads.get(self.input_name, np.zeros_like(x))

    def strip_softmax_ok(self, case: Case, margin: float = 0.0) -> bool:
        """Without a final Softmax, or every unsafe half-space compares two outputs
        (c*y_i - c*y_j against 0) and there is no margin: Softmax preserves the order of its
        inputs (over one axis), so such a property holds on the logits exactly when on the
        outputs. A margin widens the rows to c*y_i - c*y_j <= margin, which the logits'
        order does not decide (logits 0.6 apart are outputs 0.29 apart)."""
        if self.softmax_axis_size is None:
            return True
        if margin != 0:
            return False
        for conjunction in case.unsafe:
            for h in conjunction.halfspaces:
                nonzero = [(i, c) for i, c in enumerate(h.coeffs) if c != 0]
                if h.rhs != 0 or len(nonzero) != 2 or nonzero[0][1] != -nonzero[1][1]:
                    return False
                if (
                    nonzero[0][0] // self.softmax_axis_size
                    != nonzero[1][0] // self.softmax_axis_size
                ):
                    return False
        return True
