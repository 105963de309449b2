"""The FastAPI app factory: ``create_app(settings)``; nothing is created at import time."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.api.deps import Services
from service.api.routes import artefacts, downloads, events, health, jobs, metrics
from service.config import Settings
from service.dashboard import actions as dashboard_actions
from service.dashboard import routes as dashboard
from service.errors import PROBLEM_JSON, ServiceError, problem_body, problem_of
from service.store.db import Database
from service.store.migrate import ensure_schema
from verifiers.errors import VerifierError

log = logging.getLogger(__name__)


async def problem_handler(request: Request, exc: Exception) -> JSONResponse:
    """The one place errors become RFC 9457 problem+json bodies."""
    err = problem_of(exc)
    headers = getattr(exc, "headers", None) if isinstance(exc, HTTPException) else None
    return JSONResponse(
        problem_body(err, request.url.path),
        status_code=err.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def create_app(
    settings: Settings | None = None, db: Database | None = None, migrate: bool = True
) -> FastAPI:
    """Build the app on ``settings`` (default: from the environment).

    On a SQLite file the schema is migrated here; on PostgreSQL an outdated schema is an
    error (``service.store.migrate.SchemaError``) telling to run ``proofwell db upgrade``.
    """
    settings = settings or Settings()
    db = db or Database(settings.database_url)
    if migrate:
        ensure_schema(db)
    app = FastAPI(
        title="proofwell",
        version="1",
        summary="Formal verification service",
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.services = Services.create(settings, db)
    for exc_type in (ServiceError, RequestValidationError, HTTPException, VerifierError, Exception):
        app.add_exception_handler(exc_type, problem_handler)
    for router in (
        artefacts.router,
        jobs.router,
        downloads.router,
        events.router,
        health.router,
        metrics.router,
        dashboard.router,
        dashboard_actions.router,
    ):
        app.include_router(router)
    return app
