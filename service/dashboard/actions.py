"""The dashboard's buttons: cancel a job, rerun it (with more time or memory).

Plain HTML forms posting here, answered with a redirect to the job's page (303), so they
work without JavaScript. A cross-site form post is refused: when the browser sends an
``Origin`` header, its host must be this server's.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from service.api.deps import ServicesDep, Submit
from service.api.routes.jobs import _spec
from service.api.schemas import JobIn, OptionsIn
from service.errors import ServiceError, not_found
from service.store.jobs import Job

router = APIRouter(include_in_schema=False)


def _same_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
        raise ServiceError(403, "Forbidden", "cross-site form posts are refused", "forbidden")


def _job(services: ServicesDep, job_id: int) -> Job:
    job = services.jobs.get(job_id)
    if job is None:
        raise not_found("job", job_id)
    return job


def rerun_body(job: Job, timeout_s: float | None, memory_mb: int | None) -> JobIn:
    """The job's own request again, with the new limits (the rest of its options kept)."""
    prop = dict(job.prop)
    artefacts = prop.pop("artefacts", None) if "system" in prop else None
    options: dict[str, Any] = {
        "timeout_s": timeout_s or job.options.get("timeout_s"),
        "memory_mb": memory_mb or job.options.get("memory_mb"),
        "seed": job.options.get("seed", 0),
        "margin": job.options.get("margin", 0.0),
    }
    return JobIn(
        artefact=job.artefact,
        artefacts=artefacts,
        property=prop,
        subnetwork=job.subnetwork,
        options=OptionsIn(**{k: v for k, v in options.items() if v is not None}),
    )


@router.post("/jobs/{job_id}/cancel", dependencies=[Submit])
def cancel(job_id: int, request: Request, services: ServicesDep) -> RedirectResponse:
    _same_origin(request)
    if services.jobs.cancel(job_id) is None:
        raise not_found("job", job_id)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.post("/jobs/{job_id}/rerun", dependencies=[Submit])
def rerun(
    job_id: int,
    request: Request,
    services: ServicesDep,
    timeout_s: Annotated[float | None, Form()] = None,
    memory_mb: Annotated[int | None, Form()] = None,
) -> RedirectResponse:
    """Submit the job again; a decided verdict on unchanged work comes from the cache."""
    _same_origin(request)
    try:
        body = rerun_body(_job(services, job_id), timeout_s, memory_mb)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ServiceError(422, "Invalid request", detail, "invalid-request") from None
    new = services.jobs.submit(_spec(body, services))
    return RedirectResponse(f"/jobs/{new.id}", status_code=303)
