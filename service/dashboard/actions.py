"""The dashboard's buttons: cancel a job, rerun it (with more time or memory).

Plain HTML forms posting here, answered with a redirect to the job's page (303), so they
work without JavaScript. They need the submit scope; a cross-site post is refused by the
app's CrossSiteGuard (service/api/guards.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from service.api.deps import ServicesDep, SubmitAuth
from service.api.routes.jobs import JobId, _spec, job_or_404
from service.api.schemas import JobIn, OptionsIn
from service.errors import ServiceError, not_found
from service.store.jobs import Job

router = APIRouter(include_in_schema=False)


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


@router.post("/jobs/{job_id}/cancel")
def cancel(job_id: JobId, services: ServicesDep, who: SubmitAuth) -> RedirectResponse:
    if services.jobs.cancel(job_id, who.project_id) is None:
        raise not_found("job", job_id)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.post("/jobs/{job_id}/rerun")
def rerun(
    job_id: JobId,
    services: ServicesDep,
    who: SubmitAuth,
    timeout_s: Annotated[float | None, Form()] = None,
    memory_mb: Annotated[int | None, Form()] = None,
) -> RedirectResponse:
    """Submit the job again; a decided verdict on unchanged work comes from the cache."""
    try:
        body = rerun_body(job_or_404(services, job_id, who), timeout_s, memory_mb)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ServiceError(422, "Invalid request", detail, "invalid-request") from None
    new = services.jobs.submit(_spec(body, services, who.project_id))
    return RedirectResponse(f"/jobs/{new.id}", status_code=303)
