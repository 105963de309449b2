"""Request and response bodies (pydantic), kept apart from the table models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from service.store.artefacts import ArtefactInfo
from service.store.job_records import Job, JobSummary


class ArtefactOut(BaseModel):
    id: str
    kind: str
    size: int
    filename: str | None = None
    meta: dict[str, Any] = {}

    @classmethod
    def of(cls, info: ArtefactInfo) -> ArtefactOut:
        return cls(
            id=info.id, kind=info.kind, size=info.size, filename=info.filename, meta=info.meta
        )


# JSON objects in a property nest at most this deep (a SYSTEM is 4 or 5 levels).
MAX_DEPTH = 32
MAX_FILES = 256
Path = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
ArtefactRef = Annotated[str, StringConstraints(min_length=1, max_length=64)]
TensorName = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


def _depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply ``value`` nests (stops counting past ``limit``)."""
    if limit <= 0 or not isinstance(value, dict | list):
        return 0
    items = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(v, limit - 1) for v in items), default=0)


class PropertyIn(BaseModel):
    """Exactly one of: VNN-LIB text, a JSON preset, a module SPEC object, or a SYSTEM object
    (whose files are mapped to artefacts by the job's ``artefacts``)."""

    model_config = ConfigDict(extra="forbid")
    vnnlib: str | None = None
    preset: dict[str, Any] | None = None
    spec: dict[str, Any] | None = None
    system: dict[str, Any] | None = None

    @field_validator("preset", "spec", "system")
    @classmethod
    def _shallow(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and _depth(value, MAX_DEPTH + 1) > MAX_DEPTH:
            raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> PropertyIn:
        given = [k for k in ("vnnlib", "preset", "spec", "system") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'vnnlib', 'preset', 'spec' or 'system'")
        return self

    def payload(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class SubnetworkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[TensorName] | None = Field(default=None, max_length=64)
    outputs: list[TensorName] | None = Field(default=None, max_length=64)


class OptionsIn(BaseModel):
    # Finite numbers only: Infinity and NaN (which Python's JSON reader accepts) are a 422.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    memory_mb: int | None = Field(default=None, ge=16, le=1024 * 1024)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    margin: float = Field(default=0.0, ge=0, le=1e6)


class JobIn(BaseModel):
    """A model (``artefact``) and its property; or a system (``property.system``) with the
    artefact of every file it names (``artefacts``: path as written -> artefact id), where
    ``artefact``, if given, is one of them (the job is listed under it)."""

    model_config = ConfigDict(extra="forbid")
    artefact: str | None = Field(default=None, min_length=1, max_length=64)
    artefacts: dict[Path, ArtefactRef] | None = Field(default=None, max_length=MAX_FILES)
    property: PropertyIn
    subnetwork: SubnetworkIn | None = None
    options: OptionsIn = OptionsIn()
    priority: int = Field(default=0, ge=-1000, le=1000)


class JobOut(BaseModel):
    id: str
    status: str
    verdict: str | None
    counterexample: dict[str, Any] | None
    stats: dict[str, Any] | None
    progress: dict[str, Any] | None
    cached: bool
    reason: str | None
    artefact: str
    attempts: int
    options: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Job | JobSummary) -> JobOut:
        return cls(
            id=str(job.id),
            status=job.status.value,
            verdict=job.verdict,
            counterexample=job.counterexample,
            stats=job.stats,
            progress=job.progress,
            cached=job.cached,
            reason=job.reason,
            artefact=job.artefact,
            attempts=job.attempts,
            options=job.options,
            created_at=_utc(job.created_at),
            started_at=_utc(job.started_at),
            finished_at=_utc(job.finished_at),
        )


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None else None


class JobList(BaseModel):
    items: list[JobOut]
    total: int
    limit: int
    offset: int


class Health(BaseModel):
    status: str
    database: str
    workers_seen: int


class ProblemError(BaseModel):
    pointer: str
    detail: str | None = None


class Problem(BaseModel):
    """An RFC 9457 problem: every error the API returns has this shape."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[dict[str, Any]] | None = None


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem+json answers a route may give."""
    why = {
        401: "No valid token",
        403: "The token lacks the scope, or the request is cross-site",
        404: "Not found (or another project's)",
        413: "The body is over the limit",
        422: "Invalid input (with a JSON pointer to it)",
        503: "The database is unavailable (see Retry-After)",
    }
    schema = Problem.model_json_schema()
    return {
        code: {
            "description": why[code],
            "content": {"application/problem+json": {"schema": schema}},
        }
        for code in codes
    }
