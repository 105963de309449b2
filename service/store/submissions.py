"""Submitting jobs: queue one, answer it from the stored result of identical work, or attach
it to the identical job already in flight.

Submissions are the hot path under load: one costs one lookup query and the inserts; the
rare paths (a stored result, an identical job in flight) use the ORM.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, insert, select, update
from sqlalchemy.orm import Session

from service.queue.states import EventKind, Status
from service.store.job_records import Job, JobSpec, job_of, move
from service.store.models import JobEvent, JobRow, ResultRow, utcnow
from service.store.parsed import parsed_key, store_parsed

# Only decisive verdicts answer identical work; an `unknown` may be decided by a rerun.
CACHEABLE = ("holds", "violated")


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
    return job_of(running, None)


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
    move(s, row, Status.DONE)
    return job_of(row, hit)


def submit_one(s: Session, spec: JobSpec) -> Job:
    """A queued job; one already done from the stored result of identical work; or the
    identical job already queued or running."""
    hit_id, running_id = s.execute(_lookup(spec.cache_key)).one()
    if hit_id is None and running_id is not None:
        running = s.get(JobRow, running_id)
        if running is not None:
            return _attach(s, running, spec.priority)
    if hit_id is not None:
        return _answer_from(s, spec, s.get_one(ResultRow, hit_id))
    if spec.parsed is not None:
        store_parsed(s, parsed_key(spec.property_hash, spec.parsed.sizes), spec.parsed.data)
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
