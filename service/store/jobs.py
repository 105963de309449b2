"""All SQL about jobs: submit, read, cancel, claim, heartbeat, finish, reclaim, events.

Every status change writes a ``job_events`` row in the same transaction. Finishing checks
that the job is still running under the finishing worker, so a job is never done twice.
On PostgreSQL claims lock with ``FOR UPDATE SKIP LOCKED``; on SQLite the write lock taken
by ``BEGIN IMMEDIATE`` (see db.py) serialises them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.queue.states import TERMINAL, EventKind, Status
from service.store.db import Database
from service.store.models import DEFAULT_PROJECT_ID, JobEvent, JobRow, ResultRow, utcnow
from service.store.parsed import parsed_key, store_parsed

# Only decisive verdicts answer identical work; an `unknown` may be decided by a rerun.
CACHEABLE = ("holds", "violated")


@dataclass(frozen=True)
class ParsedSpec:
    """A property as parsed for the API's check, stored once for the pages (parsed.py)."""

    sizes: tuple[int, int]  # of the model it was parsed for
    data: dict[str, Any]


@dataclass(frozen=True)
class JobSpec:
    """What a job asks for, as validated by the API."""

    artefact: str
    prop: dict[str, Any]
    property_hash: str
    subnetwork: dict[str, Any] | None
    options: dict[str, Any]
    cache_key: str
    priority: int = 0
    max_attempts: int = 3
    project_id: int = DEFAULT_PROJECT_ID
    parsed: ParsedSpec | None = None


@dataclass(frozen=True)
class Job:
    id: int
    artefact: str
    status: Status
    prop: dict[str, Any]
    subnetwork: dict[str, Any] | None
    options: dict[str, Any]
    cache_key: str
    attempts: int
    cached: bool
    progress: dict[str, Any] | None
    reason: str | None
    verdict: str | None
    counterexample: dict[str, Any] | None
    stats: dict[str, Any] | None
    seconds: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    project_id: int = DEFAULT_PROJECT_ID


@dataclass(frozen=True)
class Event:
    id: int
    job_id: int
    kind: EventKind
    data: dict[str, Any]
    created_at: datetime


def _job(row: JobRow, res: ResultRow | None) -> Job:
    return Job(
        id=row.id,
        artefact=row.artefact_id,
        status=Status(row.status),
        prop=row.prop,
        subnetwork=row.subnetwork,
        options=row.options,
        cache_key=row.cache_key,
        attempts=row.attempts,
        cached=row.cached,
        progress=row.progress,
        reason=row.reason or (res.reason if res else None),
        verdict=res.verdict if res else None,
        counterexample=res.counterexample if res else None,
        stats=res.stats if res else None,
        seconds=row.seconds,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        project_id=row.project_id,
    )


def _joined() -> Select[tuple[JobRow, ResultRow]]:
    return select(JobRow, ResultRow).outerjoin(ResultRow, JobRow.result_id == ResultRow.id)


def _in_project(stmt: Any, project: int | None) -> Any:
    """``stmt`` narrowed to one project's jobs (None: every project, for workers)."""
    return stmt if project is None else stmt.where(JobRow.project_id == project)


def _event(s: Session, job_id: int, kind: EventKind, data: dict[str, Any]) -> None:
    s.add(JobEvent(job_id=job_id, kind=kind.value, data=data, created_at=utcnow()))


def _move(s: Session, row: JobRow, status: Status, reason: str | None = None) -> None:
    row.status = status.value
    row.reason = reason
    data: dict[str, Any] = {"status": status.value}
    if reason:
        data["reason"] = reason
    if status.terminal:
        row.finished_at = utcnow()
        row.lease_expires_at = None
        row.inflight_key = None
    _event(s, row.id, EventKind.STATUS, data)


