"""Submissions on real PostgreSQL, where a new job is one statement (submissions.py): the
rows it writes, deduplication of identical work in flight and of stored results, and a race
of identical submissions, each checked against the rows themselves and against the same
submissions on SQLite (the ORM path, the reference)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from service.store.artefacts import ArtefactStore
from service.store.db import Database
from service.store.job_records import job_of, joined
from service.store.jobs import JobSpec, JobStore, ParsedSpec
from service.store.migrate import upgrade
from service.store.models import JobEvent, JobRow, ParsedProperty
from tests.integration.pg import fresh_database

pytestmark = pytest.mark.postgres
ARTEFACT = "d" * 64


def spec(
    key: str, priority: int = 0, parsed: bool = True, subnetwork: dict[str, Any] | None = None
) -> JobSpec:
    return JobSpec(
        artefact=ARTEFACT,
        prop={"vnnlib": f"; {key}"},
        property_hash=f"hash-{key}",
        subnetwork=subnetwork,
        options={"timeout_s": 30, "seed": 0},
        cache_key=f"key-{key}",
        priority=priority,
        max_attempts=3,
        parsed=ParsedSpec((2, 1), {"parsed": key}) if parsed else None,
    )


def store(url: str) -> JobStore:
    upgrade(url)
    db = Database(url)
    ArtefactStore(db).put(ARTEFACT, "onnx", b"model", "m.onnx", {"n_inputs": 2, "n_outputs": 1})
    return JobStore(db)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[JobStore, JobStore]]:
    """The same store on PostgreSQL and on SQLite (the reference)."""
    with fresh_database() as url:
        pg, lite = store(url), store(f"sqlite:///{tmp_path / 'ref.db'}")
        try:
            yield pg, lite
        finally:
            pg.db.dispose()
            lite.db.dispose()


def rows(jobs: JobStore) -> dict[str, Any]:
    """What the submissions left in the database, ids left out."""
    with jobs.db.session() as s:
        job_rows = s.scalars(select(JobRow).order_by(JobRow.id)).all()
        # How a missing subnetwork is stored (SQL NULL or JSON null), which the ORM hides.
        sql_nulls = s.scalars(select(func.count()).where(JobRow.subnetwork.is_(None))).one()
        return {
            "jobs": [
                (j.cache_key, j.inflight_key, j.status, j.priority, j.cached, j.prop, j.options)
                + (j.project_id, j.artefact_id, j.property_hash, j.subnetwork, j.max_attempts)
                + (j.attempts,)
                for j in job_rows
            ],
            "sql_null_subnetworks": [sql_nulls],
            "events": [(e.kind, e.data) for e in s.scalars(select(JobEvent).order_by(JobEvent.id))],
            "parsed": [(p.key, p.data) for p in s.scalars(select(ParsedProperty))],
        }


def finish(jobs: JobStore, job_id: int, verdict: str) -> None:
    claimed = jobs.claim("w", 60.0)
    assert claimed is not None and claimed.id == job_id
    assert jobs.finish(job_id, "w", {"verdict": verdict}, 0.1)


def shape(job: Any) -> tuple[Any, ...]:
    return (job.status.value, job.cached, job.verdict, job.cache_key, job.options)


def test_submissions_write_what_the_reference_writes(stores: tuple[JobStore, JobStore]) -> None:
    """New jobs, identical work in flight (priority raised), a stored decisive result, an
    `unknown` result (which answers nothing): the same answers and rows on both."""
    answers: dict[str, list[tuple[Any, ...]]] = {}
    for name, jobs in zip(("pg", "lite"), stores, strict=True):
        first = jobs.submit(spec("a"))
        again = jobs.submit(spec("a", priority=5))
        assert again.id == first.id
        second = jobs.submit(spec("b", parsed=False))
        finish(jobs, first.id, "holds")  # the higher priority is claimed first
        finish(jobs, second.id, "unknown")
        from_cache = jobs.submit(spec("a"))
        rerun = jobs.submit(spec("b"))
        assert from_cache.id not in (first.id, second.id) and from_cache.cached
        assert rerun.id not in (first.id, second.id, from_cache.id) and not rerun.cached
        answers[name] = [shape(j) for j in (first, again, second, from_cache, rerun)]
        answers[name + " rows"] = [rows(jobs)]
    assert answers["pg"] == answers["lite"]
    assert answers["pg rows"] == answers["lite rows"]
    pg_rows = answers["pg rows"][0]
    assert [j[2] for j in pg_rows["jobs"]] == ["done", "done", "done", "queued"]
    assert [j[3] for j in pg_rows["jobs"]] == [5, 0, 0, 0]
    assert sorted(p[0] for p in pg_rows["parsed"]) == ["hash-a:2x1", "hash-b:2x1"]


def test_a_read_job_is_the_job_the_orm_loads(stores: tuple[JobStore, JobStore]) -> None:
    """``get`` reads plain columns; the ORM's entities (``job_of``) are the reference: a
    queued job, a done one with a counterexample and stats, a failed one with a reason."""
    for jobs in stores:
        done, failed = (jobs.submit(spec(k)).id for k in ("d", "f"))
        assert jobs.claim("w", 60.0) is not None and jobs.claim("w", 60.0) is not None
        queued = jobs.submit(spec("q")).id
        result = {"verdict": "violated", "counterexample": {"x": [0.5]}, "stats": {"n": 3}}
        result["reason"] = "found by sampling"
        assert jobs.finish(done, "w", result, 0.25)
        assert jobs.fail(failed, "w", "it broke")
        with jobs.db.session() as s:
            references = [
                job_of(*s.execute(joined().where(JobRow.id == job_id)).one())
                for job_id in (queued, done, failed)
            ]
        for reference in references:
            assert jobs.get(reference.id) == reference
            assert jobs.get(reference.id, reference.project_id) == reference
            assert jobs.get(reference.id, reference.project_id + 1) is None


def test_identical_submissions_at_once_make_one_job(stores: tuple[JobStore, JobStore]) -> None:
    jobs = stores[0]
    start, ids, errors = threading.Barrier(16), [], []

    def submit() -> None:
        start.wait()
        try:
            ids.append(jobs.submit(spec("race")).id)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(ids) == 16 and len(set(ids)) == 1
    with jobs.db.session() as s:
        assert s.scalar(select(func.count()).select_from(JobRow)) == 1
        assert s.scalar(select(func.count()).select_from(JobEvent)) == 1
