"""Submissions written in batches on PostgreSQL: group commit for the API's hot path.

Under a burst every submission used to take a request thread, a pooled connection and a
commit of its own. Here the API process's event loop hands new jobs to one writer: the
submissions that arrive while a batch is being written form the next batch, sent in one
round trip (psycopg's pipeline mode) and committed once. Each job is the statement of
``submissions.insert_new``, compiled once from the same SQLAlchemy construct, so the rows
written are those of the one-statement path; within a batch's transaction a later identical
submission sees the earlier one in flight and inserts nothing, as across transactions.

A submission the batch did not insert (a stored result or an identical job in flight
answers it), or any failure of the batch (rolled back as a whole), falls back to
``JobStore.submit`` in a thread: the existing paths decide it and raise its errors, so a
database outage is still a 503. The fallback is also safe where a commit's reply was lost:
the job it wrote is then in flight and the fallback attaches to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from sqlalchemy.engine import make_url
from starlette.concurrency import run_in_threadpool

from service.store.db import Database
from service.store.job_records import Job, JobSpec
from service.store.jobs import JobStore
from service.store.submissions import INSERT, insert_params, new_job

# A bound on a batch's statements (a burst beyond it is written in several batches).
MAX_BATCH = 64
MAX_WRITERS = 3
CONNECT_TIMEOUT_S = 5


class _Compiled:
    """A SQLAlchemy statement as psycopg runs it: its SQL text once, and its parameters
    converted by the same bind processors SQLAlchemy would apply (JSON serialised alike)."""

    def __init__(self, statement: Any, db: Database) -> None:
        dialect = db.engine.dialect
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self._compiled = compiled
        self._process: dict[str, Callable[[Any], Any]] = {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self._process[name] = processor

    def params(self, given: dict[str, Any]) -> dict[str, Any]:
        values = self._compiled.construct_params(given)
        for name, process in self._process.items():
            if name in values:
                values[name] = process(values[name])
        return values


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
        self._pending: list[tuple[_Compiled, dict[str, Any], asyncio.Future[int | None]]] = []
        self._writers: set[asyncio.Task[None]] = set()
        self._threads = ThreadPoolExecutor(MAX_WRITERS, thread_name_prefix="submissions")
        self._local = threading.local()
        self._connections: list[psycopg.Connection[Any]] = []
        if self._enabled:
            url = make_url(jobs.db.url).set(drivername="postgresql")
            self._conninfo = url.render_as_string(hide_password=False)
            self._statements = {p: _Compiled(s, jobs.db) for p, s in INSERT.items()}

    async def submit(self, spec: JobSpec) -> Job:
        if self._enabled:
            values, params = insert_params(spec)
            job_id = await self._queued(spec.parsed is not None, params)
            if job_id is not None:
                return new_job(job_id, values)
        return await run_in_threadpool(self.jobs.submit, spec)

    def close(self) -> None:
        """Close the writers' connections (a writer that runs again reconnects)."""
        for conn in list(self._connections):
            with contextlib.suppress(psycopg.Error):
                conn.close()
        self._connections.clear()

    async def _queued(self, parsed: bool, params: dict[str, Any]) -> int | None:
        """The new job's id, written in a coming batch; None when the batch inserted
        nothing for it or failed (the caller falls back)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int | None] = loop.create_future()
        self._pending.append((self._statements[parsed], params, future))
        self._writers = {w for w in self._writers if not w.done() and w.get_loop() is loop}
        if len(self._writers) < MAX_WRITERS:
            self._writers.add(loop.create_task(self._write_pending()))
        return await future

    async def _write_pending(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            statements = [(statement, params) for statement, params, _ in batch]
            try:
                ids = await loop.run_in_executor(self._threads, self._write, statements)
            except Exception:  # noqa: BLE001 - never leave a submission waiting: fall back
                ids = [None] * len(batch)
            for (_, _, future), job_id in zip(batch, ids, strict=True):
                if not future.done():
                    future.set_result(job_id)

    def _write(self, batch: list[tuple[_Compiled, dict[str, Any]]]) -> list[int | None]:
        """In a writer thread, one round trip and one commit: each statement's new job id,
        or None (for every statement when the batch failed).

        The statements run in the order of their in-flight keys: concurrent batches (other
        writers, other API processes) holding identical submissions then wait for each
        other's keys in one order, never in a cycle. A rarer cycle (through the parsed
        properties' keys) is broken by PostgreSQL's deadlock detector, and its batch falls
        back."""
        order = sorted(range(len(batch)), key=lambda i: batch[i][1]["inflight_key"])
        try:
            conn = self._connection()
            with conn.pipeline(), conn.transaction():
                cursors = {}
                for i in order:
                    statement, params = batch[i]
                    cursors[i] = conn.execute(statement.sql, statement.params(params))
            rows = [cursors[i].fetchone() for i in range(len(batch))]
            return [None if row is None else int(row[0]) for row in rows]
        except Exception:  # noqa: BLE001 - every failure falls back to the full path
            self._drop_connection()
            return [None] * len(batch)

    def _connection(self) -> psycopg.Connection[Any]:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(self._conninfo, connect_timeout=CONNECT_TIMEOUT_S)
            self._local.conn = conn
            self._connections.append(conn)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            self._connections.remove(conn)
            with contextlib.suppress(psycopg.Error):
                conn.close()
