"""Artefacts: uploaded bytes addressed by their sha256."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service.store.db import Database
from service.store.models import Artefact, utcnow


@dataclass(frozen=True)
class ArtefactInfo:
    id: str
    kind: str
    size: int
    filename: str | None
    meta: dict[str, Any]
    created_at: datetime


_COLUMNS = (
    Artefact.id,
    Artefact.kind,
    Artefact.size,
    Artefact.filename,
    Artefact.meta,
    Artefact.created_at,
)


def _info(row: Artefact) -> ArtefactInfo:
    return ArtefactInfo(row.id, row.kind, row.size, row.filename, row.meta, row.created_at)


class ArtefactStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(
        self, sha256: str, kind: str, data: bytes, filename: str | None, meta: dict[str, Any]
    ) -> tuple[ArtefactInfo, bool]:
        """Store the bytes unless present; return the artefact and whether it is new."""
        existing = self.get(sha256)
        if existing is not None:
            return existing, False
        row = Artefact(
            id=sha256,
            kind=kind,
            size=len(data),
            filename=filename,
            data=data,
            meta=meta,
            created_at=utcnow(),
        )
        try:
            with self.db.session() as s:
                s.add(row)
        except IntegrityError:  # the same bytes uploaded concurrently
            found = self.get(sha256)
            assert found is not None
            return found, False
        return _info(row), True

    def get(self, sha256: str) -> ArtefactInfo | None:
        with self.db.session() as s:
            found = s.execute(select(*_COLUMNS).where(Artefact.id == sha256)).first()
            return ArtefactInfo(*found) if found else None

    def many(self, ids: list[str]) -> dict[str, ArtefactInfo]:
        """The artefacts among ``ids`` (without their bytes), by id."""
        if not ids:
            return {}
        with self.db.session() as s:
            rows = s.execute(select(*_COLUMNS).where(Artefact.id.in_(set(ids))))
            return {r.id: ArtefactInfo(*r) for r in rows}

    def recent(self, limit: int = 200) -> list[ArtefactInfo]:
        """The newest artefacts first (without their bytes)."""
        with self.db.session() as s:
            stmt = select(*_COLUMNS).order_by(Artefact.created_at.desc()).limit(limit)
            return [ArtefactInfo(*r) for r in s.execute(stmt)]

    def versions(self, info: ArtefactInfo) -> list[ArtefactInfo]:
        """Uploads under the same filename, oldest first: the versions of one model."""
        if not info.filename:
            return [info]
        with self.db.session() as s:
            stmt = (
                select(*_COLUMNS)
                .where(Artefact.filename == info.filename)
                .order_by(Artefact.created_at, Artefact.id)
            )
            return [ArtefactInfo(*r) for r in s.execute(stmt)]

    def data(self, sha256: str) -> bytes | None:
        with self.db.session() as s:
            return s.scalars(select(Artefact.data).where(Artefact.id == sha256)).first()
