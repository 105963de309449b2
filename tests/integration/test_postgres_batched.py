"""Batched submissions on real PostgreSQL (service/store/batched.py): many submissions at
once are written in batches, and what they leave is what one-at-a-time submissions leave
on SQLite (the ORM path, the reference); a batch that fails, a connection the server
dropped and an outage each fall back to the one-at-a-time path, losing nothing."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from service.store.batched import MAX_WRITERS, BatchedSubmissions
from service.store.db import DATABASE_DOWN
from service.store.jobs import JobStore
from service.store.models import JobEvent, JobRow
from tests.integration.pg import fresh_database
from tests.integration.tcp_proxy import TcpProxy
from tests.integration.test_postgres_submissions import finish, rows, spec, store, stores

pytestmark = pytest.mark.postgres
__all__ = ["stores"]  # the fixture: the same store on PostgreSQL and on SQLite


async def at_once(batched: BatchedSubmissions, specs: list[Any]) -> list[Any]:
    """Submit every spec concurrently on one event loop (they form batches)."""
    return await asyncio.gather(*(batched.submit(s) for s in specs), return_exceptions=True)


def counted(found: dict[str, Any]) -> dict[str, Counter]:
    """Rows as multisets: concurrent submissions get ids in no fixed order."""
    return {table: Counter(map(repr, entries)) for table, entries in found.items()}


def count_fallbacks(jobs: JobStore) -> list[Any]:
    """Record every submission that reaches the one-at-a-time path."""
    calls: list[Any] = []
    submit = jobs.submit

    def counting(spec: Any) -> Any:
        calls.append(spec)
        return submit(spec)

    jobs.submit = counting  # type: ignore[method-assign]
    return calls


def burst() -> list[Any]:
    """40 new jobs, 20 of them submitted twice or three times, some without parsed data, some
    of a subnetwork."""
    keys = [f"k{i}" for i in range(40)] + [f"k{i}" for i in range(0, 40, 2)] + ["k3", "k9"]
    some = {"outputs": ["y"]}
    return [
        spec(k, parsed=int(k[1:]) % 3 != 0, subnetwork=some if k < "k2" else None) for k in keys
    ]


def test_a_burst_writes_what_one_at_a_time_writes(stores: tuple[JobStore, JobStore]) -> None:
    pg, lite = stores
    batched = BatchedSubmissions(pg)
    fallbacks = count_fallbacks(pg)
    specs = burst()
    jobs = asyncio.run(at_once(batched, specs))
    batched.close()
    # The batches wrote every new job; only the repeats fell back (and were attached).
    assert len(fallbacks) == len(specs) - 40
    reference = [lite.submit(s) for s in specs]
    assert not [j for j in jobs if isinstance(j, BaseException)]
    # Identical work gets one job; distinct work distinct jobs, as in the reference.
    by_key: dict[str, set[int]] = {}
    for s, job in zip(specs, jobs, strict=True):
        by_key.setdefault(s.cache_key, set()).add(job.id)
    assert all(len(ids) == 1 for ids in by_key.values())
    assert len({job.id for job in jobs}) == len({j.id for j in reference}) == 40
    assert [(j.status, j.cache_key, j.options) for j in jobs] == [
        (j.status, j.cache_key, j.options) for j in reference
    ]
    assert counted(rows(pg)) == counted(rows(lite))
    stored = {job.id: job.cache_key for job in pg.get_many([job.id for job in jobs])}
    assert [stored[job.id] for job in jobs] == [s.cache_key for s in specs]


def test_a_stored_result_answers_a_batched_submission(stores: tuple[JobStore, JobStore]) -> None:
    pg, _ = stores
    batched = BatchedSubmissions(pg)
    first = asyncio.run(at_once(batched, [spec("done")]))[0]
    finish(pg, first.id, "holds")
    again, other = asyncio.run(at_once(batched, [spec("done"), spec("new")]))
    batched.close()
    assert again.cached and again.id != first.id and again.status.value == "done"
    assert not other.cached and other.status.value == "queued"


def test_a_failing_batch_falls_back_and_loses_nothing(stores: tuple[JobStore, JobStore]) -> None:
    """One submission of the batch names an artefact that does not exist: the batch's
    transaction fails as a whole; the others are then written one at a time."""
    pg, _ = stores
    batched = BatchedSubmissions(pg)
    bad = dataclasses.replace(spec("bad"), artefact="e" * 64)
    specs = [spec(f"ok{i}") for i in range(10)] + [bad] + [spec(f"ok{i}") for i in range(10, 20)]
    results = asyncio.run(at_once(batched, specs))
    batched.close()
    assert [type(r).__name__ for r in results if isinstance(r, BaseException)] == ["IntegrityError"]
    assert isinstance(results[10], BaseException)
    with pg.db.session() as s:
        keys = s.scalars(select(JobRow.cache_key)).all()
        assert sorted(keys) == sorted(f"key-ok{i}" for i in range(20))
        assert s.scalar(select(func.count()).select_from(JobEvent)) == 20


def test_a_dropped_connection_is_replaced(stores: tuple[JobStore, JobStore]) -> None:
    pg, _ = stores
    batched = BatchedSubmissions(pg)
    asyncio.run(at_once(batched, [spec("before")]))
    database = make_url(pg.db.url).database
    with pg.db.statement() as conn:  # the server ends every other session of the database
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :d AND pid <> pg_backend_pid()"
            ),
            {"d": database},
        )
    after = asyncio.run(at_once(batched, [spec(f"after{i}") for i in range(5)]))
    again = asyncio.run(at_once(batched, [spec("again")]))
    batched.close()
    assert not [r for r in after + again if isinstance(r, BaseException)]
    with pg.db.session() as s:
        assert s.scalar(select(func.count()).select_from(JobRow)) == 7


def backends(jobs: JobStore) -> set[int]:
    """The server processes of the sessions on the store's database."""
    with jobs.db.statement() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = :d"),
            {"d": make_url(jobs.db.url).database},
        ).scalars()
        return set(pids)