def _lookup(key: str) -> Select[tuple[int | None, int | None]]:
    """The newest decisive result of identical work, and the identical job in flight."""
    hit = (
        select(ResultRow.id)
        .where(ResultRow.cache_key == key, ResultRow.verdict.in_(CACHEABLE))
        .order_by(ResultRow.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    running = select(JobRow.id).where(JobRow.inflight_key == key).scalar_subquery()
    return select(hit, running)


def _attach(s: Session, running: JobRow, priority: int) -> Job:
    """The identical queued or running job, raised to ``priority`` if that is higher."""
    if running.status == Status.QUEUED.value and priority > running.priority:
        s.execute(
            update(JobRow)
            .where(JobRow.id == running.id, JobRow.priority < priority)
            .values(priority=priority)
        )
    return _job(running, None)


def _queued_values(spec: JobSpec) -> dict[str, Any]:
    return {
        "project_id": spec.project_id,
        "artefact_id": spec.artefact,
        "prop": spec.prop,
        "property_hash": spec.property_hash,
        "subnetwork": spec.subnetwork,
        "options": spec.options,
        "cache_key": spec.cache_key,
        "inflight_key": spec.cache_key,
        "priority": spec.priority,
        "max_attempts": spec.max_attempts,
        "status": Status.QUEUED.value,
        "attempts": 0,
        "cached": False,
        "created_at": utcnow(),
    }


def _new_job(job_id: int, values: dict[str, Any]) -> Job:
    return Job(
        id=job_id,
        artefact=values["artefact_id"],
        status=Status.QUEUED,
        prop=values["prop"],
        subnetwork=values["subnetwork"],
        options=values["options"],
        cache_key=values["cache_key"],
        attempts=0,
        cached=False,
        progress=None,
        reason=None,
        verdict=None,
        counterexample=None,
        stats=None,
        seconds=None,
        created_at=values["created_at"],
        started_at=None,
        finished_at=None,
        project_id=values["project_id"],
    )


def _answer_from(s: Session, spec: JobSpec, hit: ResultRow) -> Job:
    """A job done at once from the stored result of identical work."""
    values = {**_queued_values(spec), "inflight_key": None}
    row = JobRow(**values)
    s.add(row)
    s.flush()
    row.cached, row.result_id, row.seconds = True, hit.id, 0.0
    row.started_at = utcnow()
    _move(s, row, Status.DONE)
    return _job(row, hit)


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- the API side ------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> Job:
        """A queued job; one already done from the stored result of identical work; or the
        identical job already queued or running (one job per identical in-flight work)."""
        try:
            return self._submit(spec)
        except IntegrityError:  # an identical job was queued concurrently: attach to it
            return self._submit(spec)

    def _submit(self, spec: JobSpec) -> Job:
        # Few round trips: one lookup (stored result, identical job in flight), then the
        # inserts. Submissions are the hot path under load; the rare paths use the ORM.
        with self.db.session() as s:
            hit_id, running_id = s.execute(_lookup(spec.cache_key)).one()
            if hit_id is None and running_id is not None:
                running = s.get(JobRow, running_id)
                if running is not None:
                    return _attach(s, running, spec.priority)
            if hit_id is not None:
                return _answer_from(s, spec, s.get_one(ResultRow, hit_id))
            if spec.parsed is not None:
                key = parsed_key(spec.property_hash, spec.parsed.sizes)
                store_parsed(s, key, spec.parsed.data)
            values = _queued_values(spec)
            job_id = s.execute(insert(JobRow).values(values).returning(JobRow.id)).scalar_one()
            s.execute(
                insert(JobEvent).values(
                    job_id=job_id,
                    kind=EventKind.STATUS.value,
                    data={"status": Status.QUEUED.value},
                    created_at=values["created_at"],
                )
            )
            return _new_job(job_id, values)

    def get(self, job_id: int, project: int | None = None) -> Job | None:
        """The job, if it exists (and belongs to ``project`` when one is given)."""
        with self.db.session() as s:
            found = s.execute(_in_project(_joined().where(JobRow.id == job_id), project)).first()
            return _job(*found) if found else None

    def certificate(self, job_id: int, project: int | None = None) -> dict[str, Any] | None:
        with self.db.session() as s:
            stmt = select(ResultRow.certificate).join(JobRow, JobRow.result_id == ResultRow.id)
            return s.scalars(_in_project(stmt.where(JobRow.id == job_id), project)).first()

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
        stmt = _in_project(_joined(), project)
        if status:
            stmt = stmt.where(JobRow.status == status)
        if verdict:
            stmt = stmt.where(ResultRow.verdict == verdict)
        if artefact:
            stmt = stmt.where(JobRow.artefact_id == artefact)
        with self.db.session() as s:
            total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
            rows = s.execute(stmt.order_by(JobRow.id.desc()).limit(limit).offset(offset))
            return [_job(*r) for r in rows], total

    def cancel(self, job_id: int, project: int | None = None) -> Job | None:
        """Cancel a queued or running job (its worker notices at its next poll)."""
        with self.db.session() as s:
            row = s.get(JobRow, job_id, with_for_update=True)
            if row is None or (project is not None and row.project_id != project):
                return None
            if Status(row.status) not in TERMINAL:
                _move(s, row, Status.CANCELLED, "cancelled by request")
            res = s.get(ResultRow, row.result_id) if row.result_id else None
            return _job(row, res)

    def events_after(self, job_id: int, after: int = 0, limit: int = 200) -> list[Event]:
        with self.db.session() as s:
            rows = s.scalars(
                select(JobEvent)
                .where(JobEvent.job_id == job_id, JobEvent.id > after)
                .order_by(JobEvent.id)
                .limit(limit)
            )
            return [Event(e.id, e.job_id, EventKind(e.kind), e.data, e.created_at) for e in rows]

    def events_of(self, job_ids: list[int], after: int = 0, limit: int = 1000) -> list[Event]:
        """Events of any of ``job_ids`` after event id ``after``, oldest first."""
        with self.db.session() as s:
            rows = s.scalars(
                select(JobEvent)
                .where(JobEvent.job_id.in_(job_ids), JobEvent.id > after)
                .order_by(JobEvent.id)
                .limit(limit)
            )
            return [Event(e.id, e.job_id, EventKind(e.kind), e.data, e.created_at) for e in rows]

    def status_counts(self, project: int | None = None) -> dict[str, int]:
        stmt = _in_project(select(JobRow.status, func.count()), project)
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
            stmt = _in_project(
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
        newest = _in_project(select(func.max(JobRow.id)), project).group_by(
            JobRow.artefact_id, JobRow.property_hash
        )
        if artefacts is not None:
            newest = newest.where(JobRow.artefact_id.in_(artefacts))
        with self.db.session() as s:
            rows = s.execute(_joined().where(JobRow.id.in_(newest)).order_by(JobRow.id.desc()))
            return [_job(*r) for r in rows]

    def history(
        self, artefacts: list[str], limit: int = 2000, project: int | None = None
    ) -> list[Job]:
        """Jobs on these artefacts, oldest first (the newest ``limit`` of them)."""
        stmt = _in_project(_joined().where(JobRow.artefact_id.in_(artefacts)), project)
        with self.db.session() as s:
            rows = s.execute(stmt.order_by(JobRow.id.desc()).limit(limit))
            return [_job(*r) for r in reversed(rows.all())]

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
            _move(s, row, Status.RUNNING)
            return _job(row, None)

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
            _move(s, row, Status.DONE)
            return True

    def fail(self, job_id: int, worker_id: str, reason: str) -> bool:
        with self.db.session() as s:
            row = self._held(s, job_id, worker_id)
            if row is not None:
                _move(s, row, Status.FAILED, reason)
            return row is not None

    def release(self, job_id: int, worker_id: str, reason: str) -> bool:
        """Give a running job back to the queue; the attempt does not count."""
        with self.db.session() as s:
            row = self._held(s, job_id, worker_id)
            if row is None:
                return False
            row.worker_id, row.lease_expires_at = None, None
            row.attempts = max(0, row.attempts - 1)
            _move(s, row, Status.QUEUED, reason)
            return True

    def progress(self, job_id: int, worker_id: str, progress: dict[str, Any]) -> bool:
        with self.db.session() as s:
            row = self._held(s, job_id, worker_id)
            if row is not None:
                row.progress = progress
                _event(s, job_id, EventKind.PROGRESS, progress)
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
                    _move(s, row, Status.FAILED, f"{lost}; gave up after {row.attempts} attempts")
                else:
                    _move(
                        s,
                        row,
                        Status.QUEUED,
                        f"{lost}; attempt {row.attempts} of {row.max_attempts}",
                    )
            return [r.id for r in rows]
