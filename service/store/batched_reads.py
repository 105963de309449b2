"""Polls of jobs by id, read in batches: one query and one thread for the polls in flight.

Clients poll their jobs (`GET /v1/jobs/{id}`, `GET /v1/jobs?ids=`) while others submit. Each
poll used to be a request thread of its own: under a burst some 25 threads per API process
ran their query's Python at once, each taking the GIL for its 5 ms switch interval, and the
event loop and the submissions' writer threads waited behind them (a batch of submissions
was answered up to 60 ms after its rows were stored). Here the polls that arrive while a
read is running form the next read: one query for all their ids, in one thread, after
which each poll gets the jobs it asked for that belong to its project.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from service.store.job_records import JobSummary
from service.store.jobs import JobStore

# A bound on one read's polls (each up to 100 ids; a burst beyond it is read in several).
MAX_POLLS = 50

_Poll = tuple[Sequence[int], int | None, "asyncio.Future[list[JobSummary]]"]


class BatchedReads:
    """The polls of one API process, read in batches (``JobStore.summaries``)."""

    def __init__(self, jobs: JobStore) -> None:
        self.jobs = jobs
        self._pending: list[_Poll] = []
        self._reader: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="reads")

    async def get_many(
        self, job_ids: Sequence[int], project: int | None = None
    ) -> list[JobSummary]:
        """Those of the jobs that exist and belong to ``project`` (every project for None),
        by id; the read's errors (a database outage) are raised here."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[JobSummary]] = loop.create_future()
        self._pending.append((job_ids, project, future))
        if self._reader is None or self._reader.done() or self._reader.get_loop() is not loop:
            self._reader = loop.create_task(self._read_pending())
        return await future

    async def get(self, job_id: int, project: int | None = None) -> JobSummary | None:
        found = await self.get_many([job_id], project)
        return found[0] if found else None

    async def _read_pending(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            polls, self._pending = self._pending[:MAX_POLLS], self._pending[MAX_POLLS:]
            wanted = sorted({job_id for ids, _, _ in polls for job_id in ids})
            try:
                jobs = await loop.run_in_executor(self._thread, self.jobs.summaries, wanted)
            except Exception as exc:  # noqa: BLE001 - each poll raises it, as it would alone
                for _, _, future in polls:
                    if not future.done():
                        future.set_exception(exc)
                continue
            by_id = {job.id: job for job in jobs}
            for ids, project, future in polls:
                if not future.done():
                    future.set_result(_answer(by_id, ids, project))


def _answer(
    by_id: dict[int, JobSummary], ids: Sequence[int], project: int | None
) -> list[JobSummary]:
    """The poll's jobs by id: those found that belong to ``project`` (any for None)."""
    found = (by_id.get(job_id) for job_id in sorted(set(ids)))
    return [job for job in found if job is not None and project in (None, job.project_id)]
