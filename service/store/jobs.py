"""All SQL about jobs: submit, read, cancel, claim, heartbeat, finish, reclaim, events.

Every status change writes a ``job_events`` row in the same transaction. Finishing checks
that the job is still running under the finishing worker, so a job is never done twice.
On PostgreSQL claims lock with ``FOR UPDATE SKIP LOCKED``; on SQLite the write lock taken
by ``BEGIN IMMEDIATE`` (see db.py) serialises them. Submission SQL is in submissions.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.queue.states import TERMINAL, EventKind, Status
from service.store.db import Database
from service.store.job_records import (
    Event,
    Job,
    JobSpec,
    JobSummary,
    ParsedSpec,
    add_event,
    in_project,
    job_columns,
    job_of,
    job_of_columns,
    joined,
    move,
    summary_columns,
    summary_of,
)
from service.store.models import JobEvent, JobRow, ResultRow, utcnow
from service.store.submissions import insert_new, submit_one

__all__ = ["Event", "Job", "JobSpec", "JobStore", "ParsedSpec"]


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- the API side ------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> Job:
        """A queued job; one already done from the stored result of identical work; or the
        identical job already queued or running (one job per identical in-flight work)."""
        if not self.db.sqlite:  # the common case in one statement and one round trip
            with self.db.statement() as conn:
                job = insert_new(conn, spec)
            if job is not None:
                return job
        try:
            with self.db.session() as s:
                return submit_one(s, spec)
        except IntegrityError:  # an identical job was queued concurrently: attach to it
            with self.db.session() as s:
                return submit_one(s, spec)

    def get(self, job_id: int, project: int | None = None) -> Job | None:
        """The job, if it exists (and belongs to ``project`` when one is given)."""
        found = self.get_many([job_id], project)
        return found[0] if found else None

    def get_many(self, job_ids: Sequence[int], project: int | None = None) -> list[Job]:
        """Those of the jobs that exist (and belong to ``project`` when one is given), by id:
        one read for a client that polls many jobs, as ``proofwell gate --server`` does."""
        stmt = in_project(job_columns().where(JobRow.id.in_(job_ids)), project)
        with self.db.reading() as s:
            rows = s.connection().execute(stmt.order_by(JobRow.id))
            return [job_of_columns(r) for r in rows]

    def summaries(self, job_ids: Sequence[int]) -> list[JobSummary]:
        """What polls of these jobs answer, of every project (each poll keeps its own), by
        id: those that exist."""
        stmt = summary_columns().where(JobRow.id.in_(job_ids)).order_by(JobRow.id)
        with self.db.reading() as s:
            return [summary_of(r) for r in s.connection().execute(stmt).all()]

    def certificate(self, job_id: int, project: int | None = None) -> dict[str, Any] | None:
        with self.db.session() as s:
            stmt = select(ResultRow.certificate).join(JobRow, JobRow.result_id == ResultRow.id)
            return s.scalars(in_project(stmt.where(JobRow.id == job_id), project)).first()

    def list(
        self,
        *,
        status: str | None = None,
        verdict: str | None = None,
        artefact: str | None = None,
        limit: int = 50,
        offset: int = 0,
        project: int | None = None,
    ) -> tuple[list[Job], int]:
        stmt = in_project(joined(), project)
        if status:
            stmt = stmt.where(JobRow.status == status)
        if verdict:
            stmt = stmt.where(ResultRow.verdict == verdict)
        if artefact:
            stmt = stmt.where(JobRow.artefact_id == artefact)
        with self.db.session() as s:
            total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
            rows = s.execute(stmt.order_by(JobRow.id.desc()).limit(limit).offset(offset))
            return [job_of(*r) for r in rows], total

    def cancel(self, job_id: int, project: int | None = None) -> Job | None:
        """Cancel a queued or running job (its worker notices at its next poll)."""
        with self.db.session() as s:
            row = s.get(JobRow, job_id, with_for_update=True)
            if row is None or (project is not None and row.project_id != project):
                return None
            if Status(row.status) not in TERMINAL:
                move(s, row, Status.CANCELLED, "cancelled by request")
            res = s.get(ResultRow, row.result_id) if row.result_id else None
            return job_of(row, res)

    def events_after(self, job_id: int, after: int = 0, limit: int = 200) -> list[Event]:
        with self.db.reading() as s:
            rows = s.scalars(
                select(JobEvent)
                .where(JobEvent.job_id == job_id, JobEvent.id > after)
                .order_by(JobEvent.id)
                .limit(limit)
            )
            return [Event(e.id, e.job_id, EventKind(e.kind), e.data, e.created_at) for e in rows]

    def events_of(self, job_ids: list[int], after: int = 0, limit: int = 1000) -> list[Event]:
        """Events of any of ``job_ids`` after event id ``after``, oldest first."""
        with self.db.reading() as s:
            rows = s.scalars(
                select(JobEvent)
                .where(JobEvent.job_id.in_(job_ids), JobEvent.id > after)
                .order_by(JobEvent.id)
                .limit(limit)
            )
            return [Event(e.id, e.job_id, EventKind(e.kind), e.data, e.created_at) for e in rows]

    def status_counts(self, project: int | None = None) -> dict[str, int]:
        stmt = in_project(select(JobRow.status, func.count()), project)
        with self.db.session() as s:
            rows = s.execute(stmt.group_by(JobRow.status))
            return {status: n for status, n in rows}

    def finished_seconds(self) -> list[float]:
        with self.db.session() as s:
            stmt = select(JobRow.seconds).where(JobRow.seconds.is_not(None), ~JobRow.cached)
            return [float(x) for x in s.scalars(stmt)]

    def verdict_counts(self, project: int | None = None) -> dict[str, int]:
        """Finished jobs by verdict (a cached job counts like the job it reuses)."""
        with self.db.session() as s:
            stmt = in_project(
                select(ResultRow.verdict, func.count()).join(
                    JobRow, JobRow.result_id == ResultRow.id
                ),
                project,
            ).group_by(ResultRow.verdict)
            return {verdict: n for verdict, n in s.execute(stmt)}

    def latest_per_property(
        self, artefacts: list[str] | None = None, project: int | None = None
    ) -> list[Job]:
        """The newest job of each (artefact, property) pair, optionally for some artefacts."""
        newest = in_project(select(func.max(JobRow.id)), project).group_by(
            JobRow.artefact_id, JobRow.property_hash
        )
        if artefacts is not None:
            newest = newest.where(JobRow.artefact_id.in_(artefacts))
        with self.db.session() as s:
            rows = s.execute(joined().where(JobRow.id.in_(newest)).order_by(JobRow.id.desc()))
            return [job_of(*r) for r in rows]

    def history(
        self, artefacts: list[str], limit: int = 2000, project: int | None = None
    ) -> list[Job]:
        """Jobs on these artefacts, oldest first (the newest ``limit`` of them)."""
        stmt = in_project(joined().where(JobRow.artefact_id.in_(artefacts)), project)
        with self.db.session() as s:
            rows = s.execute(stmt.order_by(JobRow.id.desc()).limit(limit))
            return [job_of(*r) for r in reversed(rows.all())]

    # -- the worker side ---------------------------------------------------------------
    def claim(self, worker_id: str, lease_s: float) -> Job | None:
        """Take the next queued job (highest priority, then oldest) under a lease."""
        with self.db.session() as s:
            row = s.scalars(
                select(JobRow)
                .where(JobRow.status == Status.QUEUED.value)
                .order_by(JobRow.priority.desc(), JobRow.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return None
            now = utcnow()
            row.worker_id, row.attempts = worker_id, row.attempts + 1
            row.lease_expires_at = now + timedelta(seconds=lease_s)
            row.started_at = now
            move(s, row, Status.RUNNING)
            return job_of(row, None)

    def heartbeat(self, worker_id: str, job_ids: list[int], lease_s: float) -> set[int]:
        """Renew the leases; return the ids still held (the others were cancelled or lost)."""
        if not job_ids:
            return set()
        held = (
            JobRow.id.in_(job_ids),
            JobRow.worker_id == worker_id,
            JobRow.status == Status.RUNNING.value,
        )
        with self.db.session() as s:
            expires = utcnow() + timedelta(seconds=lease_s)
            s.execute(update(JobRow).where(*held).values(lease_expires_at=expires))
            return set(s.scalars(select(JobRow.id).where(*held)))

    def held(self, worker_id: str, job_ids: list[int]) -> set[int]:
        """The ids among ``job_ids`` still running under this worker (read only)."""
        with self.db.session() as s:
            return set(
                s.scalars(
                    select(JobRow.id).where(
                        JobRow.id.in_(job_ids),
                        JobRow.worker_id == worker_id,
                        JobRow.status == Status.RUNNING.value,
                    )
                )
            )

    def _held(self, s: Session, job_id: int, worker_id: str) -> JobRow | None:
        return s.scalars(
            select(JobRow)
            .where(
                JobRow.id == job_id,
                JobRow.worker_id == worker_id,
                JobRow.status == Status.RUNNING.value,
            )
            .with_for_update()
        ).first()

    def finish(
        self,
        job_id: int,
        worker_id: str,
        result: dict[str, Any],
        seconds: float,
        adopt: bool = False,
    ) -> bool:
        """Store the result and mark the job done, if this worker still holds it; with
        ``adopt`` also if its lease ran out meanwhile (a database outage) and no other worker
        has claimed it yet: the work is done, so it is not run again."""
        with self.db.session() as s:
            row = self._held(s, job_id, worker_id)
            if row is None and adopt:
                row = s.scalars(
                    select(JobRow)
                    .where(
                        JobRow.id == job_id,
                        JobRow.status == Status.QUEUED.value,
                        JobRow.worker_id.is_(None),
                    )
                    .with_for_update()
                ).first()
            if row is None:
                return False
            res = ResultRow(
                cache_key=row.cache_key,
                verdict=result["verdict"],
                reason=result.get("reason"),
                counterexample=result.get("counterexample"),
                certificate=result.get("certificate"),
                stats=result.get("stats") or {},
                created_at=utcnow(),
            )
            s.add(res)
            s.flush()
            row.result_id, row.seconds = res.id, seconds
            move(s, row, Status.DONE)
            return True

    def fail(self, job_id: int, worker_id: str, reason: str) -> bool:
        with self.db.session() as s:
            row = self._held(s, job_id, worker_id)
            if row is not None:
                move(s, row, Status.FAILED, reason)
            return row is not None

    def release(self, job_id: int, worker_id: str, reason: str) -> bool:
        """Give a running job back to the queue; the attempt does not count."""
        with self.db.session() as s:
            row = self._held(s, job_id, worker_id)
            if row is None:
                return False
            row.worker_id, row.lease_expires_at = None, None
            row.attempts = max(0, row.attempts - 1)
            move(s, row, Status.QUEUED, reason)
            return True

    def progress(self, job_id: int, worker_id: str, progress: dict[str, Any]) -> bool:
        with self.db.session() as s:
            row = self._held(s, job_id, worker_id)
            if row is not None:
                row.progress = progress
                add_event(s, job_id, EventKind.PROGRESS, progress)
            return row is not None

    def reclaim_expired(self, now: datetime | None = None) -> list[int]:
        """Queue again the jobs whose lease ran out; fail those out of attempts."""
        now = now or utcnow()
        with self.db.session() as s:
            rows = s.scalars(
                select(JobRow)
                .where(JobRow.status == Status.RUNNING.value, JobRow.lease_expires_at < now)
                .order_by(JobRow.id)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                lost = f"lease expired on worker {row.worker_id} (worker lost?)"
                row.worker_id, row.lease_expires_at = None, None
                if row.attempts >= row.max_attempts:
                    move(s, row, Status.FAILED, f"{lost}; gave up after {row.attempts} attempts")
                else:
                    move(
                        s,
                        row,
                        Status.QUEUED,
                        f"{lost}; attempt {row.attempts} of {row.max_attempts}",
                    )
            return [r.id for r in rows]
