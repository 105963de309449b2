"""The one exception root of the verifier library.

Every error that reaches a user carries where it happened: a file, a line and column,
an ONNX node, or a JSON field. Boundaries (CLI, API) translate these once.
"""

from __future__ import annotations


class VerifierError(Exception):
    """Invalid input to the verifier; the message says what and where."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        column: int | None = None,
        node: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.line = line
        self.column = column
        self.node = node
        self.field = field

    def location(self) -> str:
        """A short human-readable location, e.g. ``spec.vnnlib:3:7`` or ``node 'fc1'``."""
        parts: list[str] = []
        if self.source:
            parts.append(self.source)
        if self.line is not None:
            parts.append(str(self.line) if self.column is None else f"{self.line}:{self.column}")
        where = ":".join(parts)
        if self.node:
            where = f"{where} node '{self.node}'".strip()
        if self.field:
            where = f"{where} field '{self.field}'".strip()
        return where

    def __str__(self) -> str:
        where = self.location()
        return f"{where}: {self.message}" if where else self.message


class ModelError(VerifierError):
    """A malformed, unreadable or unsupported ONNX model."""


class UnsupportedError(ModelError):
    """A model construct no analysis supports (an operator, a data type, a topology)."""


class SpecError(VerifierError):
    """A malformed property: VNN-LIB text, a JSON preset or a module SPEC."""


class ModuleError(VerifierError):
    """Symbolic module source that is not in the allowed language."""


class OptionsError(VerifierError):
    """An invalid verification option (timeout, margin, workers, seed); `field` names it."""
