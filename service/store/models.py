"""Table models (SQLAlchemy 2, typed). API schemas live apart, in service/api/schemas.py.

Timestamps are naive UTC, computed by the service (not the database) so SQLite and
PostgreSQL behave alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, MetaData, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, bytes: LargeBinary}


# Open mode and data from before projects existed belong to this project (made by migration 0002).
DEFAULT_PROJECT_ID = 1
DEFAULT_PROJECT = "default"


class Project(Base):
    """A team's space: its tokens, artefacts and jobs are invisible to other projects."""

    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A bearer token: ``pw_<id>_<secret>``; only an argon2 hash of the secret is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[str] = mapped_column(String(64))  # comma-separated, sorted
    secret_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class ProjectArtefact(Base):
    """An artefact as one project uploaded it (the bytes are shared, the name is not)."""

    __tablename__ = "project_artefacts"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    artefact_id: Mapped[str] = mapped_column(ForeignKey("artefacts.id"), primary_key=True)
    filename: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Artefact(Base):
    """An uploaded ONNX model or module source, addressed by the sha256 of its bytes."""

    __tablename__ = "artefacts"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    size: Mapped[int]
    filename: Mapped[str | None] = mapped_column(String(255))
    # Bytes live in the database so a worker on another host needs only DATABASE_URL.
    data: Mapped[bytes]
    meta: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ParsedProperty(Base):
    """A property as parsed at submission (``Property.to_json()``), for the pages that show
    it: they read it back instead of parsing the source again."""

    __tablename__ = "parsed_properties"
    # The property's digest and the model sizes it was parsed for (a preset depends on them).
    key: Mapped[str] = mapped_column(String(96), primary_key=True)
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ResultRow(Base):
    """What the engine returned; cached jobs share the row of the job that computed it."""

    __tablename__ = "results"
    id: Mapped[int] = mapped_column(primary_key=True)
    cache_key: Mapped[str] = mapped_column(String(64), index=True)
    verdict: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    counterexample: Mapped[dict[str, Any] | None]
    certificate: Mapped[dict[str, Any] | None]
    stats: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_claim", "status", "priority", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    # No foreign key: SQLite cannot add one without rebuilding `jobs`, and a rebuild would
    # cascade-delete every job_events row. Projects are never deleted.
    project_id: Mapped[int] = mapped_column(
        index=True, server_default=text(str(DEFAULT_PROJECT_ID))
    )
    artefact_id: Mapped[str] = mapped_column(ForeignKey("artefacts.id"), index=True)
    prop: Mapped[dict[str, Any]]
    property_hash: Mapped[str] = mapped_column(String(64))
    subnetwork: Mapped[dict[str, Any] | None]
    options: Mapped[dict[str, Any]]
    cache_key: Mapped[str] = mapped_column(String(64))
    # The cache key while queued or running, else NULL: identical in-flight work is one job.
    inflight_key: Mapped[str | None] = mapped_column(String(64), index=True, unique=True)
    priority: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    worker_id: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None]
    progress: Mapped[dict[str, Any] | None]
    cached: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str | None] = mapped_column(Text)
    result_id: Mapped[int | None] = mapped_column(ForeignKey("results.id"))
    seconds: Mapped[float | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class JobEvent(Base):
    """One row per status change and per (throttled) progress report of a job."""

    __tablename__ = "job_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WorkerRow(Base):
    """A worker process and its last heartbeat."""

    __tablename__ = "workers"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    concurrency: Mapped[int]
    running: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None]
