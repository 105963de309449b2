"""Graph IR -> PiecewiseLinearNetwork (Affine, Relu, ..., Affine).

Each activation starts a new *stage*; every linear node belongs to the stage of its inputs,
and a node mixing two stages (a residual connection across an activation) has no normal form
here. The linear region from a stage's source to the next activation collapses into one
AffineLayer: its weight is the bias-free region evaluated on the identity basis (columns),
its bias the region evaluated on zero, both in float64.

Rounding bound. Every linear op o of rounding depth d computes, in float64,
``(o + D)(y)`` with ``|D| <= gamma_d |o|`` entrywise (a dot product of length n: d = n; one
multiplication, division or addition: d = 1; data movement: d = 0). By induction over the
region, a tensor whose ancestors have total depth K is within ``gamma_K |L|(|x|)`` of exact
real arithmetic on the float32 weights, where |L| is the region with absolute-valued
coefficients (Higham, Accuracy and Stability, Lemma 3.3: (1+gamma_a)(1+gamma_b) <=
1+gamma_{a+b}). So ``|W_hat - W| <= gamma_K |L|_lin`` (columns of the basis) and
``|b_hat - b| <= gamma_K |L|(0)``. We store twice that: the factor 2 covers the rounding of
computing |L| itself (also within gamma_K) with room to spare. Underflow is ignored: products
of float32 values stay far above float64's smallest normal number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from verifiers.errors import UnsupportedError
from verifiers.model.evaluate import run_nodes
from verifiers.model.ir import Graph, LinearOp, Node, OpKind
from verifiers.model.network import AffineLayer, Layer, PiecewiseLinearNetwork, ReluLayer

UNIT_ROUNDOFF = 2.0**-53
BASIS_CHUNK = 256  # identity columns evaluated at once, to bound memory on wide inputs


def normalize(graph: Graph) -> PiecewiseLinearNetwork:
    stage = _stages(graph)
    producer = graph.producer()
    activations = _activation_chain(graph, stage, producer)
    layers: list[Layer] = []
    source = graph.input_name
    for node in activations:
        layers.append(_affine(graph, source, node.inputs[0]))
        layers.append(_relu(graph, node))
        source = node.output
    layers.append(_affine(graph, source, graph.output_name))
    return PiecewiseLinearNetwork(layers=tuple(layers))


def _stages(graph: Graph) -> dict[str, str]:
    """Map every tensor to its stage source: the input or an activation's output."""
    stage = {graph.input_name: graph.input_name}
    for node in graph.nodes:
        if node.op.kind is OpKind.NONLINEAR:
            raise UnsupportedError(
                f"{node.op_type} node '{node.name}' has no piecewise-linear normal form",
                node=node.name,
            )
        sources = {stage[name] for name in node.inputs}
        if len(sources) > 1:
            raise UnsupportedError(
                f"{node.op_type} node '{node.name}' joins branches from different activation "
                "layers; this topology has no piecewise-linear normal form here",
                node=node.name,
            )
        stage[node.output] = node.output if node.op.kind is OpKind.ACTIVATION else sources.pop()
    return stage


def _activation_chain(graph: Graph, stage: dict[str, str], producer: dict[str, Node]) -> list[Node]:
    """The activation nodes from the input to the output, in order."""
    chain: list[Node] = []
    source = stage[graph.output_name]
    while source != graph.input_name:
        node = producer[source]
        chain.append(node)
        source = stage[node.inputs[0]]
    return chain[::-1]


def _relu(graph: Graph, node: Node) -> ReluLayer:
    alpha = float(getattr(node.op, "alpha", 0.0))
    if not 0.0 <= alpha < 1.0:
        raise UnsupportedError(
            f"LeakyRelu node '{node.name}' has alpha={alpha}; the piecewise-linear normal form "
            "needs 0 <= alpha < 1",
            node=node.name,
        )
    size = int(np.prod(graph.shapes[node.inputs[0]], dtype=np.int64))
    return ReluLayer(size=size, alpha=alpha)


def _region(graph: Graph, source: str, target: str) -> list[Node]:
    """The nodes computing ``target`` from ``source`` (all linear, by the stage rule)."""
    needed, region = {target}, []
    for node in reversed(graph.nodes):
        if node.output in needed and node.output != source:
            region.append(node)
            needed.update(node.inputs)
    return region[::-1]


def _affine(graph: Graph, source: str, target: str) -> AffineLayer:
    region = _region(graph, source, target)
    n_in = int(np.prod(graph.shapes[source], dtype=np.int64))

    def run(transform: Callable[[LinearOp], LinearOp], x: np.ndarray) -> np.ndarray:
        start = {source: x.reshape(x.shape[0], *graph.shapes[source])}
        values = run_nodes(region, start, transform)
        return values[target].reshape(x.shape[0], -1)

    weight = _columns(lambda x: run(lambda op: op.without_bias(), x), n_in)
    magnitude = _columns(lambda x: run(lambda op: op.without_bias().magnitude(), x), n_in)
    zero = np.zeros((1, n_in))
    bias = run(lambda op: op, zero)[0]
    bias_magnitude = run(lambda op: op.magnitude(), zero)[0]
    factor = 2.0 * _gamma(sum(node.op.rounding_depth() for node in region))  # type: ignore[attr-defined]
    return AffineLayer(
        weight=weight,
        bias=bias,
        weight_err=factor * magnitude,
        bias_err=factor * bias_magnitude,
    )


def _columns(apply: Callable[[np.ndarray], np.ndarray], n_in: int) -> np.ndarray:
    """The matrix whose column i is ``apply(e_i)``."""
    blocks: Sequence[np.ndarray] = [
        apply(np.eye(min(BASIS_CHUNK, n_in - start), n_in, k=start))
        for start in range(0, n_in, BASIS_CHUNK)
    ]
    return np.concatenate(blocks, axis=0).T.copy()


def _gamma(k: int) -> float:
    if k * UNIT_ROUNDOFF >= 0.5:
        raise UnsupportedError(f"a linear region of rounding depth {k} is too deep to bound")
    return k * UNIT_ROUNDOFF / (1.0 - k * UNIT_ROUNDOFF)
