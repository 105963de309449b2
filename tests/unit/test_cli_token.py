"""`proofwell token create|list|revoke` and how `serve` decides open mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from service.cli import app
from service.cli_service import resolve_auth
from service.config import Settings
from service.store.db import Database
from service.store.tokens import TokenStore


def test_create_list_revoke(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/t.db"
    runner = CliRunner()
    made = runner.invoke(
        app, ["token", "create", "--project", "team-a", "--scopes", "read,submit", "--db", db]
    )
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("pw_")
    database = Database(db)
    who = TokenStore(database).verify(token)
    assert who is not None and who.project == "team-a"
    listed = runner.invoke(app, ["token", "list", "--json", "--db", db])
    rows = json.loads(listed.stdout)
    assert [(r["project"], r["scopes"], r["revoked"]) for r in rows] == [
        ("team-a", ["read", "submit"], False)
    ]
    assert token.split("_")[2] not in listed.stdout  # never the secret
    assert runner.invoke(app, ["token", "revoke", rows[0]["id"], "--db", db]).exit_code == 0
    assert TokenStore(database).verify(token) is None
    assert runner.invoke(app, ["token", "revoke", rows[0]["id"], "--db", db]).exit_code == 1
    bad = runner.invoke(app, ["token", "create", "--scopes", "write", "--db", db])
    assert bad.exit_code == 3 and "unknown scope" in bad.output
    database.dispose()


@pytest.mark.parametrize(
    ("auth", "host", "open_mode"),
    [
        ("auto", "127.0.0.1", True),
        ("auto", "::1", True),
        ("auto", "localhost", True),
        ("auto", "0.0.0.0", False),
        ("auto", "192.168.1.5", False),
        ("tokens", "127.0.0.1", False),
        ("open", "127.0.0.1", True),
    ],
)
def test_open_mode_only_on_loopback(auth: str, host: str, open_mode: bool) -> None:
    settings = resolve_auth(Settings(auth=auth), host)  # type: ignore[arg-type]
    assert settings.open_mode is open_mode


def test_open_mode_off_loopback_is_refused() -> None:
    with pytest.raises(typer.Exit):
        resolve_auth(Settings(auth="open"), "0.0.0.0")
