"""What each node of a model gets: `proofwell supports MODEL.onnx`.

- exact: the engine represents the op exactly (linear ops, and piecewise-linear ones whose
  relaxations become exact by splitting: Relu, LeakyRelu, PRelu, Clip, Max, Min, MaxPool);
  branch and bound is complete on them.
- relaxed: sound linear bounds only (Sigmoid, Tanh): `holds` when the bounds prove it,
  else `unknown` with the proved fraction once the split budget is spent.
- conditional: a final Softmax, stripped when the property compares outputs pairwise.
- unsupported: with the reason (an unknown op type, or a variant the converter rejects).
The engine line says which path bounds the model: the Affine/ReLU chain (fast path) or the
graph engine.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

import onnx

from verifiers.errors import UnsupportedError, VerifierError
from verifiers.model.ir import OpKind
from verifiers.model.op_table import CONSTANT_OPS, CONVERTERS

RELAXED_OPS = frozenset({"Sigmoid", "Tanh"})
CONDITIONAL_OPS = frozenset({"Softmax"})


class Level(enum.StrEnum):
    EXACT = "exact"
    RELAXED = "relaxed"
    CONDITIONAL = "conditional"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class NodeSupport:
    name: str
    op_type: str
    level: Level
    note: str = ""


@dataclass(frozen=True)
class SupportReport:
    nodes: tuple[NodeSupport, ...]
    engine: str  # "chain", "graph" or "none"
    error: str | None = None  # why the model cannot be verified, if it cannot

    @property
    def supported(self) -> bool:
        return self.error is None


def support_report(source: str | Path | bytes) -> SupportReport:
    from verifiers.model import load_model

    try:
        model = load_model(source)
    except VerifierError as error:
        return SupportReport(_by_op_type(source), "none", str(error))
    nodes = tuple(_node_support(n.name, n.op_type, n.op.kind) for n in model.graph.nodes)
    try:
        model.network  # noqa: B018
        return SupportReport(nodes, "chain")
    except UnsupportedError:
        pass
    try:
        model.graph_network  # noqa: B018
    except UnsupportedError as error:
        return SupportReport(nodes, "none", str(error))
    return SupportReport(nodes, "graph")


def _node_support(name: str, op_type: str, kind: OpKind) -> NodeSupport:
    if op_type in CONDITIONAL_OPS:
        return NodeSupport(
            name, op_type, Level.CONDITIONAL, "last op only, for pairwise output comparisons"
        )
    if op_type in RELAXED_OPS:
        return NodeSupport(name, op_type, Level.RELAXED, "complete only up to the split budget")
    note = "linear" if kind is OpKind.LINEAR else "piecewise-linear"
    return NodeSupport(name, op_type, Level.EXACT, note)


def _by_op_type(source: str | Path | bytes) -> tuple[NodeSupport, ...]:
    """Per node, from the op type alone (the model did not load)."""
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        proto = onnx.ModelProto.FromString(data)
    except Exception:  # unreadable: the load error says why
        return ()
    rows = []
    for node in proto.graph.node:
        name = node.name or node.output[0]
        if node.op_type in CONSTANT_OPS:
            continue
        if node.op_type not in CONVERTERS:
            rows.append(NodeSupport(name, node.op_type, Level.UNSUPPORTED, "unsupported operator"))
        elif node.op_type in RELAXED_OPS | CONDITIONAL_OPS:
            rows.append(_node_support(name, node.op_type, OpKind.NONLINEAR))
        else:
            rows.append(NodeSupport(name, node.op_type, Level.EXACT, "if its variant is supported"))
    return tuple(rows)
