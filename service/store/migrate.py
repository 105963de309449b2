"""Alembic, driven from code: ``proofwell db upgrade`` and the start-up schema check."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from service.store.db import Database, normalize_url


class SchemaError(RuntimeError):
    """The database schema is missing or older than this code."""


def migrations_dir() -> Path:
    """``$PROOFWELL_MIGRATIONS``, else ``migrations/`` beside the package, else in the cwd."""
    env = os.environ.get("PROOFWELL_MIGRATIONS")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2] / "migrations", Path.cwd() / "migrations"]
    for path in candidates:
        if (path / "env.py").is_file():
            return path
    raise SchemaError("cannot find the migrations directory; set PROOFWELL_MIGRATIONS")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    # Passed as an attribute, not an ini option: URLs may hold '%' (configparser syntax).
    cfg.attributes["url"] = normalize_url(url)
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def ensure_schema(db: Database) -> None:
    """Migrate a SQLite file in place; refuse an outdated PostgreSQL schema."""
    if db.sqlite:
        upgrade(db.url)
        return
    current, head = current_revision(db), head_revision(db.url)
    if current != head:
        state = "not migrated" if current is None else f"at revision {current}, need {head}"
        raise SchemaError(
            f"the database schema is {state}: run `proofwell db upgrade --db URL` first"
        )
