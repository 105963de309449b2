"""The service's exception root and its translation to RFC 9457 problem details.

Every error the API returns goes through :func:`problem_of` and one handler in ``app.py``,
so every error body has the same shape::

    {"type", "title", "status", "detail", "instance", "errors": [{"pointer", ...}]}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from service.store.db import DATABASE_DOWN
from verifiers.errors import OptionsError, VerifierError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
# How long a client should wait before retrying while the database is unreachable.
RETRY_AFTER_S = 5


@dataclass
class ServiceError(Exception):
    """An error with an HTTP status; ``errors`` point at what was wrong."""

    status: int
    title: str
    detail: str
    slug: str = "error"
    errors: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] | None = None

    def __str__(self) -> str:
        return f"{self.title}: {self.detail}"


def not_found(what: str, key: object) -> ServiceError:
    return ServiceError(404, "Not found", f"{what} {key!s} does not exist", "not-found")


def too_large(limit: int) -> ServiceError:
    mb = limit / (1024 * 1024)
    return ServiceError(
        413,
        "Payload too large",
        f"the upload exceeds the limit of {mb:g} MB",
        "too-large",
        [{"pointer": "/file", "limit_bytes": limit}],
    )


def invalid_input(exc: VerifierError, pointer: str) -> ServiceError:
    """A verifier error (bad model, property or module) as a 422 with its location."""
    entry: dict[str, Any] = {"pointer": pointer, "detail": exc.message}
    for key in ("line", "column", "node", "field"):
        value = getattr(exc, key, None)
        if value is not None:
            entry[key] = value
    return ServiceError(422, "Invalid input", str(exc), "invalid-input", [entry])


def _pointer(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return "/" + "/".join(parts)


def problem_of(exc: Exception) -> ServiceError:
    """Translate any exception into a ServiceError, once, at the boundary."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, RequestValidationError):
        errors = [
            {"pointer": _pointer(tuple(e.get("loc", ()))), "detail": e.get("msg", "")}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['pointer']}: {e['detail']}" for e in errors)
        return ServiceError(422, "Invalid request", detail, "invalid-request", errors)
    if isinstance(exc, OptionsError):
        return invalid_input(exc, f"/options/{exc.field}")
    if isinstance(exc, VerifierError):
        return invalid_input(exc, "/")
    if isinstance(exc, RecursionError) or isinstance(exc.__cause__, RecursionError):
        return ServiceError(
            422,
            "Invalid request",
            "the request is nested too deeply",
            "invalid-request",
            [{"pointer": "/", "detail": "nested too deeply"}],
        )
    if isinstance(exc, HTTPException):
        titles = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}
        title = titles.get(exc.status_code, "HTTP error")
        return ServiceError(
            exc.status_code,
            title,
            str(exc.detail),
            title.lower().replace(" ", "-"),
            headers=dict(exc.headers) if exc.headers else None,
        )
    if isinstance(exc, DATABASE_DOWN):
        log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)
        return ServiceError(
            503,
            "Unavailable",
            "the database is unreachable; retry later",
            "unavailable",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    log.exception("internal error", exc_info=exc)
    return ServiceError(
        500, "Internal error", "an unexpected error occurred; see the server log", "internal"
    )


def problem_body(err: ServiceError, instance: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"/problems/{err.slug}",
        "title": err.title,
        "status": err.status,
        "detail": err.detail,
        "instance": instance,
    }
    if err.errors:
        body["errors"] = err.errors
    return body
