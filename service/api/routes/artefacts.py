"""POST /v1/artefacts: upload under a size limit, check the model's budget, load it in a
limited child, store it for the project."""

from __future__ import annotations

import hashlib
import tempfile
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from service.api.deps import ReadAuth, ServicesDep, SubmitAuth
from service.api.schemas import ArtefactOut, problem_responses
from service.budget import Budget, check_model
from service.config import Settings
from service.errors import ServiceError, invalid_input, not_found, too_large
from service.worker.engine import detect_kind
from service.worker.inspect import run_check
from verifiers.errors import VerifierError

router = APIRouter(
    prefix="/v1/artefacts",
    tags=["artefacts"],
    responses=problem_responses(401, 403, 404, 413, 422, 503),
)
ArtefactId = Annotated[str, Path(min_length=1, max_length=64, pattern="^[0-9a-f]+$")]
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


def _check_upload(data: bytes, settings: Settings) -> tuple[str, dict[str, Any]]:
    """Refuse what declares too much, then load it in a limited child: (kind, meta)."""
    if detect_kind(data) == "onnx":
        check_model(data, budget_of(settings))
    value = run_check(
        {"op": "artefact", "data": data}, settings.inspect_memory_mb, settings.inspect_timeout_s
    )
    return value["kind"], value["meta"]


def budget_of(settings: Settings) -> Budget:
    return Budget(settings.max_tensor_elements, settings.max_io_elements, settings.max_nodes)


@router.post(
    "",
    status_code=201,
    response_model=ArtefactOut,
    openapi_extra=UPLOAD_DOC,
    responses={200: {"model": ArtefactOut}},
)
async def upload_artefact(
    request: Request, response: Response, services: ServicesDep, who: SubmitAuth
) -> ArtefactOut:
    """Store an ONNX model or module source: 201 when new to the project, 200 when known."""
    limit = services.settings.max_upload_bytes
    try:
        async with request.form(max_files=1, max_fields=4) as form:
            upload = _file_field(form)
            data, sha = await _read_limited(upload, limit)
            filename = (upload.filename or "")[:255] or None
    except HTTPException as exc:  # starlette's multipart parser: malformed form data
        if exc.status_code != 400:
            raise
        raise ServiceError(
            422,
            "Invalid request",
            f"the multipart body is malformed: {exc.detail}",
            "invalid-request",
            [{"pointer": "/", "detail": str(exc.detail)}],
        ) from exc
    stored = await run_in_threadpool(services.artefacts.get, sha)
    if stored is None:
        try:
            kind, meta = await run_in_threadpool(_check_upload, data, services.settings)
        except VerifierError as exc:
            raise invalid_input(exc, "/file") from exc
        info, created = await run_in_threadpool(
            services.artefacts.put, sha, kind, data, filename, meta, who.project_id
        )
    else:
        info, created = await run_in_threadpool(
            services.artefacts.link, sha, filename, who.project_id
        )
    response.status_code = 201 if created else 200
    return ArtefactOut.of(info)


@router.get("/{artefact_id}", response_model=ArtefactOut)
def get_artefact(artefact_id: ArtefactId, services: ServicesDep, who: ReadAuth) -> ArtefactOut:
    info = services.artefacts.get(artefact_id, who.project_id)
    if info is None:
        raise not_found("artefact", artefact_id)
    return ArtefactOut.of(info)
