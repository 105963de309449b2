"""Train a small ReLU network to imitate examples/controller/controller.py; export ONNX.

numpy only, fixed seed, no downloads, a few seconds:

    python examples/equivalence/train.py      # writes controller_net.onnx next to this file

The network takes the raw inputs (speed, dist) and returns the brake command; the input
scaling used for training is folded into the first layer before export.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEED = 0
HIDDEN = 16
LOW = np.array([0.0, 0.0])
HIGH = np.array([20.0, 50.0])


def controller(x: np.ndarray) -> np.ndarray:
    """The reference, in float64: clip(0.1 * speed - 0.02 * dist + 0.3, 0, 1)."""
    return np.clip(0.1 * x[:, 0] - 0.02 * x[:, 1] + 0.3, 0.0, 1.0)[:, None]


def train(steps: int = 4000, batch: int = 256) -> list[np.ndarray]:
    rng = np.random.default_rng(SEED)
    sizes = [2, HIDDEN, 1]
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        params += [rng.normal(0, np.sqrt(2 / n_in), (n_in, n_out)), np.zeros(n_out)]
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    for t in range(1, steps + 1):
        raw = rng.uniform(LOW, HIGH, (batch, 2))
        x, y = (raw - LOW) / (HIGH - LOW), controller(raw)
        acts = [x]
        for i in range(0, len(params), 2):
            z = acts[-1] @ params[i] + params[i + 1]
            acts.append(np.maximum(z, 0) if i + 2 < len(params) else z)
        grad = 2 * (acts[-1] - y) / batch
        grads = []
        for i in range(len(params) - 2, -1, -2):
            grads = [acts[i // 2].T @ grad, grad.sum(0)] + grads
            grad = (grad @ params[i].T) * (acts[i // 2] > 0)
        lr = 3e-3 if t < steps * 0.7 else 5e-4
        for p, g, (m, v) in zip(params, grads, moments, strict=True):
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            p -= lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    # Fold the input scaling (raw - LOW) / (HIGH - LOW) into the first layer.
    scale = 1 / (HIGH - LOW)
    params[1] = params[1] - (LOW * scale) @ params[0]
    params[0] = params[0] * scale[:, None]
    return params


def export(params: list[np.ndarray], path: Path) -> None:
    nodes, inits, current = [], [], "x"
    for i in range(0, len(params), 2):
        w = numpy_helper.from_array(params[i].astype(np.float32), f"W{i // 2}")
        b = numpy_helper.from_array(params[i + 1].astype(np.float32), f"B{i // 2}")
        inits += [w, b]
        out = f"h{i // 2}" if i + 2 < len(params) else "y"
        nodes.append(
            helper.make_node(
                "Gemm", [current, w.name, b.name], [f"{out}_pre" if out != "y" else "y"]
            )
        )
        if out != "y":
            nodes.append(helper.make_node("Relu", [f"{out}_pre"], [out]))
        current = out
    graph = helper.make_graph(
        nodes,
        "controller_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def main() -> None:
    params = train()
    out = Path(__file__).with_name("controller_net.onnx")
    export(params, out)
    axes = np.meshgrid(np.linspace(0, 20, 101), np.linspace(0, 50, 101))
    grid = np.stack(axes, -1).reshape(-1, 2)
    h = grid
    for i in range(0, len(params), 2):
        h = h @ params[i] + params[i + 1]
        h = np.maximum(h, 0) if i + 2 < len(params) else h
    error = np.abs(h - controller(grid)).max()
    print(f"wrote {out.name}; max |net - controller| on a grid: {error:.4f}")  # noqa: T201


if __name__ == "__main__":
    main()
