"""Searching jobs for the dashboard's list: text, status, verdict, model, property, reason
and submission dates, newest first, with the total for paging."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, cast, func, or_, select

from service.store.db import Database
from service.store.job_records import Job, in_project, job_of, joined
from service.store.models import JobRow, ProjectArtefact, ResultRow


@dataclass(frozen=True)
class JobQuery:
    text: str | None = None  # in the model's file name, the property, the reason, or the id
    status: str | None = None
    verdict: str | None = None
    artefact: str | None = None
    property_hash: str | None = None
    reason: str | None = None  # a part of the reason (timeout, memory, cancelled, ...)
    since: datetime | None = None
    until: datetime | None = None
    project: int | None = None  # the caller's project (None: every project)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _where(stmt, q: JobQuery):  # type: ignore[no-untyped-def]
    stmt = in_project(stmt, q.project)
    if q.status:
        stmt = stmt.where(JobRow.status == q.status)
    if q.verdict:
        stmt = stmt.where(ResultRow.verdict == q.verdict)
    if q.artefact:
        stmt = stmt.where(JobRow.artefact_id == q.artefact)
    if q.property_hash:
        stmt = stmt.where(JobRow.property_hash == q.property_hash)
    reason = func.coalesce(JobRow.reason, ResultRow.reason, "")
    if q.reason:
        stmt = stmt.where(reason.ilike(_like(q.reason), escape="\\"))
    if q.since:
        stmt = stmt.where(JobRow.created_at >= q.since)
    if q.until:
        stmt = stmt.where(JobRow.created_at < q.until)
    if q.text:
        pattern = _like(q.text)
        # The file name a project gave the model (each project names its own uploads).
        named = select(ProjectArtefact.artefact_id).where(
            ProjectArtefact.project_id == JobRow.project_id,
            ProjectArtefact.filename.ilike(pattern, escape="\\"),
        )
        matches = [
            JobRow.artefact_id.in_(named),
            JobRow.artefact_id.ilike(pattern, escape="\\"),
            cast(JobRow.prop, String).ilike(pattern, escape="\\"),
            reason.ilike(pattern, escape="\\"),
        ]
        if q.text.strip().lstrip("#").isdigit():
            matches.append(JobRow.id == int(q.text.strip().lstrip("#")))
        stmt = stmt.where(or_(*matches))
    return stmt


def search(db: Database, q: JobQuery, limit: int = 25, offset: int = 0) -> tuple[list[Job], int]:
    stmt = _where(joined(), q)
    with db.session() as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = s.execute(stmt.order_by(JobRow.id.desc()).limit(limit).offset(offset))
        return [job_of(*r) for r in rows], total


def recent_properties(
    db: Database, limit: int = 100, project: int | None = None
) -> list[tuple[str, dict]]:
    """(property hash, property) of the most recently used properties, newest first."""
    newest = (
        in_project(select(JobRow.property_hash, func.max(JobRow.id).label("last")), project)
        .group_by(JobRow.property_hash)
        .subquery()
    )
    stmt = (
        select(JobRow.property_hash, JobRow.prop)
        .join(newest, JobRow.id == newest.c.last)
        .order_by(JobRow.id.desc())
        .limit(limit)
    )
    with db.session() as s:
        return [(h, p) for h, p in s.execute(stmt)]
