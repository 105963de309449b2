"""The queue on SQLite: claim order, lease expiry, attempts, finish-once, events, cache."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from service.queue.states import Status
from service.store.artefacts import ArtefactStore
from service.store.db import Database
from service.store.jobs import JobSpec, JobStore
from service.store.migrate import ensure_schema
from service.store.models import utcnow

RESULT = {
    "verdict": "holds",
    "stats": {"seconds": 0.1},
    "counterexample": None,
    "certificate": {"tree": []},
}


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    db = Database(f"sqlite:///{tmp_path}/q.db")
    ensure_schema(db)
    ArtefactStore(db).put("a" * 64, "onnx", b"bytes", "m.onnx", {"n_inputs": 1, "n_outputs": 1})
    yield JobStore(db)
    db.dispose()


def spec(key: str = "k", priority: int = 0, max_attempts: int = 2) -> JobSpec:
    return JobSpec(
        artefact="a" * 64,
        prop={"vnnlib": "..."},
        property_hash="p",
        subnetwork=None,
        options={"timeout_s": 1},
        cache_key=key,
        priority=priority,
        max_attempts=max_attempts,
    )


def statuses(store: JobStore, job_id: int) -> list[str]:
    return [e.data["status"] for e in store.events_after(job_id) if "status" in e.data]


def test_claim_by_priority_then_age(store: JobStore) -> None:
    low, high1, high2 = (store.submit(spec(str(i), p)).id for i, p in enumerate((0, 5, 5)))
    order = [store.claim("w", 30).id for _ in range(3)]  # type: ignore[union-attr]
    assert order == [high1, high2, low]
    assert store.claim("w", 30) is None


def test_expired_lease_is_reclaimed_then_failed(store: JobStore) -> None:
    job = store.submit(spec(max_attempts=2))
    assert store.claim("w1", 30).id == job.id  # type: ignore[union-attr]
    assert store.reclaim_expired() == []  # the lease is still good
    later = utcnow() + timedelta(seconds=31)
    assert store.reclaim_expired(later) == [job.id]
    again = store.get(job.id)
    assert (
        again is not None
        and again.status is Status.QUEUED
        and "lease expired" in (again.reason or "")
    )
    assert store.claim("w2", 30).attempts == 2  # type: ignore[union-attr]
    store.reclaim_expired(utcnow() + timedelta(seconds=31))
    failed = store.get(job.id)
    assert failed is not None and failed.status is Status.FAILED
    assert "gave up after 2 attempts" in (failed.reason or "")
    assert statuses(store, job.id) == ["queued", "running", "queued", "running", "failed"]


def test_finish_happens_once_and_only_by_the_holder(store: JobStore) -> None:
    job = store.submit(spec())
    store.claim("w1", 30)
    store.reclaim_expired(utcnow() + timedelta(seconds=31))
    store.claim("w2", 30)
    assert store.finish(job.id, "w1", RESULT, 1.0) is False  # lost its lease
    assert store.finish(job.id, "w2", RESULT, 1.0) is True
    assert store.finish(job.id, "w2", RESULT, 1.0) is False
    done = store.get(job.id)
    assert done is not None and (done.status, done.verdict) == (Status.DONE, "holds")
    assert statuses(store, job.id).count("done") == 1
    assert store.certificate(job.id) == {"tree": []}


def test_heartbeat_and_cancel(store: JobStore) -> None:
    job = store.submit(spec())
    store.claim("w", 1)
    assert store.heartbeat("w", [job.id], 30) == {job.id}
    assert store.reclaim_expired(utcnow() + timedelta(seconds=5)) == []  # renewed
    assert store.heartbeat("other", [job.id], 30) == set()
    cancelled = store.cancel(job.id)
    assert cancelled is not None and cancelled.status is Status.CANCELLED
    assert store.held("w", [job.id]) == set()
    assert store.finish(job.id, "w", RESULT, 1.0) is False
    assert store.cancel(job.id).status is Status.CANCELLED  # type: ignore[union-attr]
    assert store.cancel(999) is None


def test_release_does_not_spend_an_attempt(store: JobStore) -> None:
    job = store.submit(spec())
    store.claim("w", 30)
    assert store.release(job.id, "w", "worker stopped")
    back = store.get(job.id)
    assert back is not None and (back.status, back.attempts) == (Status.QUEUED, 0)


def test_identical_work_is_answered_from_the_cache(store: JobStore) -> None:
    first = store.submit(spec("same"))
    store.claim("w", 30)
    store.finish(first.id, "w", RESULT, 2.0)
    second = store.submit(spec("same"))
    assert (second.status, second.cached, second.verdict) == (Status.DONE, True, "holds")
    assert store.certificate(second.id) == {"tree": []}
    assert store.claim("w", 30) is None
    unknown = store.submit(spec("other"))
    store.claim("w", 30)
    store.finish(unknown.id, "w", {**RESULT, "verdict": "unknown"}, 1.0)
    assert store.submit(spec("other")).cached is False  # unknown is never cached


def test_progress_only_from_the_holder(store: JobStore) -> None:
    job = store.submit(spec())
    store.claim("w", 30)
    assert store.progress(job.id, "w", {"proved_fraction": 0.5})
    assert not store.progress(job.id, "x", {"proved_fraction": 0.9})
    assert store.get(job.id).progress == {"proved_fraction": 0.5}  # type: ignore[union-attr]
    assert store.status_counts() == {"running": 1}
