"""Timeouts hold on deep networks: the deadline is checked inside long bound computations.

A 784-input network with six hidden layers of 256 ReLUs: one search step bounds up to 64
regions and can take seconds. The verdict must come within a second of the timeout, start-up
included for a `proofwell verify` process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from tests.onnx_builders import dense_relu_model, make_model, to_bytes
from verifiers.bounds.alpha import SlopeSearch
from verifiers.bounds.linear import linear_bounds
from verifiers.components import OnnxComponent
from verifiers.deadline import OutOfTime
from verifiers.errors import UnsupportedError
from verifiers.model import load_model
from verifiers.options import Options
from verifiers.spec import load_property
from verifiers.verify import verify

SIZES = [784, 256, 256, 256, 256, 256, 256, 10]
EPS = 0.05


def deep_network() -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(7)
    weights = [
        (rng.normal(size=(b, a)) / np.sqrt(a)).astype(np.float32)
        for a, b in zip(SIZES[:-1], SIZES[1:], strict=True)
    ]
    biases = [(0.1 * rng.normal(size=b)).astype(np.float32) for b in SIZES[1:]]
    return to_bytes(dense_relu_model(weights, biases)), rng.uniform(0.2, 0.8, SIZES[0])


def write_spec(path: Path, centre: np.ndarray, threshold: float) -> Path:
    """Unsafe: y0 >= threshold on the L-inf ball of radius EPS around centre."""
    lines = [f"(declare-const X_{i} Real)" for i in range(SIZES[0])]
    lines += [f"(declare-const Y_{j} Real)" for j in range(SIZES[-1])]
    for i, c in enumerate(centre):
        lines.append(f"(assert (>= X_{i} {c - EPS:.6f}))")
        lines.append(f"(assert (<= X_{i} {c + EPS:.6f}))")
    lines.append(f"(assert (>= Y_0 {threshold:.6f}))")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def instance(tmp_path_factory) -> tuple[Path, Path]:
    """A property that holds (the threshold is far above every sampled output) but that the
    bounds of so deep a network cannot prove quickly: the search runs into its timeout."""
    model_bytes, centre = deep_network()
    folder = tmp_path_factory.mktemp("deep")
    model_path = folder / "deep.onnx"
    model_path.write_bytes(model_bytes)
    network = load_model(model_bytes).network
    low, high = (centre - EPS)[None], (centre + EPS)[None]
    upper = -linear_bounds(network, low, high, -np.eye(SIZES[-1])[:1]).objective_lower[0, 0]
    samples = np.random.default_rng(0).uniform(low, high, (2000, SIZES[0]))
    top = float(network.evaluate(samples)[:, 0].max())
    threshold = top + 0.5 * (upper - top)
    return model_path, write_spec(folder / "deep.vnnlib", centre, threshold)


def test_verify_returns_within_a_second_of_a_short_timeout(instance) -> None:
    model_path, spec_path = instance
    started = time.monotonic()
    prop = load_property(spec_path)
    result = verify(
        OnnxComponent(model_path.read_bytes()),
        prop,
        Options(timeout_s=2.0, workers=1),
        started=started,
    )
    elapsed = time.monotonic() - started
    assert result.verdict.value == "unknown", result.reason
    assert "timeout" in result.reason
    assert elapsed < 3.0


def test_cli_process_ends_within_a_second_of_its_timeout(instance) -> None:
    """Start-up, imports and parsing count: the whole process ends by timeout + 1 s."""
    model_path, spec_path = instance
    timeout = 3.0
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from service.cli import app; app()",
            "verify",
            str(model_path),
            str(spec_path),
            "--timeout",
            str(timeout),
            "--workers",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert json.loads(proc.stdout)["verdict"] == "unknown", proc.stdout + proc.stderr
    assert elapsed < timeout + 1.0


def test_bounds_and_the_slope_optimiser_stop_at_a_past_deadline(instance) -> None:
    model_path, _ = instance
    network = load_model(model_path.read_bytes()).network
    low, high = np.zeros((1, SIZES[0])), np.full((1, SIZES[0]), 0.1)
    past = time.monotonic() - 1.0
    with pytest.raises(OutOfTime):
        linear_bounds(network, low, high, np.eye(SIZES[-1])[:1], deadline=past)
    with pytest.raises(OutOfTime):
        linear_bounds(
            network, low, high, np.eye(SIZES[-1])[:1], slopes=SlopeSearch(5), deadline=past
        )


def test_a_step_cut_off_by_the_deadline_is_undone(monkeypatch) -> None:
    """Regions proved or pushed by a step that then runs out of time are not kept: the
    step's regions go back on the stack, open, and the proved share is unchanged."""
    from tests.unit.test_search_oracle import at_least_case, to_network
    from verifiers.search.bab import CaseSearch
    from verifiers.search.context import SearchContext
    from verifiers.search.region import Evidence

    rng = np.random.default_rng(3)
    weights = [rng.normal(size=(4, 2)), rng.normal(size=(1, 4))]
    biases = [rng.normal(size=4), rng.normal(size=1)]
    network = to_network(weights, biases)
    case = at_least_case(np.ones(1), 100.0, np.zeros(2), np.ones(2))
    ctx = SearchContext(network, case, network.evaluate, deadline=time.monotonic() + 30)
    search = CaseSearch(ctx)
    batch = [search.stack.pop()]
    left, right = batch[0].split(0)

    def proves_then_runs_out(regions):
        search.record(left, Evidence.LINEAR, 0)
        search.stack.append(right)
        raise OutOfTime

    monkeypatch.setattr(search, "step", proves_then_runs_out)
    assert not search.step_or_undo(batch)
    assert search.stack == batch
    assert search.outcome.proved_share == 0.0 and not search.outcome.leaves


