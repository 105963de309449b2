"""Artefacts: uploaded bytes addressed by their sha256, seen through projects.

The bytes are stored once; each project that uploaded them has a ``project_artefacts`` row
(its own file name and upload time). Reads given a project see only that project's
artefacts; reads without one (workers) see all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError

from service.store.db import Database
from service.store.models import DEFAULT_PROJECT_ID, Artefact, ProjectArtefact, utcnow

MAX_KNOWN = 10_000


@dataclass(frozen=True)
class ArtefactInfo:
    id: str
    kind: str
    size: int
    filename: str | None
    meta: dict[str, Any]
    created_at: datetime


def _select(project: int | None) -> Select[Any]:
    if project is None:
        return select(
            Artefact.id,
            Artefact.kind,
            Artefact.size,
            Artefact.filename,
            Artefact.meta,
            Artefact.created_at,
        )
    return (
        select(
            Artefact.id,
            Artefact.kind,
            Artefact.size,
            ProjectArtefact.filename,
            Artefact.meta,
            ProjectArtefact.created_at,
        )
        .join(ProjectArtefact, ProjectArtefact.artefact_id == Artefact.id)
        .where(ProjectArtefact.project_id == project)
    )


class ArtefactStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Artefacts and their project links are never changed or deleted, so a found one is
        # remembered: a submission then costs no extra round trip to look it up.
        self._known: dict[tuple[str, int | None], ArtefactInfo] = {}

    def put(
        self,
        sha256: str,
        kind: str,
        data: bytes,
        filename: str | None,
        meta: dict[str, Any],
        project: int = DEFAULT_PROJECT_ID,
    ) -> tuple[ArtefactInfo, bool]:
        """Store the bytes unless present and link them to the project; return the artefact
        and whether it is new to the project."""
        if self.get(sha256) is None:
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
                pass
        return self.link(sha256, filename, project)

    def link(
        self, sha256: str, filename: str | None, project: int = DEFAULT_PROJECT_ID
    ) -> tuple[ArtefactInfo, bool]:
        """Make stored bytes one of the project's artefacts (under ``filename``)."""
        created = False
        if self.get(sha256, project) is None:
            try:
                with self.db.session() as s:
                    s.add(
                        ProjectArtefact(
                            project_id=project,
                            artefact_id=sha256,
                            filename=filename,
                            created_at=utcnow(),
                        )
                    )
                created = True
            except IntegrityError:  # linked concurrently
                pass
        found = self.get(sha256, project)
        assert found is not None
        return found, created

    def known(self, sha256: str, project: int | None = None) -> ArtefactInfo | None:
        """The artefact if this process has read it already (no database access)."""
        return self._known.get((sha256, project))

    def get(self, sha256: str, project: int | None = None) -> ArtefactInfo | None:
        known = self._known.get((sha256, project))
        if known is not None:
            return known
        with self.db.session() as s:
            found = s.execute(_select(project).where(Artefact.id == sha256)).first()
        if found is None:
            return None
        info = ArtefactInfo(*found)
        if len(self._known) >= MAX_KNOWN:
            self._known.clear()
        self._known[(sha256, project)] = info
        return info

    def many(self, ids: list[str], project: int | None = None) -> dict[str, ArtefactInfo]:
        """The artefacts among ``ids`` (without their bytes), by id."""
        if not ids:
            return {}
        with self.db.session() as s:
            rows = s.execute(_select(project).where(Artefact.id.in_(set(ids))))
            return {r.id: ArtefactInfo(*r) for r in rows}

    def recent(self, limit: int = 200, project: int | None = None) -> list[ArtefactInfo]:
        """The newest artefacts first (without their bytes)."""
        stmt = _select(project)
        created = Artefact.created_at if project is None else ProjectArtefact.created_at
        with self.db.session() as s:
            return [ArtefactInfo(*r) for r in s.execute(stmt.order_by(created.desc()).limit(limit))]

    def versions(self, info: ArtefactInfo, project: int | None = None) -> list[ArtefactInfo]:
        """Uploads under the same filename, oldest first: the versions of one model."""
        if not info.filename:
            return [info]
        if project is None:
            named, created = Artefact.filename, Artefact.created_at
        else:
            named, created = ProjectArtefact.filename, ProjectArtefact.created_at
        with self.db.session() as s:
            stmt = _select(project).where(named == info.filename).order_by(created, Artefact.id)
            return [ArtefactInfo(*r) for r in s.execute(stmt)]

    def data(self, sha256: str) -> bytes | None:
        with self.db.session() as s:
            return s.scalars(select(Artefact.data).where(Artefact.id == sha256)).first()
