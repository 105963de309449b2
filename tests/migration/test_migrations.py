"""The migrations and the models agree, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from service.store import migrate
from service.store.db import Database
from service.store.models import Base
from tests.integration.pg import fresh_database


def diff_after_upgrade(url: str) -> list[object]:
    migrate.upgrade(url)
    db = Database(url)
    try:
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        db.dispose()


def test_sqlite_schema_matches_models(tmp_path: Path) -> None:
    assert diff_after_upgrade(f"sqlite:///{tmp_path}/m.db") == []


def test_downgrade_then_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    migrate.upgrade(url)
    migrate.command.downgrade(migrate.alembic_config(url), "base")
    db = Database(url)
    assert set(inspect(db.engine).get_table_names()) == {"alembic_version"}
    db.dispose()
    assert diff_after_upgrade(url) == []


@pytest.mark.postgres
def test_postgres_schema_matches_models() -> None:
    with fresh_database() as url:
        assert diff_after_upgrade(url) == []


@pytest.mark.postgres
def test_postgres_refuses_an_unmigrated_schema() -> None:
    with fresh_database() as url:
        db = Database(url)
        try:
            with pytest.raises(migrate.SchemaError, match="proofwell db upgrade"):
                migrate.ensure_schema(db)
            migrate.upgrade(url)
            migrate.ensure_schema(db)
        finally:
            db.dispose()
