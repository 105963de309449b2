"""ONNX models: loading, the graph IR, evaluation, replay and the piecewise-linear normal form.

model = load_model("net.onnx", inputs=None, outputs=None)
model.evaluate(x)          # IR in float64
model.run_onnxruntime(x)   # replay in float32
model.network              # PiecewiseLinearNetwork
"""

from verifiers.model.onnx_loader import load_model
from verifiers.model.op_table import SUPPORTED_OPS
from verifiers.model.runtime import Model

__all__ = ["SUPPORTED_OPS", "Model", "load_model"]
