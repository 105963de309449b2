"""Reads outside a transaction (``Database.reading``) on PostgreSQL: they see committed work,
and the pooled connection they used goes back transactional, so a failed write through it
still rolls back whole."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from service.api.schemas import JobOut
from service.store.artefacts import ArtefactStore
from service.store.db import POOL_SIZE, Database
from service.store.jobs import JobSpec, JobStore
from service.store.migrate import upgrade
from service.store.models import JobRow
from tests.integration.pg import fresh_database
from tests.integration.test_postgres_submissions import finish, stores
from tests.integration.test_postgres_submissions import spec as submission

pytestmark = pytest.mark.postgres
__all__ = ["stores"]  # the fixture: the same store on PostgreSQL and on SQLite


def spec(key: str) -> JobSpec:
    return JobSpec(
        artefact="a" * 64,
        prop={"vnnlib": key},
        property_hash=key,
        subnetwork=None,
        options={"timeout_s": 1},
        cache_key=key,
    )


def test_reads_see_commits_and_leave_writes_transactional() -> None:
    with fresh_database() as url:
        db = Database(url)
        try:
            upgrade(db.url)
            ArtefactStore(db).put("a" * 64, "onnx", b"x", "m.onnx", {"n_inputs": 1})
            store = JobStore(db)
            job = store.submit(spec("one"))
            for _ in range(2 * POOL_SIZE):  # every pooled connection serves a read
                seen = store.get(job.id)
                assert seen is not None and seen.status.value == "queued"
                assert store.events_of([job.id])[0].data == {"status": "queued"}
            store.cancel(job.id)
            after = store.get(job.id)
            assert after is not None and after.status.value == "cancelled"
            for _ in range(2 * POOL_SIZE):  # a write that fails half-way leaves nothing
                with pytest.raises(RuntimeError), db.session() as s:
                    s.add(JobRow(**_row("half")))
                    s.flush()
                    raise RuntimeError("fails after the insert")
            with db.session() as s:
                assert s.scalar(select(func.count()).select_from(JobRow)) == 1
        finally:
            db.dispose()


def _row(key: str) -> dict:
    return {
        "artefact_id": "a" * 64,
        "prop": {},
        "property_hash": key,
        "options": {},
        "cache_key": key,
        "status": "queued",
    }


def test_a_poll_answers_what_a_full_read_answers(stores: tuple[JobStore, JobStore]) -> None:
    """``JobStore.summaries`` (what polls read: no property) gives the API the same job as
    the full read, for a finished, a failed and a queued job, on PostgreSQL and SQLite."""
    for jobs in stores:
        done = jobs.submit(submission("done"))
        finish(jobs, done.id, "holds")
        failed = jobs.submit(submission("failed"))
        claimed = jobs.claim("w", 60.0)
        assert claimed is not None and claimed.id == failed.id
        jobs.fail(failed.id, "w", "engine crashed")
        queued = jobs.submit(submission("queued"))
        ids = [queued.id, done.id, failed.id, 10**6]  # the last does not exist
        full = {job.id: JobOut.of(job) for job in jobs.get_many(ids)}
        polled = {job.id: JobOut.of(job) for job in jobs.summaries(ids)}
        assert polled == full and sorted(polled) == sorted(ids[:3])
        assert polled[done.id].verdict == "holds" and polled[failed.id].status == "failed"
