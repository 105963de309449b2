"""Files of a job to download: counterexample JSON, VNN-COMP result, property, model bytes."""

from __future__ import annotations

import json

from fastapi import APIRouter
from fastapi.responses import Response

from service.api.deps import ReadAuth, ServicesDep
from service.api.routes.jobs import JobId, job_or_404
from service.api.schemas import problem_responses
from service.errors import ServiceError, not_found
from service.job_files import counterexample_document, property_file, vnncomp_result

router = APIRouter(tags=["downloads"], responses=problem_responses(401, 403, 404, 413, 422, 503))


def _file(*media_types: str) -> dict[int | str, dict[str, object]]:
    return {200: {"content": {m: {} for m in media_types}, "description": "The file"}}


def _attachment(body: str | bytes, media_type: str, filename: str) -> Response:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename) or "download"
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{safe}"'},
    )


@router.get("/v1/jobs/{job_id}/counterexample", responses=_file("application/json"))
def counterexample(job_id: JobId, services: ServicesDep, who: ReadAuth) -> Response:
    """The counterexample of a violated job, with the job, model and stats it belongs to."""
    job = job_or_404(services, job_id, who)
    info = services.artefacts.get(job.artefact, who.project_id)
    document = counterexample_document(job, info.filename if info and info.filename else "")
    if document is None:
        raise ServiceError(
            404,
            "Not found",
            f"job {job_id} has no counterexample (status {job.status.value}, verdict {job.verdict})",
            "no-counterexample",
        )
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    return _attachment(text, "application/json", f"job-{job_id}-counterexample.json")


@router.get("/v1/jobs/{job_id}/vnncomp-result", responses=_file("text/plain"))
def vnncomp(job_id: JobId, services: ServicesDep, who: ReadAuth) -> Response:
    """The VNN-COMP result file (unsat, sat with the assignment, timeout, unknown, error)."""
    job = job_or_404(services, job_id, who)
    return _attachment(vnncomp_result(job), "text/plain", f"job-{job_id}-result.txt")


@router.get("/v1/jobs/{job_id}/property", responses=_file("text/plain", "application/json"))
def job_property(job_id: JobId, services: ServicesDep, who: ReadAuth) -> Response:
    """The property as it was submitted (VNN-LIB text, or the preset, SPEC or SYSTEM JSON)."""
    found = property_file(job_or_404(services, job_id, who))
    if found is None:
        raise not_found("property of job", job_id)
    name, media_type, text = found
    return _attachment(text, media_type, name)


@router.get("/v1/artefacts/{artefact_id}/file", responses=_file("application/octet-stream"))
def artefact_file(artefact_id: str, services: ServicesDep, who: ReadAuth) -> Response:
    """An artefact's bytes (the model or module as uploaded), under its uploaded name; only
    a project that uploaded them may read them."""
    info = services.artefacts.get(artefact_id[:64], who.project_id)
    data = services.artefacts.data(artefact_id) if info is not None else None
    if info is None or data is None:
        raise not_found("artefact", artefact_id)
    name = info.filename or f"{artefact_id[:12]}.{'onnx' if info.kind == 'onnx' else 'py'}"
    return _attachment(data, "application/octet-stream", name)
