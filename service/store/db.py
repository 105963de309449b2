"""Engines and sessions for SQLite (the zero-configuration default) and PostgreSQL."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

# Errors that mean the database is unreachable or overloaded (retry later), not a bad query.
DATABASE_DOWN = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)

# Connections per process: the API runs up to 40 request threads, a worker a few.
POOL_SIZE = 12


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and use psycopg 3 for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(url: str) -> bool:
    return make_url(normalize_url(url)).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" hook open transactions (pysqlite's own handling would not
    # take the write lock up front, and concurrent writers would fail with SQLITE_BUSY).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # One writer at a time: take the lock when the transaction starts, so a claim never
    # loses a race half-way through. Transactions here are all a few milliseconds long.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


# JSON columns without the default ", " and ": " separators: a stored certificate is then
# the size of the file `verify --certificate` writes (about 10% smaller than with them).
compact_json = functools.partial(json.dumps, separators=(",", ":"))


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if not is_sqlite(url):
        # A fixed pool: overflow connections would be opened and closed per request under
        # load (a PostgreSQL backend started per request); threads past it wait their turn.
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=POOL_SIZE,
            max_overflow=0,
            json_serializer=compact_json,
        )
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        json_serializer=compact_json,
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


class Database:
    """An engine and its session factory; ``session()`` commits or rolls back."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url)
        self.sqlite = is_sqlite(self.url)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._factory() as s, s.begin():
            yield s

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for a read of one statement. On PostgreSQL it runs outside a
        transaction, saving the BEGIN and COMMIT round trips (a poll is mostly those); on
        SQLite it is ``session()``."""
        if self.sqlite:
            with self.session() as s:
                yield s
            return
        with self.statement() as conn, Session(conn) as s:
            yield s

    @contextmanager
    def statement(self) -> Iterator[Connection]:
        """PostgreSQL: a connection for one statement, atomic by itself, run outside a
        transaction (no BEGIN and COMMIT round trips)."""
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    def ping(self) -> bool:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True

    def dispose(self) -> None:
        self.engine.dispose()
