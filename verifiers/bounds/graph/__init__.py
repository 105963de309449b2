"""Bounds over a DAG of ops (residual joins, branches, pooling, S-shaped activations).

network.py builds a GraphNetwork from the graph IR through the op registry (ops/), and
backsub.py computes interval and CROWN-style linear bounds over it. The Affine/ReLU chain
engine (bounds/linear.py) stays the fast path for chains; verify.py picks one.
"""

from verifiers.bounds.graph.backsub import GraphBounds, graph_bounds
from verifiers.bounds.graph.network import GraphNetwork

__all__ = ["GraphBounds", "GraphNetwork", "graph_bounds"]
