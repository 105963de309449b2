"""`proofwell supports MODEL.onnx`: per node exact / relaxed / conditional / unsupported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from onnx import helper
from typer.testing import CliRunner

from service.cli import app
from tests.onnx_builders import dense_relu_model, make_model, random_dense, to_bytes


def _supports(path: Path) -> tuple[int, dict]:
    result = CliRunner().invoke(app, ["supports", str(path), "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_chain_graph_and_unsupported_models(tmp_path: Path) -> None:
    chain = tmp_path / "chain.onnx"
    chain.write_bytes(to_bytes(dense_relu_model(*random_dense([3, 4, 2]))))
    code, data = _supports(chain)
    assert code == 0 and data["engine"] == "chain"
    assert {n["level"] for n in data["nodes"]} == {"exact"}

    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Gemm", ["x", "W", "b"], ["h"], transB=1),
        helper.make_node("Tanh", ["h"], ["t"]),
        helper.make_node("Softmax", ["t"], ["y"]),
    ]
    init = {"W": rng.normal(size=(2, 3)), "b": rng.normal(size=2)}
    graph = tmp_path / "graph.onnx"
    graph.write_bytes(to_bytes(make_model(nodes, input_shape=[1, 3], initializers=init)))
    code, data = _supports(graph)
    assert code == 0 and data["engine"] == "graph"
    levels = {n["op_type"]: n["level"] for n in data["nodes"]}
    assert levels == {"Gemm": "exact", "Tanh": "relaxed", "Softmax": "conditional"}

    bad = tmp_path / "bad.onnx"
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["h"], transB=1)]
    nodes.append(helper.make_node("Erf", ["h"], ["y"]))
    bad.write_bytes(to_bytes(make_model(nodes, input_shape=[1, 3], initializers=init)))
    code, data = _supports(bad)
    assert code == 3 and "Erf" in data["error"]
    assert {n["op_type"]: n["level"] for n in data["nodes"]}["Erf"] == "unsupported"
