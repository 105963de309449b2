"""A fresh PostgreSQL database per test; skipped with a reason when no server answers.

The server comes from ``TEST_DATABASE_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``). With ``PROOFWELL_REQUIRE_POSTGRES=1``
(CI) an unreachable server fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from service.store.db import normalize_url

DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    return normalize_url(os.environ.get("TEST_DATABASE_URL", DEFAULT))


@contextmanager
def fresh_database() -> Iterator[str]:
    admin = create_engine(server_url(), isolation_level="AUTOCOMMIT")
    name = f"pw_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        reason = f"PostgreSQL unreachable at {server_url()}: {str(exc).splitlines()[0]}"
        if os.environ.get("PROOFWELL_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        url = make_url(server_url()).set(database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
