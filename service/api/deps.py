"""Dependencies shared by the routes (``Annotated`` aliases)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from service.config import Settings
from service.errors import ServiceError
from service.store.artefacts import ArtefactStore
from service.store.db import Database
from service.store.jobs import JobStore
from service.store.workers import WorkerStore


@dataclass(frozen=True)
class Services:
    """What the app holds: settings, the database and its stores."""

    settings: Settings
    db: Database
    jobs: JobStore
    artefacts: ArtefactStore
    workers: WorkerStore

    @classmethod
    def create(cls, settings: Settings, db: Database) -> Services:
        return cls(settings, db, JobStore(db), ArtefactStore(db), WorkerStore(db))


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def require_scope(scope: str) -> Callable[[Request, Services], None]:
    """A dependency that will check a bearer token's scope; open mode lets all through."""

    def check(request: Request, services: ServicesDep) -> None:
        if services.settings.open_mode:
            return
        raise ServiceError(
            401,
            "Unauthorized",
            f"a bearer token with scope '{scope}' is required (tokens are not implemented yet)",
            "unauthorized",
        )

    return check


Submit = Depends(require_scope("submit"))
Read = Depends(require_scope("read"))
Admin = Depends(require_scope("admin"))
