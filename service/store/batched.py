"""Submissions written in batches on PostgreSQL: group commit for the API's hot path.

Under a burst every submission used to take a request thread, a pooled connection and a
commit of its own. Here the API process's event loop hands new jobs to a writer: the
submissions that arrive while a batch is being written form the next batch, written by one
statement (``submissions.BATCH_INSERT``: one round trip, committed by itself, one wait for
the database in the writer thread), which inserts each row as the one-row ``INSERT`` would.

A submission the batch did not insert (a stored result, an identical job in flight or an
identical submission earlier in the batch answers it), or any failure of the batch (a
statement is atomic: nothing of it is written), falls back to
``JobStore.submit`` in a thread: the existing paths decide it and raise its errors, so a
database outage is still a 503. The fallback is also safe where a commit's reply was lost:
the job it wrote is then in flight and the fallback attaches to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from sqlalchemy.engine import make_url
from starlette.concurrency import run_in_threadpool

from service.store.db import compact_json
from service.store.job_records import Job, JobSpec
from service.store.jobs import JobStore
from service.store.submissions import (
    BATCH_INSERT,
    QUEUED_EVENT,
    batch_row,
    insert_params,
    new_job,
)

# A bound on a batch's statements (a burst beyond it is written in several batches).
MAX_BATCH = 64
MAX_WRITERS = 3
CONNECT_TIMEOUT_S = 5


class BatchedSubmissions:
    """Submissions of one API process: batched on PostgreSQL, ``JobStore.submit`` in a
    thread on SQLite (whose writer lock serialises them anyway).

    Up to MAX_WRITERS batches are in flight at once, each written by its own thread on its
    own connection: a batch of one straggler does not hold back the next full one, and a
    batch's round trips do not wait for the event loop, busy with the requests.
    """

    def __init__(self, jobs: JobStore) -> None:
        self.jobs = jobs
        self._enabled = not jobs.db.sqlite
        self._pending: list[tuple[dict[str, Any], asyncio.Future[int | None]]] = []
        self._writers: set[asyncio.Task[None]] = set()
        self._threads = ThreadPoolExecutor(MAX_WRITERS, thread_name_prefix="submissions")
        # Connections not in use by a writer; at most MAX_WRITERS exist, one per writer.
        self._idle: queue.SimpleQueue[psycopg.Connection[Any]] = queue.SimpleQueue()
        self._connections: list[psycopg.Connection[Any]] = []
        if self._enabled:
            url = make_url(jobs.db.url).set(drivername="postgresql")
            self._conninfo = url.render_as_string(hide_password=False)

    async def submit(self, spec: JobSpec) -> Job:
        if self._enabled:
            values, params = insert_params(spec)
            job_id = await self._queued(batch_row(params))
            if job_id is not None:
                return new_job(job_id, values)
        return await run_in_threadpool(self.jobs.submit, spec)

    def close(self) -> None:
        """Close the writers' connections (a writer that runs again reconnects)."""
        for conn in list(self._connections):
            self._discard(conn)

    async def _queued(self, row: dict[str, Any]) -> int | None:
        """The new job's id, written in a coming batch; None when the batch inserted
        nothing for it or failed (the caller falls back)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int | None] = loop.create_future()
        self._pending.append((row, future))
        self._writers = {w for w in self._writers if not w.done() and w.get_loop() is loop}
        if len(self._writers) < MAX_WRITERS:
            self._writers.add(loop.create_task(self._write_pending()))
        return await future

    async def _write_pending(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            rows = [row for row, _ in batch]
            try:
                ids = await loop.run_in_executor(self._threads, self._write, rows)
            except Exception:  # noqa: BLE001 - never leave a submission waiting: fall back
                ids = [None] * len(batch)
            for (_, future), job_id in zip(batch, ids, strict=True):
                if not future.done():
                    future.set_result(job_id)

    def _write(self, rows: list[dict[str, Any]]) -> list[int | None]:
        """In a writer thread, one statement (one round trip, committed by itself): each
        row's new job id, or None (for every row when the statement failed). Of identical
        rows the first gets the job; the others fall back and are attached to it."""
        params = {"rows": compact_json(rows), "event": compact_json(QUEUED_EVENT)}
        conn = None
        try:
            conn = self._take()
            new = conn.execute(BATCH_INSERT, params).fetchall()
        except Exception:  # noqa: BLE001 - every failure falls back to the full path
            self._discard(conn)
            return [None] * len(rows)
        self._idle.put(conn)
        ids = {key: job_id for job_id, key in new}
        return [ids.pop(row["cache_key"], None) for row in rows]

    def warm(self) -> None:
        """Open the writers' connections ahead of the first burst (each takes a PostgreSQL
        backend's start-up, tens of milliseconds under load); a failure is left to the
        first batch, which connects again."""
        if not self._enabled:
            return
        with contextlib.suppress(psycopg.Error):
            while len(self._connections) < MAX_WRITERS:
                self._idle.put(self._connect())

    def _take(self) -> psycopg.Connection[Any]:
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return self._connect()
            if not conn.closed:
                return conn
            self._discard(conn)

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        self._connections.append(conn)
        return conn

    def _discard(self, conn: psycopg.Connection[Any] | None) -> None:
        if conn is None:
            return
        with contextlib.suppress(ValueError):
            self._connections.remove(conn)
        with contextlib.suppress(psycopg.Error):
            conn.close()
