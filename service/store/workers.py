"""Worker registrations and heartbeats (for /healthz and /metrics)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from service.store.db import Database
from service.store.models import WorkerRow, utcnow


class WorkerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def register(self, worker_id: str, hostname: str, pid: int, concurrency: int) -> None:
        now = utcnow()
        with self.db.session() as s:
            s.add(
                WorkerRow(
                    id=worker_id,
                    hostname=hostname,
                    pid=pid,
                    concurrency=concurrency,
                    running=0,
                    started_at=now,
                    last_seen=now,
                )
            )

    def beat(self, worker_id: str, running: int) -> None:
        with self.db.session() as s:
            s.execute(
                update(WorkerRow)
                .where(WorkerRow.id == worker_id)
                .values(last_seen=utcnow(), running=running)
            )

    def stop(self, worker_id: str) -> None:
        with self.db.session() as s:
            s.execute(
                update(WorkerRow)
                .where(WorkerRow.id == worker_id)
                .values(stopped_at=utcnow(), running=0)
            )

    def seen_within(self, seconds: float) -> int:
        since = utcnow() - timedelta(seconds=seconds)
        with self.db.session() as s:
            stmt = select(func.count()).where(
                WorkerRow.last_seen >= since, WorkerRow.stopped_at.is_(None)
            )
            return s.scalar(stmt) or 0
