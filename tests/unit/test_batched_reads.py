"""BatchedReads: polls in flight share one read, and each gets exactly what a read of its
own would have given (its ids, its project's jobs, by id; the read's error)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from service.queue.states import Status
from service.store.batched_reads import MAX_POLLS, BatchedReads
from service.store.job_records import JobSummary


def _job(job_id: int, project: int) -> JobSummary:
    return JobSummary(
        id=job_id, artefact="a", status=Status.QUEUED, options={}, attempts=0, cached=False,
        progress=None, reason=None, verdict=None, counterexample=None, stats=None,
        created_at=datetime.now(UTC), started_at=None, finished_at=None, project_id=project,
    )  # fmt: skip


class SlowStore:
    """``JobStore.summaries`` over a fixed set of jobs: slow, counted, optionally failing."""

    def __init__(self, jobs: list[JobSummary], error: Exception | None = None) -> None:
        self.jobs = {job.id: job for job in jobs}
        self.reads: list[list[int]] = []
        self.error = error
        self._lock = threading.Lock()

    def summaries(self, job_ids: Sequence[int]) -> list[JobSummary]:
        with self._lock:
            self.reads.append(list(job_ids))
        time.sleep(0.02)
        if self.error is not None:
            raise self.error
        return [self.jobs[i] for i in sorted(set(job_ids)) if i in self.jobs]

    def alone(self, job_ids: Sequence[int], project: int | None) -> list[int]:
        """What one poll's own read gives: its jobs that exist in its project, by id."""
        found = (self.jobs.get(i) for i in sorted(set(job_ids)))
        return [j.id for j in found if j is not None and project in (None, j.project_id)]


@pytest.mark.parametrize("seed", range(5))
def test_each_poll_gets_what_its_own_read_would(seed: int) -> None:
    rng = random.Random(seed)
    store = SlowStore([_job(i, project=rng.choice([1, 2])) for i in range(1, 60)])
    reads = BatchedReads(store)  # type: ignore[arg-type]
    polls = [
        ([rng.randrange(1, 80) for _ in range(rng.randrange(1, 8))], rng.choice([1, 2, None]))
        for _ in range(120)
    ]

    async def burst() -> list[list[JobSummary]]:
        return await asyncio.gather(*(reads.get_many(ids, project) for ids, project in polls))

    answers = asyncio.run(burst())
    assert [[j.id for j in jobs] for jobs in answers] == [store.alone(*p) for p in polls]
    # The polls that arrive during a read share the next one; MAX_POLLS bounds a read.
    assert len(store.reads) <= 1 + -(-len(polls) // MAX_POLLS) + 1
    assert len(store.reads) < len(polls) / 10


def test_one_job_by_id() -> None:
    store = SlowStore([_job(1, project=1), _job(2, project=2)])
    reads = BatchedReads(store)  # type: ignore[arg-type]

    async def three() -> list[JobSummary | None]:
        return list(await asyncio.gather(reads.get(1, 1), reads.get(2, 1), reads.get(3, None)))

    found = asyncio.run(three())
    assert [j.id if j else None for j in found] == [1, None, None]  # 2 is another project's


def test_a_failed_read_fails_every_poll_in_it_and_the_next_read_runs() -> None:
    store = SlowStore([_job(1, project=1)], error=ConnectionError("database down"))
    reads = BatchedReads(store)  # type: ignore[arg-type]

    async def burst() -> list[object]:
        calls = [reads.get_many([1], 1) for _ in range(10)]
        return await asyncio.gather(*calls, return_exceptions=True)

    assert all(isinstance(r, ConnectionError) for r in asyncio.run(burst()))
    store.error = None
    assert [j.id for j in asyncio.run(burst())[0]] == [1]  # type: ignore[union-attr]
