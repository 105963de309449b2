"""The FastAPI app factory: ``create_app(settings)``; nothing is created at import time."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.api.deps import LoginRequired, Services
from service.api.guards import BodyLimit, CrossSiteGuard, SecurityHeaders
from service.api.hub import EventHub
from service.api.routes import artefacts, downloads, events, health, jobs, metrics
from service.config import Settings
from service.dashboard import actions as dashboard_actions
from service.dashboard import login
from service.dashboard import routes as dashboard
from service.errors import PROBLEM_JSON, ServiceError, problem_body, problem_of
from service.store.db import Database
from service.store.migrate import ensure_schema
from verifiers.errors import VerifierError

log = logging.getLogger(__name__)


async def problem_handler(request: Request, exc: Exception) -> JSONResponse:
    """The one place errors become RFC 9457 problem+json bodies."""
    err = problem_of(exc)
    return JSONResponse(
        problem_body(err, request.url.path),
        status_code=err.status,
        media_type=PROBLEM_JSON,
        headers=err.headers,
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
    services = Services.create(settings, db)
    hub = EventHub(services.jobs)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # In the background: a server must start even while its database is away.
        warming = asyncio.get_running_loop().run_in_executor(None, services.submissions.warm)
        yield
        warming.cancel()
        await hub.close()
        services.submissions.close()

    app = FastAPI(
        title="proofwell",
        version="1",
        summary="Formal verification service",
        docs_url="/docs",
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.services, app.state.hub = services, hub
    for exc_type in (ServiceError, RequestValidationError, HTTPException, VerifierError, Exception):
        app.add_exception_handler(exc_type, problem_handler)
    app.add_exception_handler(LoginRequired, login.login_redirect)
    app.add_middleware(BodyLimit, limit_for=_body_limit(settings))
    app.add_middleware(CrossSiteGuard)
    app.add_middleware(SecurityHeaders)  # outermost: every response, errors included
    for router in (
        login.router,
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


def create_served_app() -> FastAPI:
    """``create_app()`` for a long-lived API process of ``proofwell serve``."""
    app = create_app()
    freeze_start_up_heap()
    return app


def freeze_start_up_heap() -> None:
    """What start-up imported and built lives as long as an API process, so it is moved out
    of the collector's reach (``gc.freeze``). A full collection otherwise walks its ~130,000
    objects, measured at 120 ms in an API process on a loaded machine: a stall of every
    request in flight."""
    gc.collect()
    gc.freeze()


def _body_limit(settings: Settings) -> Callable[[str], tuple[int, str]]:
    upload = settings.max_upload_bytes + 64 * 1024  # the multipart framing around the file
    other = settings.max_body_bytes

    def limit_for(path: str) -> tuple[int, str]:
        return (upload, "/file") if path.rstrip("/") == "/v1/artefacts" else (other, "/")

    return limit_for
