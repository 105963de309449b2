"""Verdicts and results: typed inside, JSON at the edge (DESIGN.md section 4)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    HOLDS = "holds"
    VIOLATED = "violated"
    UNKNOWN = "unknown"
    ERROR = "error"

    @property
    def exit_code(self) -> int:
        return {"holds": 0, "violated": 1, "unknown": 2, "error": 3}[self.value]

    @property
    def vnncomp(self) -> str:
        return {"holds": "unsat", "violated": "sat", "unknown": "unknown", "error": "error"}[
            self.value
        ]


@dataclass(frozen=True)
class Counterexample:
    """A concrete input inside the domain whose output lies in the unsafe set.

    ``outputs`` come from the engine's exact-weight evaluation, ``onnxruntime_outputs`` from
    the replay (float32); ``margin`` is how far the replayed output is inside the unsafe set
    (>= 0; larger is a clearer violation).
    """

    inputs: list[float]
    outputs: list[float]
    onnxruntime_outputs: list[float] | None
    margin: float
    trace: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "inputs": self.inputs,
            "outputs": _json_floats(self.outputs),
            "onnxruntime_outputs": _json_floats(self.onnxruntime_outputs),
            "margin": _json_float(self.margin),
        }
        if self.trace is not None:
            data["trace"] = self.trace
        return data


def _json_float(value: float) -> float | None:
    """JSON has no inf or NaN: a value that overflowed float64 is written as null."""
    return value if math.isfinite(value) else None


def _json_floats(values: list[float] | None) -> list[float | None] | None:
    return None if values is None else [_json_float(v) for v in values]


def percent(fraction: float) -> str:
    """A proved fraction as a percentage, rounded down to 0.1%: only a whole proof reads
    100.0%, however little is left open."""
    return f"{math.floor(fraction * 1000.0) / 10.0:.1f}%"


@dataclass(frozen=True)
class Stats:
    seconds: float = 0.0
    method: str = ""
    subproblems: int = 0
    proved_fraction: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 6),
            "method": self.method,
            "subproblems": self.subproblems,
            "proved_fraction": self.proved_fraction,
        }


@dataclass(frozen=True)
class Result:
    verdict: Verdict
    stats: Stats = field(default_factory=Stats)
    counterexample: Counterexample | None = None
    # Why the verdict is unknown or error, in words a user can act on.
    reason: str | None = None
    # Evidence for `holds`: the search tree and leaf arguments, for an independent re-check.
    certificate: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "verdict": self.verdict.value,
            "counterexample": self.counterexample.to_json() if self.counterexample else None,
            "stats": self.stats.to_json(),
            "certificate": self.certificate,
        }
        if self.reason:
            data["reason"] = self.reason
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        cex = data.get("counterexample")
        return cls(
            verdict=Verdict(data["verdict"]),
            stats=Stats(**data.get("stats", {})),
            counterexample=Counterexample(**cex) if cex else None,
            reason=data.get("reason"),
            certificate=data.get("certificate"),
        )


@dataclass(frozen=True)
class Progress:
    """A progress event of a running verification, streamed to the service."""

    subproblems_done: int
    subproblems_open: int
    proved_fraction: float
    seconds: float
    phase: str = "search"

    def to_json(self) -> dict[str, Any]:
        return {
            "subproblems_done": self.subproblems_done,
            "subproblems_open": self.subproblems_open,
            "proved_fraction": self.proved_fraction,
            "seconds": round(self.seconds, 3),
            "phase": self.phase,
        }


def internal_error(exc: BaseException, seconds: float = 0.0) -> Result:
    """The `error` verdict of an unexpected exception: never a stack trace, never exit 1."""
    return Result(
        Verdict.ERROR,
        Stats(seconds=seconds),
        reason=f"internal error ({type(exc).__name__}: {exc}); please report it",
    )
