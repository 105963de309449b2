"""What a converter may know about its ONNX node, and the error for a variant it rejects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper

from verifiers.errors import UnsupportedError
from verifiers.model.ir import Shape


class UnsupportedVariant(UnsupportedError):
    """A supported op type used in a way the converter does not handle."""

    def __init__(self, op_type: str, node: str, why: str) -> None:
        super().__init__(f"{op_type} node '{node}': {why}", node=node)
        self.why = why


@dataclass(frozen=True)
class NodeContext:
    """What a converter may know about its node."""

    node: onnx.NodeProto
    constants: Mapping[str, np.ndarray]
    shapes: Mapping[str, Shape]  # ONNX shapes of the variable tensors computed so far
    opset: int

    @property
    def name(self) -> str:
        return self.node.name or self.node.output[0]

    def attr(self, name: str, default: Any = None) -> Any:
        for attribute in self.node.attribute:
            if attribute.name == name:
                value = helper.get_attribute_value(attribute)
                return value.decode() if isinstance(value, bytes) else value
        return default

    def has_attr(self, name: str) -> bool:
        return any(attribute.name == name for attribute in self.node.attribute)

    def has_input(self, i: int) -> bool:
        return i < len(self.node.input) and bool(self.node.input[i])

    def variable_inputs(self) -> list[int]:
        """The positions of the inputs that depend on the model input."""
        return [i for i, name in enumerate(self.node.input) if name and name not in self.constants]

    def const(self, i: int) -> np.ndarray | None:
        """Input i as a float64 constant, or None if it is absent or variable."""
        if not self.has_input(i) or self.node.input[i] not in self.constants:
            return None
        return np.asarray(self.constants[self.node.input[i]], dtype=np.float64)

    def required_const(self, i: int, what: str) -> np.ndarray:
        value = self.const(i)
        if value is None:
            raise self.unsupported(f"{what} (input {i}) must be a constant")
        return value

    def scalar_const(self, i: int, what: str) -> float:
        """A constant input that must hold one value (ONNX: a scalar; onnxruntime also
        takes a one-element tensor)."""
        value = self.required_const(i, what)
        if value.size != 1:
            raise self.unsupported(
                f"{what} (input {i}) must hold one value, it has shape {value.shape}"
            )
        return float(value.reshape(()))

    def shape(self, i: int) -> Shape:
        name = self.node.input[i]
        if name in self.constants:
            return tuple(np.shape(self.constants[name]))
        return self.shapes[name]

    def unsupported(self, why: str) -> UnsupportedVariant:
        return UnsupportedVariant(self.node.op_type, self.name, why)


def axis_of(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis
