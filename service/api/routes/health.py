"""GET /healthz: the database answers; how many workers were seen recently."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.exc import SQLAlchemyError

from service.api.deps import ServicesDep
from service.api.schemas import Health, problem_responses
from service.errors import ServiceError

router = APIRouter(tags=["health"], responses=problem_responses(503))


@router.get("/healthz", response_model=Health)
def healthz(services: ServicesDep) -> Health:
    try:
        services.db.ping()
        seen = services.workers.seen_within(services.settings.worker_seen_s)
    except SQLAlchemyError as exc:
        raise ServiceError(
            503, "Unavailable", f"the database is unreachable: {type(exc).__name__}", "unavailable"
        ) from exc
    return Health(status="ok" if seen else "no-workers", database="ok", workers_seen=seen)
