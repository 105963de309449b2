"""Rebuild the example gate's model: the quickstart's advisory network (seed 7).

The .onnx file is committed here so that this folder is a whole repository on its own (the
tests copy it to a temporary directory and run the gate there); the builder is the
quickstart's, not a copy of it.

    python examples/gate/make_models.py
"""

from __future__ import annotations

import runpy
from pathlib import Path

import onnx

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    quickstart = runpy.run_path(str(HERE.parent / "quickstart" / "make_model.py"))
    onnx.save(quickstart["build"](), HERE / "models" / "advisory.onnx")
