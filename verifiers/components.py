"""What can be verified: components named by the caller, loaded lazily by the engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OnnxComponent:
    """An ONNX model (file path or bytes), optionally narrowed to a subnetwork by tensor names."""

    source: Path | bytes
    inputs: tuple[str, ...] | None = None
    outputs: tuple[str, ...] | None = None
