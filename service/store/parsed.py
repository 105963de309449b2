"""Parsed properties, stored once at submission so the pages that show a property (the
job page's cases, a counterexample's violated constraints) never parse its source again.
Keyed by the property's digest and the model sizes it was parsed for."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from service.store.db import Database
from service.store.models import ParsedProperty, utcnow


def parsed_key(property_hash: str, sizes: tuple[int, int]) -> str:
    """``property_hash``: the property's digest (service.store.cache.digest)."""
    return f"{property_hash}:{sizes[0]}x{sizes[1]}"


def store_parsed(s: Session, key: str, data: dict[str, Any]) -> None:
    """Store a parsed property unless it is stored already (properties never change)."""
    insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(ParsedProperty).values(key=key, data=data, created_at=utcnow())
    s.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))


def load_parsed(db: Database, key: str) -> dict[str, Any] | None:
    with db.session() as s:
        return s.scalars(select(ParsedProperty.data).where(ParsedProperty.key == key)).first()
