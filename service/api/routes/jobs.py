"""Jobs: submit (202), list, read, cancel, certificate."""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service.api.deps import ReadAuth, Services, ServicesDep, SubmitAuth
from service.api.schemas import JobIn, JobList, JobOut, problem_responses
from service.errors import ServiceError, invalid_input, not_found
from service.store.cache import cache_key, digest
from service.store.jobs import Job, JobSpec, ParsedSpec
from service.store.tokens import Principal
from service.worker.engine import (
    check_property,
    check_relative_path,
    property_pointer,
    system_files,
)
from service.worker.inspect import run_check
from verifiers.errors import ModelError, VerifierError
from verifiers.options import Options

router = APIRouter(
    prefix="/v1/jobs", tags=["jobs"], responses=problem_responses(401, 403, 404, 413, 422, 503)
)
# Job ids are 32-bit integer columns on PostgreSQL: anything beyond is a 422, never a 500.
MAX_ID = 2**31 - 1
JobId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _invalid(pointer: str, detail: str) -> ServiceError:
    return ServiceError(
        422, "Invalid request", detail, "invalid-request", [{"pointer": pointer, "detail": detail}]
    )


def _missing_artefact(artefact: str, pointer: str) -> ServiceError:
    return ServiceError(
        404, "Not found", f"artefact {artefact} does not exist", "not-found", [{"pointer": pointer}]
    )


def _sandboxed(services: Services, payload: dict[str, Any]) -> None:
    settings = services.settings
    run_check(payload, settings.inspect_memory_mb, settings.inspect_timeout_s)


def _model_job(
    body: JobIn, services: Services, project: int
) -> tuple[str, dict[str, Any], dict[str, Any] | None, ParsedSpec | None]:
    """An ONNX model or a module with its property: (artefact, property, subnetwork, the
    parsed property to store for the pages when it was parsed here)."""
    if body.artefact is None:
        raise _invalid("/artefact", "required (unless the property is a system)")
    if body.artefacts is not None:
        raise _invalid("/artefacts", "only a system property maps files to artefacts")
    info = services.artefacts.get(body.artefact, project)
    if info is None:
        raise _missing_artefact(body.artefact, "/artefact")
    prop = body.property.payload()
    sub = body.subnetwork.model_dump(exclude_none=True) if body.subnetwork else None
    parsed = None
    try:
        if sub or info.kind == "module":  # loads the model or parses the module: sandboxed
            data = services.artefacts.data(body.artefact)
            args = (prop, info.kind, info.meta, data, sub or None)
            _sandboxed(services, {"op": "property", "args": args})
        else:
            found = check_property(prop, info.kind, info.meta, None, None)
            sizes = (int(info.meta["n_inputs"]), int(info.meta["n_outputs"]))
            parsed = ParsedSpec(sizes, found.to_json())
    except ModelError as exc:
        raise invalid_input(exc, "/subnetwork") from exc
    except VerifierError as exc:
        raise invalid_input(exc, property_pointer(prop)) from exc
    return info.id, prop, sub or None, parsed


