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

from tests.onnx_builders import dense_relu_model, to_bytes
from verifiers.bounds.alpha import SlopeSearch
from verifiers.bounds.linear import linear_bounds
from verifiers.components import OnnxComponent
from verifiers.deadline import OutOfTime
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
