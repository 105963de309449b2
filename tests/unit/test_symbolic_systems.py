"""Systems and equivalence: hand-built networks with known answers, and the examples."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from verifiers.errors import SpecError
from verifiers.options import Options
from verifiers.result import Verdict
from verifiers.symbolic import verify_module, verify_system

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OPTIONS = Options(timeout_s=30.0)


def _clip_net(path: Path, shift: float = 0.0) -> None:
    """y = relu(z) - relu(z - 1) + shift with z = 0.5 * a - 0.25 * b: clip(z, 0, 1) + shift."""
    w1 = np.array([[0.5, 0.5], [-0.25, -0.25]], dtype=np.float32)
    b1 = np.array([0.0, -1.0], dtype=np.float32)
    w2 = np.array([[1.0], [-1.0]], dtype=np.float32)
    b2 = np.array([shift], dtype=np.float32)
    inits = [
        numpy_helper.from_array(a, n) for a, n in [(w1, "W1"), (b1, "B1"), (w2, "W2"), (b2, "B2")]
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "B1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "W2", "B2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "clip",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


REFERENCE = """
def ref(a: Real, b: Real) -> Real:
    return clip(0.5 * a - 0.25 * b, 0.0, 1.0)
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    _clip_net(tmp_path / "exact.onnx")
    _clip_net(tmp_path / "shifted.onnx", shift=0.125)
    (tmp_path / "ref.py").write_text(REFERENCE)
    return tmp_path


def _equivalence(network: str, epsilon: float) -> dict:
    return {
        "kind": "equivalence",
        "network": network,
        "reference": {"module": "ref.py", "function": "ref"},
        "box": [[-2, 4], [-1, 3]],
        "epsilon": epsilon,
    }


def test_exact_network_is_equivalent_with_tiny_epsilon(workdir: Path):
    # Not 0: the loader bounds its own rounding by ~1e-15, which z3 may use.
    result = verify_system(_equivalence("exact.onnx", 1e-9), OPTIONS, base_dir=workdir)
    assert result.verdict == Verdict.HOLDS
    assert result.certificate["max_deviation"] == 0.0


def test_shifted_network_deviation_is_the_shift(workdir: Path):
    # The network is the reference plus 0.125 everywhere: the maximal deviation is 0.125.
    holds = verify_system(_equivalence("shifted.onnx", 0.125001), OPTIONS, base_dir=workdir)
    assert holds.verdict == Verdict.HOLDS
    assert holds.certificate["max_deviation"] == 0.125
    fails = verify_system(_equivalence("shifted.onnx", 0.1), OPTIONS, base_dir=workdir)
    assert fails.verdict == Verdict.VIOLATED
    cex = fails.counterexample
    assert cex.margin == pytest.approx(0.025)
    assert cex.onnxruntime_outputs is not None
    assert cex.trace[0]["deviation"] == 0.125


def test_network_against_network(workdir: Path):
    system = {
        "kind": "equivalence",
        "network": "shifted.onnx",
        "reference": "exact.onnx",
        "box": [[0, 1], [0, 1]],
        "epsilon": 0.2,
    }
    assert verify_system(system, OPTIONS, base_dir=workdir).verdict == Verdict.HOLDS