def _system_job(body: JobIn, services: Services, project: int) -> tuple[str, dict[str, Any]]:
    """A system and the artefact of every file it names: (listed artefact, property).

    The stored property holds both, so its hash (and the cache key) covers the system JSON
    and every file's sha256.
    """
    system = body.property.system or {}
    if body.subnetwork is not None:
        raise _invalid("/subnetwork", "a system names its own network inputs and outputs")
    mapping = body.artefacts or {}
    try:
        named = system_files(system)
    except VerifierError as exc:
        raise invalid_input(exc, _system_pointer(exc)) from exc
    for path in mapping:
        try:
            check_relative_path(path)
        except ValueError as exc:
            raise _invalid(f"/artefacts/{_escape(path)}", str(exc)) from exc
    infos = services.artefacts.many(list(mapping.values()), project)
    for path, artefact in mapping.items():
        if artefact not in infos:
            raise _missing_artefact(artefact, f"/artefacts/{_escape(path)}")
    for pointer, (path, expected) in named.items():
        if path not in mapping:
            raise _invalid(
                f"/property/system/{pointer}",
                f"'{path}' is not mapped to an artefact: add it to 'artefacts'",
            )
        kind = infos[mapping[path]].kind
        if kind != expected:
            raise _invalid(
                f"/property/system/{pointer}",
                f"'{path}' is mapped to a {kind} artefact; expected {expected}",
            )
    for path in mapping:
        if path not in {p for p, _ in named.values()}:
            raise _invalid(f"/artefacts/{_escape(path)}", f"the system names no file '{path}'")
    _check_layout(mapping)
    files = {path: services.artefacts.data(a) or b"" for path, a in mapping.items()}
    try:
        _sandboxed(services, {"op": "system", "system": system, "files": files})
    except VerifierError as exc:
        raise invalid_input(exc, _system_pointer(exc)) from exc
    if body.artefact is not None and body.artefact not in mapping.values():
        raise _invalid("/artefact", "must be one of the artefacts the system maps")
    listed = body.artefact or next(
        (a for a in mapping.values() if infos[a].kind == "onnx"), next(iter(mapping.values()))
    )
    return listed, {"system": system, "artefacts": dict(sorted(mapping.items()))}


def _check_layout(mapping: dict[str, str]) -> None:
    """Two names for one file must be the same artefact; a file is not also a folder."""
    seen: dict[tuple[str, ...], str] = {}
    for path, artefact in mapping.items():
        parts = check_relative_path(path).parts
        if seen.setdefault(parts, artefact) != artefact:
            raise _invalid(f"/artefacts/{_escape(path)}", f"'{path}' is mapped twice")
    for parts in seen:
        if any(parts[:n] in seen for n in range(1, len(parts))):
            path = "/".join(parts)
            raise _invalid(f"/artefacts/{_escape(path)}", f"'{path}' is below another file")


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _system_pointer(exc: VerifierError) -> str:
    field = getattr(exc, "field", None)
    return "/property/system" + (f"/{field.replace('.', '/')}" if field else "")


def _spec(body: JobIn, services: Services, project: int) -> JobSpec:
    parsed = None
    if body.property.system is not None:
        artefact, prop = _system_job(body, services, project)
        sub = None
    else:
        artefact, prop, sub, parsed = _model_job(body, services, project)
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
    # A system's property holds every file's sha256; the artefact it is listed under is no work.
    key_artefact = "system" if "system" in prop else artefact
    # Results are shared within a project only (another project's cache hit would tell it
    # that someone else checked the same model).
    key = {**key_opts.cache_key(), "project": project}
    return JobSpec(
        artefact=artefact,
        prop=prop,
        property_hash=prop_hash,
        subnetwork=sub,
        options=options,
        cache_key=cache_key(key_artefact, prop_hash, sub, key),
        priority=body.priority,
        max_attempts=settings.max_attempts,
        project_id=project,
        parsed=parsed,
    )


def job_or_404(services: Services, job_id: int, who: Principal) -> Job:
    """The job if it belongs to the caller's project; another project's job is a 404."""
    job = services.jobs.get(job_id, who.project_id)
    if job is None:
        raise not_found("job", job_id)
    return job


def _json(model: BaseModel, status: int = 200) -> Response:
    """The model as JSON, serialised once by pydantic: a returned Response skips FastAPI's
    second validation and encoding of the model (a tenth of a submission's API time under
    load). The routes' ``response_model`` still documents it."""
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")


# A property up to this size is parsed on the event loop when nothing else would block it.
INLINE_PROPERTY_CHARS = 16_384


def _quick(body: JobIn, services: Services, project: int) -> bool:
    """Whether the job's spec is made without blocking: a VNN-LIB property of an ONNX
    model this process has read already (a module or a subnetwork is checked in a sandbox
    process, a system's files are read from the database)."""
    if body.subnetwork is not None or body.property.vnnlib is None or body.artefact is None:
        return False
    info = services.artefacts.known(body.artefact, project)
    return (
        info is not None
        and info.kind == "onnx"
        and len(body.property.vnnlib) <= INLINE_PROPERTY_CHARS
    )


