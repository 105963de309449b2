"""Jobs: submit (202), list, read, cancel, certificate."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from service.api.deps import Read, Services, ServicesDep, Submit
from service.api.schemas import JobIn, JobList, JobOut
from service.errors import ServiceError, invalid_input, not_found
from service.store.cache import cache_key, digest
from service.store.jobs import Job, JobSpec
from service.worker.engine import check_property, property_pointer
from verifiers.errors import ModelError, VerifierError
from verifiers.options import Options

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def _spec(body: JobIn, services: Services) -> JobSpec:
    info = services.artefacts.get(body.artefact)
    if info is None:
        raise ServiceError(
            404,
            "Not found",
            f"artefact {body.artefact} does not exist",
            "not-found",
            [{"pointer": "/artefact"}],
        )
    prop = body.property.payload()
    sub = body.subnetwork.model_dump(exclude_none=True) if body.subnetwork else None
    data = services.artefacts.data(body.artefact) if sub or info.kind == "module" else None
    try:
        check_property(prop, info.kind, info.meta, data, sub or None)
    except ModelError as exc:
        raise invalid_input(exc, "/subnetwork") from exc
    except VerifierError as exc:
        raise invalid_input(exc, property_pointer(prop)) from exc
    settings = services.settings
    timeout = body.options.timeout_s or settings.default_timeout_s
    options: dict[str, Any] = {
        "timeout_s": timeout,
        "memory_mb": body.options.memory_mb or settings.default_memory_mb,
        "seed": body.options.seed,
        "margin": body.options.margin,
    }
    key_opts = Options(timeout_s=timeout, seed=body.options.seed, margin=body.options.margin)
    prop_hash = digest(prop)
    return JobSpec(
        artefact=info.id,
        prop=prop,
        property_hash=prop_hash,
        subnetwork=sub or None,
        options=options,
        cache_key=cache_key(info.id, prop_hash, sub or None, key_opts.cache_key()),
        priority=body.priority,
        max_attempts=settings.max_attempts,
    )


def _job_or_404(services: Services, job_id: int) -> Job:
    job = services.jobs.get(job_id)
    if job is None:
        raise not_found("job", job_id)
    return job


@router.post("", status_code=202, response_model=JobOut, dependencies=[Submit])
def submit_job(body: JobIn, services: ServicesDep) -> JobOut:
    """Queue a job, or answer it at once from the stored result of identical work."""
    return JobOut.of(services.jobs.submit(_spec(body, services)))


@router.get("", response_model=JobList, dependencies=[Read])
def list_jobs(
    services: ServicesDep,
    status: str | None = None,
    verdict: str | None = None,
    artefact: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobList:
    jobs, total = services.jobs.list(
        status=status, verdict=verdict, artefact=artefact, limit=limit, offset=offset
    )
    return JobList(items=[JobOut.of(j) for j in jobs], total=total, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=JobOut, dependencies=[Read])
def get_job(job_id: int, services: ServicesDep) -> JobOut:
    return JobOut.of(_job_or_404(services, job_id))


@router.delete("/{job_id}", response_model=JobOut, dependencies=[Submit])
def cancel_job(job_id: int, services: ServicesDep) -> JobOut:
    """Cancel a queued or running job; a finished job is returned unchanged."""
    job = services.jobs.cancel(job_id)
    if job is None:
        raise not_found("job", job_id)
    return JobOut.of(job)


@router.get("/{job_id}/certificate", dependencies=[Read])
def get_certificate(job_id: int, services: ServicesDep) -> dict[str, Any]:
    job = _job_or_404(services, job_id)
    certificate = services.jobs.certificate(job_id)
    if certificate is None:
        raise ServiceError(
            404,
            "Not found",
            f"job {job_id} has no certificate (status {job.status.value}, verdict {job.verdict})",
            "no-certificate",
        )
    return certificate
