"""Checks of uploads and submissions that load models or modules, run in a limited child.

Loading an ONNX model folds its constants and converts every node; parsing a module unrolls
its loops. Either can be made to cost gigabytes by a few hundred bytes, so the API never does
it in its own process: it runs here, in a forkserver child under the worker sandbox's
address-space and CPU limits. The child returns plain data; errors come back with their
location and are raised again in the API as the same ``VerifierError`` class.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from service.worker.runner import Child
from service.worker.sandbox import Limits
from verifiers import errors as verifier_errors
from verifiers.errors import ModelError, VerifierError

RUNNER = "service.worker.inspect:inspect_job"
_LOCATION = ("source", "line", "column", "node", "field")


def inspect_job(
    payload: dict[str, Any], _progress: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """The child's side: run one check, return ``{"value": ...}`` or ``{"error": ...}``."""
    from service.worker import engine

    try:
        if payload["op"] == "artefact":
            kind, meta = engine.inspect_artefact(payload["data"])
            return {"value": {"kind": kind, "meta": meta}}
        if payload["op"] == "property":
            engine.check_property(*payload["args"])
            return {"value": None}
        engine.check_system(payload["system"], payload["files"])
        return {"value": None}
    except VerifierError as exc:
        where = {k: getattr(exc, k) for k in _LOCATION if getattr(exc, k) is not None}
        return {"error": {"class": type(exc).__name__, "message": exc.message, **where}}


def run_check(payload: dict[str, Any], memory_mb: int, timeout_s: float) -> Any:
    """Run ``payload`` in a limited child; its value, or its VerifierError raised here."""
    limits = Limits(memory_mb=memory_mb, cpu_s=int(timeout_s) + 1)
    child = Child(0, payload, limits, RUNNER, wall_s=timeout_s + 5)
    try:
        while not child.done():
            if time.monotonic() > child.deadline:
                raise ModelError(f"checking it took longer than {timeout_s:g} s")
            child.messages()
            child.process.join(0.02)
    except BaseException:
        child.kill()
        raise
    outcome = child.outcome()  # reaps the child
    result = outcome.result or {}
    if "error" in result:
        raise _error(result["error"])
    if "value" in result:
        return result["value"]
    reason = result.get("reason") or outcome.failure or "the check failed"
    raise ModelError(f"checking it exceeded a resource limit: {reason}")


def _error(data: dict[str, Any]) -> VerifierError:
    cls = getattr(verifier_errors, str(data.get("class")), VerifierError)
    if not (isinstance(cls, type) and issubclass(cls, VerifierError)):
        cls = VerifierError
    return cls(data["message"], **{k: data[k] for k in _LOCATION if k in data})
