"""POST /v1/artefacts: upload, stream to a temp file under a size limit, validate, store."""

from __future__ import annotations

import hashlib
import tempfile
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from service.api.deps import Read, ServicesDep, Submit
from service.api.schemas import ArtefactOut
from service.errors import ServiceError, invalid_input, not_found, too_large
from service.worker.engine import inspect_artefact
from verifiers.errors import VerifierError

router = APIRouter(prefix="/v1/artefacts", tags=["artefacts"])
CHUNK = 1024 * 1024

UPLOAD_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


async def _read_limited(upload: UploadFile, limit: int) -> tuple[bytes, str]:
    """Copy the upload to a temp file chunk by chunk, hashing; 413 past the limit."""
    digest, size = hashlib.sha256(), 0
    with tempfile.TemporaryFile() as tmp:
        while chunk := await upload.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            digest.update(chunk)
            tmp.write(chunk)
        tmp.seek(0)
        return tmp.read(), digest.hexdigest()


def _check_declared_size(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise too_large(limit)


def _file_field(form: FormData) -> UploadFile:
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ServiceError(
            422,
            "Invalid request",
            "a multipart field 'file' is required",
            "invalid-request",
            [{"pointer": "/file", "detail": "missing"}],
        )
    return upload


@router.post(
    "",
    status_code=201,
    response_model=ArtefactOut,
    openapi_extra=UPLOAD_DOC,
    dependencies=[Submit],
    responses={200: {"model": ArtefactOut}},
)
async def upload_artefact(
    request: Request, response: Response, services: ServicesDep
) -> ArtefactOut:
    """Store an ONNX model or module source: 201 when new, 200 when the bytes are known."""
    limit = services.settings.max_upload_bytes
    _check_declared_size(request, limit)
    async with request.form(max_files=1, max_fields=4) as form:
        upload = _file_field(form)
        data, sha = await _read_limited(upload, limit)
        filename = upload.filename
    existing = await run_in_threadpool(services.artefacts.get, sha)
    if existing is not None:
        response.status_code = 200
        return ArtefactOut.of(existing)
    try:
        kind, meta = await run_in_threadpool(inspect_artefact, data)
    except VerifierError as exc:
        raise invalid_input(exc, "/file") from exc
    info, created = await run_in_threadpool(services.artefacts.put, sha, kind, data, filename, meta)
    response.status_code = 201 if created else 200
    return ArtefactOut.of(info)


@router.get("/{artefact_id}", response_model=ArtefactOut, dependencies=[Read])
def get_artefact(artefact_id: str, services: ServicesDep) -> ArtefactOut:
    info = services.artefacts.get(artefact_id)
    if info is None:
        raise not_found("artefact", artefact_id)
    return ArtefactOut.of(info)
