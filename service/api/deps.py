"""Dependencies shared by the routes (``Annotated`` aliases), including who is asking.

A request is authenticated by ``Authorization: Bearer <token>``, or by the dashboard's
session cookie (set by ``/login``). In open mode (the local default, bound to 127.0.0.1)
a request without a token acts for the default project with every scope, provided it was
addressed to a loopback host name (a DNS-rebinding page cannot pass for it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from service.api.single_flight import SingleFlight
from service.config import Settings
from service.errors import ServiceError
from service.store.artefacts import ArtefactInfo, ArtefactStore
from service.store.batched import BatchedSubmissions
from service.store.batched_reads import BatchedReads
from service.store.db import Database
from service.store.jobs import JobStore
from service.store.models import DEFAULT_PROJECT, DEFAULT_PROJECT_ID
from service.store.tokens import Principal, Scope, TokenStore, grants
from service.store.workers import WorkerStore

SESSION_COOKIE = "proofwell_session"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
OPEN = Principal(DEFAULT_PROJECT_ID, DEFAULT_PROJECT, frozenset(Scope))


@dataclass(frozen=True)
class Services:
    """What the app holds: settings, the database and its stores."""

    settings: Settings
    db: Database
    jobs: JobStore
    artefacts: ArtefactStore
    workers: WorkerStore
    tokens: TokenStore
    submissions: BatchedSubmissions
    reads: BatchedReads  # polls of jobs by id
    artefact_reads: SingleFlight[ArtefactInfo | None]

    @classmethod
    def create(cls, settings: Settings, db: Database) -> Services:
        jobs = JobStore(db)
        return cls(
            settings,
            db,
            jobs,
            ArtefactStore(db),
            WorkerStore(db),
            TokenStore(db),
            BatchedSubmissions(jobs),
            BatchedReads(jobs),
            SingleFlight(),
        )


async def get_services(request: Request) -> Services:
    # async: a sync dependency would cost a thread-pool round trip on every request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


class LoginRequired(Exception):
    """A dashboard page without a session: the handler redirects to /login."""


def _host(request: Request) -> str:
    host = request.headers.get("host", "")
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def principal(request: Request, services: Services) -> Principal | None:
    """Who sent the request, or None (no valid credentials and not open mode).

    A valid token acts for its project in every mode. In open mode a request without one
    (or with one this server does not know, e.g. a CI token aimed at another server) acts
    for the default project, if it was addressed to a loopback host name.
    """
    found = _credentials(request, services)
    if found is not None:
        return found
    if services.settings.open_mode and _host(request).lower() in LOOPBACK_HOSTS:
        return OPEN
    return None


def _has_credentials(request: Request) -> bool:
    return "authorization" in request.headers or SESSION_COOKIE in request.cookies


def _credentials(request: Request, services: Services) -> Principal | None:
    auth = request.headers.get("authorization")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        return services.tokens.verify(token.strip()) if scheme.lower() == "bearer" else None
    cookie = request.cookies.get(SESSION_COOKIE)
    return services.tokens.verify(cookie) if cookie else None


def _unauthorized(scope: Scope) -> ServiceError:
    return ServiceError(
        401,
        "Unauthorized",
        f"a valid bearer token with scope '{scope.value}' is required "
        "(create one with `proofwell token create`)",
        "unauthorized",
        headers={"WWW-Authenticate": 'Bearer realm="proofwell"'},
    )


def _forbidden(scope: Scope) -> ServiceError:
    return ServiceError(
        403,
        "Forbidden",
        f"this token lacks scope '{scope.value}'",
        "forbidden",
        headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope.value}"'},
    )


def require_scope(
    scope: Scope, page: bool = False
) -> Callable[[Request, Services], Awaitable[Principal]]:
    """A dependency returning the principal when it holds ``scope``; a dashboard ``page``
    without credentials redirects to the login form instead of answering 401."""

    async def check(request: Request, services: ServicesDep) -> Principal:
        # Only a credential needs the database; the thread pool is kept for that case.
        if _has_credentials(request):
            who = await run_in_threadpool(principal, request, services)
        else:
            who = principal(request, services)
        if who is None:
            if page:
                raise LoginRequired()
            raise _unauthorized(scope)
        if not grants(who.scopes, scope):
            raise _forbidden(scope)
        return who

    return check


ReadAuth = Annotated[Principal, Depends(require_scope(Scope.READ))]
SubmitAuth = Annotated[Principal, Depends(require_scope(Scope.SUBMIT))]
AdminAuth = Annotated[Principal, Depends(require_scope(Scope.ADMIN))]
PageAuth = Annotated[Principal, Depends(require_scope(Scope.READ, page=True))]
