"""Is an ONNX model modelled faithfully, or refused clearly? The check every attribute
variant test uses.

Faithful: the IR evaluates like onnxruntime at random points, and the graph engine's bounds
(interval and back-substituted) enclose onnxruntime's outputs, and the float64 evaluation,
at random points of random boxes. Refused: load_model raises a VerifierError naming the
node, and `proofwell supports` reports the model unsupported (neither ever crashes).
"""

from __future__ import annotations

import enum

import numpy as np
import onnx

from tests.onnx_builders import to_bytes
from verifiers.bounds.graph.backsub import graph_bounds
from verifiers.errors import UnsupportedError, VerifierError
from verifiers.model import load_model
from verifiers.model.support import support_report


class Outcome(enum.Enum):
    MODELLED = "modelled"
    REFUSED = "refused"


def check_model(proto: onnx.ModelProto, node: str, boxes: int = 3) -> tuple[Outcome, str]:
    data = to_bytes(proto)
    report = support_report(data)
    try:
        model = load_model(data)
    except VerifierError as error:
        assert node in str(error), f"the error does not name node '{node}': {error}"
        assert not report.supported and report.error is not None
        return Outcome.REFUSED, str(error)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, model.n_inputs)) * 3.0
    np.testing.assert_allclose(model.evaluate(x), model.run_onnxruntime(x), rtol=1e-5, atol=1e-5)
    try:
        net = model.graph_network
    except UnsupportedError as error:
        return Outcome.REFUSED, str(error)
    assert np.allclose(net.evaluate(x), model.evaluate(x), rtol=1e-12, atol=1e-12)
    for _ in range(boxes):
        _check_box(model, net, rng)
    return Outcome.MODELLED, ""


def _check_box(model, net, rng: np.random.Generator) -> None:
    centre = rng.normal(size=model.n_inputs) * 3.0
    width = rng.exponential(3.0, size=model.n_inputs)
    lo, hi = centre - width / 2, centre + width / 2
    n_out = net.sizes[net.bound_output]
    rows = np.concatenate([np.eye(n_out), -np.eye(n_out)])
    bounds = graph_bounds(net, lo[None], hi[None], rows)
    low, high = bounds.boxes[net.bound_output]
    lines = bounds.objective_lower[0]
    corners = np.where(rng.random((8, model.n_inputs)) < 0.5, lo, hi)
    points = np.concatenate([lo + (hi - lo) * rng.random((24, model.n_inputs)), corners])
    ours = net.bounded(points)
    assert np.all(np.isfinite(low)) and np.all(np.isfinite(high))
    samples = [(ours, 1e-9)]
    if net.softmax_axis_size is None:  # onnxruntime's outputs are the bounded tensor
        samples.append((model.run_onnxruntime(points).astype(np.float64), 1e-5))
    for ys, tol in samples:
        room = tol * (1.0 + np.abs(ys))
        assert np.all(low[0] - room <= ys) and np.all(ys <= high[0] + room), "interval"
        assert np.all(lines[:n_out] - room <= ys), "lower lines"
        assert np.all(ys <= -lines[n_out:] + room), "upper lines"