RES_WIDTH, RES_BLOCKS = 256, 3
# The threshold sits this far from the sampled maximum towards the interval bound: above
# every sampled output, and too close to it for the search to prove or refute in seconds
# (a verdict within the timeout fails the test, which is about the timeout).
FRACTION = 0.01


def residual_network() -> tuple[bytes, list[tuple[np.ndarray, ...]], np.ndarray]:
    """x -> [relu(W2 relu(W1 h + b1) + b2 + h)] x RES_BLOCKS -> Wo h + bo: residual joins
    across activations, so the graph engine (not the chain) bounds it."""
    rng = np.random.default_rng(11)
    f32 = lambda *shape, s=1.0: (s * rng.normal(size=shape)).astype(np.float32)  # noqa: E731
    blocks = [
        (
            f32(RES_WIDTH, RES_WIDTH, s=RES_WIDTH**-0.5),
            f32(RES_WIDTH, s=0.1),
            f32(RES_WIDTH, RES_WIDTH, s=RES_WIDTH**-0.5),
            f32(RES_WIDTH, s=0.1),
        )
        for _ in range(RES_BLOCKS)
    ]
    head = (f32(10, RES_WIDTH, s=RES_WIDTH**-0.5), f32(10, s=0.1))
    nodes, inits, h = [], {}, "x"
    for k, (w1, b1, w2, b2) in enumerate(blocks):
        inits |= {f"w1_{k}": w1, f"b1_{k}": b1, f"w2_{k}": w2, f"b2_{k}": b2}
        nodes += [
            helper.make_node("Gemm", [h, f"w1_{k}", f"b1_{k}"], [f"a{k}"], transB=1),
            helper.make_node("Relu", [f"a{k}"], [f"r{k}"]),
            helper.make_node("Gemm", [f"r{k}", f"w2_{k}", f"b2_{k}"], [f"c{k}"], transB=1),
            helper.make_node("Add", [f"c{k}", h], [f"s{k}"]),
            helper.make_node("Relu", [f"s{k}"], [f"h{k}"]),
        ]
        h = f"h{k}"
    inits |= {"wo": head[0], "bo": head[1]}
    nodes.append(helper.make_node("Gemm", [h, "wo", "bo"], ["y"], transB=1))
    model = make_model(nodes, input_shape=[1, RES_WIDTH], initializers=inits)
    return to_bytes(model), [*blocks, head], rng.uniform(0.2, 0.8, RES_WIDTH)


def residual_outputs(params, x: np.ndarray) -> np.ndarray:
    *blocks, (wo, bo) = params
    for w1, b1, w2, b2 in blocks:
        x = np.maximum(np.maximum(x @ w1.T + b1, 0) @ w2.T + b2 + x, 0)
    return x @ wo.T + bo


def residual_interval_top(params, low: np.ndarray, high: np.ndarray) -> float:
    """An upper bound of y0 by interval arithmetic (loose: the search cannot close the gap
    between it and the sampled maximum in a few seconds)."""

    def affine(lo, hi, w, b):
        pos, neg = np.maximum(w, 0), np.minimum(w, 0)
        return lo @ pos.T + hi @ neg.T + b, hi @ pos.T + lo @ neg.T + b

    *blocks, (wo, bo) = params
    for w1, b1, w2, b2 in blocks:
        a_lo, a_hi = affine(low, high, w1, b1)
        c_lo, c_hi = affine(np.maximum(a_lo, 0), np.maximum(a_hi, 0), w2, b2)
        low, high = np.maximum(c_lo + low, 0), np.maximum(c_hi + high, 0)
    return float(affine(low, high, wo, bo)[1][0])


def test_the_graph_engine_ends_within_a_second_of_its_timeout(tmp_path: Path) -> None:
    """Element splits and optimised slopes on 32 regions of a residual network stop in time."""
    model_bytes, params, centre = residual_network()
    low, high = centre - EPS, centre + EPS
    samples = np.random.default_rng(0).uniform(low, high, (2000, RES_WIDTH))
    top = float(residual_outputs(params, samples)[:, 0].max())
    threshold = top + FRACTION * (residual_interval_top(params, low, high) - top)
    spec = [f"(declare-const X_{i} Real)" for i in range(RES_WIDTH)]
    spec += [f"(declare-const Y_{j} Real)" for j in range(10)]
    spec += [f"(assert (>= X_{i} {lo:.6f}))" for i, lo in enumerate(low)]
    spec += [f"(assert (<= X_{i} {hi:.6f}))" for i, hi in enumerate(high)]
    spec.append(f"(assert (>= Y_0 {threshold:.6f}))")
    spec_path = tmp_path / "res.vnnlib"
    spec_path.write_text("\n".join(spec) + "\n")
    started = time.monotonic()
    result = verify(
        OnnxComponent(model_bytes),
        load_property(spec_path),
        Options(timeout_s=2.0, workers=1),
        started=started,
    )
    elapsed = time.monotonic() - started
    with pytest.raises(UnsupportedError, match="no piecewise-linear normal form"):
        _ = load_model(model_bytes).network  # no chain: the graph engine bounds it
    assert result.verdict.value == "unknown", result.reason
    assert "timeout" in result.reason
    assert elapsed < 3.0
