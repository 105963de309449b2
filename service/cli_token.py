"""``proofwell token create|revoke|list``: API tokens, per project and scope.

Tokens are made directly in the database (``--db``, else ``$DATABASE_URL``), so only someone
who can reach the database can mint them. A token is printed once, when created; only its
argon2 hash is stored.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from service.cli_service import DbOpt, _err, _settings

app = typer.Typer(help="API tokens (hashed), per project and scope.", no_args_is_help=True)


def _store(db: str | None):  # noqa: ANN202 - imported lazily (SQLAlchemy, argon2)
    from service.store.db import Database
    from service.store.migrate import ensure_schema
    from service.store.tokens import TokenStore

    database = Database(_settings(db).database_url)
    ensure_schema(database)
    return TokenStore(database)


@app.command("create")
def create(
    project: Annotated[str, typer.Option(help="Project (made when new)")] = "default",
    scopes: Annotated[str, typer.Option(help="Comma-separated: read, submit, admin")] = (
        "read,submit"
    ),
    name: Annotated[str, typer.Option(help="What the token is for (shown by list)")] = "",
    expires_days: Annotated[
        float | None, typer.Option(min=0.001, help="Days until it expires (default: never)")
    ] = None,
    db: DbOpt = None,
) -> None:
    """Create a token and print it (once: it cannot be shown again)."""
    from service.store.tokens import parse_scopes

    try:
        wanted = parse_scopes(scopes)
        token, info = _store(db).create(project, name, wanted, expires_days)
    except ValueError as exc:
        _err().print(f"[red]error:[/red] {exc}")
        raise typer.Exit(3) from None
    _err().print(
        f"token {info.id} for project '{info.project}' with scopes {', '.join(info.scopes)}"
        " (shown once; send it as 'Authorization: Bearer <token>' or set PROOFWELL_TOKEN):"
    )
    typer.echo(token)


@app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (or the whole token)")],
    db: DbOpt = None,
) -> None:
    """Revoke a token: it stops working at once."""
    if not _store(db).revoke(token_id):
        _err().print(f"[red]error:[/red] no live token {token_id!r}")
        raise typer.Exit(1)
    _err().print(f"token {token_id} revoked")


@app.command("list")
def list_tokens(
    project: Annotated[str | None, typer.Option(help="Only this project")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON array")] = False,
    db: DbOpt = None,
) -> None:
    """List tokens (never their secrets): id, project, name, scopes, state."""
    rows = [
        {
            "id": t.id,
            "project": t.project,
            "name": t.name,
            "scopes": list(t.scopes),
            "created_at": t.created_at.isoformat() + "Z",
            "expires_at": t.expires_at.isoformat() + "Z" if t.expires_at else None,
            "revoked": t.revoked_at is not None,
        }
        for t in _store(db).list(project)
    ]
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "project", "name", "scopes", "created", "expires", "state")
    for r in rows:
        state = "revoked" if r["revoked"] else "live"
        table.add_row(
            r["id"],
            r["project"],
            r["name"],
            ",".join(r["scopes"]),
            r["created_at"][:19],
            (r["expires_at"] or "never")[:19],
            state,
        )
    Console().print(table)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="token")