@router.post("", status_code=202, response_model=JobOut)
async def submit_job(body: JobIn, services: ServicesDep, who: SubmitAuth) -> Response:
    """Queue a job; or answer it at once from the stored result of identical work; or
    return the identical job already queued or running."""
    project = who.project_id
    artefact = body.artefact
    if artefact is not None and services.artefacts.known(artefact, project) is None:
        # First use in this process: one read for a burst on the same model, not one each.
        read = functools.partial(services.artefacts.get, artefact, project)
        await services.artefact_reads.run((artefact, project), read)
    if _quick(body, services, project):  # no thread-pool round trip on the common path
        spec = _spec(body, services, project)
    else:
        spec = await run_in_threadpool(_spec, body, services, project)
    return _json(JobOut.of(await services.submissions.submit(spec)), 202)


# `ids`: up to MAX_IDS job ids, comma-separated (a client polling its jobs in one request).
MAX_IDS = 100
IDS_PATTERN = rf"^[0-9]{{1,10}}(,[0-9]{{1,10}}){{0,{MAX_IDS - 1}}}$"


@router.get("", response_model=JobList)
async def list_jobs(
    services: ServicesDep,
    who: ReadAuth,
    status: Annotated[str | None, Query(max_length=16)] = None,
    verdict: Annotated[str | None, Query(max_length=16)] = None,
    artefact: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    ids: Annotated[str | None, Query(max_length=11 * MAX_IDS, pattern=IDS_PATTERN)] = None,
) -> Response:
    """The project's jobs, newest first, filtered; or, with `ids`, those of the listed jobs
    that exist (by id; unknown ids and other projects' jobs are left out, as a 404 would)."""
    if ids is not None:
        jobs = await services.reads.get_many(_job_ids(ids), project=who.project_id)
        return _json(
            JobList(items=[JobOut.of(j) for j in jobs], total=len(jobs), limit=MAX_IDS, offset=0)
        )
    listing = functools.partial(
        _listing, services, who.project_id, status, verdict, artefact, limit, offset
    )
    return await run_in_threadpool(listing)  # a page of up to 500 jobs: off the event loop


def _listing(
    services: Services,
    project: int,
    status: str | None,
    verdict: str | None,
    artefact: str | None,
    limit: int,
    offset: int,
) -> Response:
    jobs, total = services.jobs.list(
        status=status,
        verdict=verdict,
        artefact=artefact,
        limit=limit,
        offset=offset,
        project=project,
    )
    items = [JobOut.of(j) for j in jobs]
    return _json(JobList(items=items, total=total, limit=limit, offset=offset))


def _job_ids(ids: str) -> list[int]:
    values = [int(v) for v in ids.split(",")]
    if max(values) > MAX_ID or min(values) < 1:
        raise ServiceError(
            422,
            "Invalid request",
            f"ids must be job ids (integers from 1 to {MAX_ID})",
            "invalid-request",
            [{"pointer": "/ids", "detail": "not a job id"}],
        )
    return values


@router.get("/{job_id}", response_model=JobOut)
async def get_job(job_id: JobId, services: ServicesDep, who: ReadAuth) -> Response:
    # A poll: read with the other polls in flight (no request thread of its own).
    job = await services.reads.get(job_id, who.project_id)
    if job is None:
        raise not_found("job", job_id)
    return _json(JobOut.of(job))


@router.delete("/{job_id}", response_model=JobOut)
def cancel_job(job_id: JobId, services: ServicesDep, who: SubmitAuth) -> JobOut:
    """Cancel a queued or running job; a finished job is returned unchanged."""
    job = services.jobs.cancel(job_id, who.project_id)
    if job is None:
        raise not_found("job", job_id)
    return JobOut.of(job)


@router.get("/{job_id}/certificate")
def get_certificate(job_id: JobId, services: ServicesDep, who: ReadAuth) -> dict[str, Any]:
    job = job_or_404(services, job_id, who)
    certificate = services.jobs.certificate(job_id, who.project_id)
    if certificate is None:
        raise ServiceError(
            404,
            "Not found",
            f"job {job_id} has no certificate (status {job.status.value}, verdict {job.verdict})",
            "no-certificate",
        )
    return certificate