def test_warmed_writers_connect_before_the_first_burst(
    stores: tuple[JobStore, JobStore],
) -> None:
    pg, _ = stores
    batched = BatchedSubmissions(pg)
    batched.warm()
    warmed = {conn.info.backend_pid for conn in batched._connections}
    assert len(warmed) == MAX_WRITERS and warmed <= backends(pg)
    for burst_number in range(5):  # more batches than writers: connections are reused
        specs = [spec(f"w{burst_number}-{i}") for i in range(10)]
        jobs = asyncio.run(at_once(batched, specs))
        assert not [j for j in jobs if isinstance(j, BaseException)]
    assert {conn.info.backend_pid for conn in batched._connections} == warmed
    batched.close()
    # A backend leaves pg_stat_activity shortly after its client has gone.
    deadline = time.monotonic() + 10
    while warmed & backends(pg) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not warmed & backends(pg)


@contextlib.contextmanager
def behind_a_proxy() -> Iterator[tuple[TcpProxy, JobStore, BatchedSubmissions]]:
    """A fresh database reached through a TCP proxy that can cut the connections."""
    with fresh_database() as url:
        parsed = make_url(url)
        proxy = TcpProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
        pg = store(proxy.url_for(url))
        batched = BatchedSubmissions(pg)
        try:
            yield proxy, pg, batched
        finally:
            batched.close()
            pg.db.dispose()
            proxy.close()


def test_warming_without_a_database_is_quiet() -> None:
    with behind_a_proxy() as (proxy, _, batched):
        proxy.cut()
        batched.warm()  # no exception: the first batch connects when it can
        assert batched._connections == []
        proxy.restore()
        assert not isinstance(asyncio.run(at_once(batched, [spec("x")]))[0], BaseException)


def test_an_outage_is_a_database_error_and_then_passes(tmp_path: Path) -> None:
    with behind_a_proxy() as (proxy, pg, batched):
        asyncio.run(at_once(batched, [spec("up")]))
        proxy.cut()
        down = asyncio.run(at_once(batched, [spec(f"down{i}") for i in range(3)]))
        assert all(isinstance(r, DATABASE_DOWN) for r in down), down
        proxy.restore()
        back = asyncio.run(at_once(batched, [spec(f"back{i}") for i in range(3)]))
        assert not [r for r in back if isinstance(r, BaseException)]
        with pg.db.session() as s:
            assert s.scalar(select(func.count()).select_from(JobRow)) == 4