def test_closed_loop_with_hand_derived_trace(workdir: Path):
    # x' = x + net(x, 0): net = clip(0.5 x, 0, 1); from x0 in [0, 2], x grows by at most 1.
    (workdir / "plant.py").write_text("def step(x: Real, u: Real) -> Real:\n    return x + u\n")
    system = {
        "components": {"net": {"onnx": "exact.onnx"}, "plant": {"module": "plant.py"}},
        "state": {"x": [0, 2]},
        "inputs": {"zero": [0, 0]},
        "wiring": [
            {"component": "net", "inputs": ["x", "zero"], "outputs": ["u"]},
            {"component": "plant", "inputs": ["x", "u"], "outputs": ["x"]},
        ],
        "steps": 3,
        "invariant": ["x <= 5.000001"],
        "ensures": ["u <= 1.000001"],
    }
    assert verify_system(system, OPTIONS, base_dir=workdir).verdict == Verdict.HOLDS
    system["invariant"] = ["x <= 4.5"]
    result = verify_system(system, OPTIONS, base_dir=workdir)
    assert result.verdict == Verdict.VIOLATED
    trace = result.counterexample.trace
    assert len(trace) == 4  # x0 = 2 -> 3 -> 4 -> 5 > 4.5 at step 3
    assert Fraction(trace[-1]["state"]["x"]) > Fraction(9, 2)
    x0 = float(Fraction(trace[0]["state"]["x"]))
    assert trace[0]["onnxruntime"]["0:net"] == [pytest.approx(min(0.5 * x0, 1.0))]


@pytest.mark.parametrize(
    ("system", "field"),
    [
        (
            {
                "kind": "equivalence",
                "network": "nope.onnx",
                "reference": "ref.py",
                "box": [],
                "epsilon": 1,
            },
            "network.onnx",
        ),
        (
            {
                "kind": "equivalence",
                "network": "exact.onnx",
                "reference": "ref.py",
                "box": [[0, 1]],
                "epsilon": 1,
            },
            "box",
        ),
        (
            {
                "kind": "equivalence",
                "network": "exact.onnx",
                "reference": "ref.py",
                "box": [[0, 1], [0, 1]],
                "epsilon": -1,
            },
            "epsilon",
        ),
        (
            {
                "components": {"p": {"module": "ref.py"}},
                "state": {"a": [0, 1]},
                "wiring": [{"component": "p", "inputs": ["a", "zz"], "outputs": ["a"]}],
                "steps": 1,
                "invariant": ["a <= 1"],
            },
            "wiring[0].inputs",
        ),
    ],
)
def test_system_errors_name_the_field(workdir: Path, system: dict, field: str):
    with pytest.raises(SpecError) as info:
        verify_system(system, OPTIONS, base_dir=workdir)
    assert info.value.field == field


def test_example_controller_specs():
    source = (EXAMPLES / "controller" / "controller.py").read_text()
    holds = json.loads((EXAMPLES / "controller" / "SPEC.json").read_text())
    fails = json.loads((EXAMPLES / "controller" / "SPEC_fails.json").read_text())
    assert verify_module(source, holds, OPTIONS).verdict == Verdict.HOLDS
    result = verify_module(source, fails, OPTIONS)
    assert result.verdict == Verdict.VIOLATED
    speed, dist = result.counterexample.inputs
    # Hand-derived: with dist >= 20 the command saturates iff speed >= 7 + 0.2 * dist.
    assert dist >= 20 and speed >= 7 + 0.2 * dist


def test_example_equivalence_fails_below_the_deviation():
    base = EXAMPLES / "equivalence"
    assert (base / "controller_net.onnx").stat().st_size < 100_000
    system = json.loads((base / "SYSTEM_fails.json").read_text())
    result = verify_system(system, Options(timeout_s=10.0), base_dir=base)
    assert result.verdict == Verdict.VIOLATED
    assert result.certificate["max_deviation"] > system["epsilon"]


@pytest.mark.slow
def test_example_closed_loop():
    base = EXAMPLES / "closed_loop"
    for name, verdict in [("SYSTEM.json", Verdict.HOLDS), ("SYSTEM_fails.json", Verdict.VIOLATED)]:
        system = json.loads((base / name).read_text())
        assert verify_system(system, OPTIONS, base_dir=base).verdict == verdict


def test_example_onnx_is_what_train_writes(tmp_path: Path):
    model = onnx.load(str(EXAMPLES / "equivalence" / "controller_net.onnx"))
    assert [n.op_type for n in model.graph.node] == ["Gemm", "Relu", "Gemm"]
