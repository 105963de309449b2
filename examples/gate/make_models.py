"""Build the example gate's model: a small ReLU network scoring three steering advisories.

The same network as examples/quickstart (seed 7), kept here so that this folder is a whole
repository on its own; the tests copy it to a temporary directory and run the gate there.

    python examples/gate/make_models.py
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
    for k, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        w = (rng.normal(size=(fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        b = (0.1 * rng.normal(size=fan_out)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{k}"), numpy_helper.from_array(b, f"B{k}")]
        last = k == len(sizes) - 2
        pre = "scores" if last else f"pre{k}"
        nodes.append(helper.make_node("Gemm", [current, f"W{k}", f"B{k}"], [pre], name=f"fc{k}"))
        if not last:
            nodes.append(helper.make_node("Relu", [pre], [f"h{k}"], name=f"relu{k}"))
        current = "scores" if last else f"h{k}"
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
    onnx.save(build(), HERE / "models" / "advisory.onnx")
