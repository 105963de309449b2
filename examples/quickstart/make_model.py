"""Build the quickstart model: a small ReLU network scoring three steering advisories.

Inputs: distance to the intruder, relative bearing and closing speed, each normalised to
[0, 1]. Outputs: scores for "clear", "turn left", "turn right". The weights are drawn with a
fixed seed (a stand-in for a trained model) so the file is reproducible:

    python examples/quickstart/make_model.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent


def build(seed: int = 7) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    sizes = [3, 16, 16, 3]
    nodes, inits = [], []
    current = "input"
    for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = (rng.normal(size=(fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        b = (0.1 * rng.normal(size=fan_out)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{k}"), numpy_helper.from_array(b, f"B{k}")]
        out = "scores" if k == len(sizes) - 2 else f"h{k}"
        pre = f"pre{k}" if out != "scores" else out
        nodes.append(helper.make_node("Gemm", [current, f"W{k}", f"B{k}"], [pre], name=f"fc{k}"))
        if out != "scores":
            nodes.append(helper.make_node("Relu", [pre], [out], name=f"relu{k}"))
        current = out
    graph = helper.make_graph(
        nodes,
        "advisory",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    onnx.save(build(), HERE / "advisory.onnx")
