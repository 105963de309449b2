"""Projects and API tokens: create, list, revoke, verify.

A token reads ``pw_<id>_<secret>``: ``id`` (12 hex digits) finds the row, ``secret`` (32
random bytes, base64url) is checked against its argon2id hash (argon2-cffi). Only the hash
is stored; the token is shown once, when created.

argon2 is slow on purpose (tens of milliseconds); a verified token's sha256 is remembered in
memory for ``VERIFIED_TTL_S`` so a busy client is not hashed on every request. The row is
still read on every request, so a revoked or expired token stops working at once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service.store.db import Database
from service.store.models import DEFAULT_PROJECT, ApiToken, Project, utcnow

TOKEN_RE = re.compile(r"^pw_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
VERIFIED_TTL_S = 60.0
_MAX_REMEMBERED = 10_000


class Scope(StrEnum):
    """``read`` sees, ``submit`` uploads, submits and cancels, ``admin`` does everything
    (and reads /metrics)."""

    READ = "read"
    SUBMIT = "submit"
    ADMIN = "admin"


def parse_scopes(text: str) -> frozenset[Scope]:
    """``"read,submit"`` -> scopes; a ValueError names an unknown one."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise ValueError("give at least one scope: read, submit, admin")
    try:
        return frozenset(Scope(n) for n in names)
    except ValueError:
        bad = next(n for n in names if n not in {s.value for s in Scope})
        raise ValueError(f"unknown scope {bad!r}: use read, submit or admin") from None


def grants(held: frozenset[Scope], needed: Scope) -> bool:
    return Scope.ADMIN in held or needed in held


@dataclass(frozen=True)
class Principal:
    """Who is asking: a project and what the token may do there."""

    project_id: int
    project: str
    scopes: frozenset[Scope]
    token_id: str | None = None  # None in open mode


@dataclass(frozen=True)
class TokenInfo:
    id: str
    project: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenStore:
    def __init__(self, db: Database, hasher: PasswordHasher | None = None) -> None:
        self.db = db
        self.hasher = hasher or PasswordHasher()
        self._verified: dict[str, tuple[str, float]] = {}  # sha256(token) -> (id, when)
        self._lock = threading.Lock()

    # -- projects --------------------------------------------------------------------------
    def project_id(self, name: str, create: bool = False) -> int | None:
        """The id of project ``name`` (made when ``create``); None when absent."""
        with self.db.session() as s:
            found = s.scalars(select(Project.id).where(Project.name == name)).first()
            if found is not None or not create:
                return found
        if not PROJECT_RE.match(name):
            raise ValueError(
                f"project name {name!r}: use 1-64 of a-z, 0-9, '_', '.', '-' (start alphanumeric)"
            )
        try:
            with self.db.session() as s:
                row = Project(name=name, created_at=utcnow())
                s.add(row)
                s.flush()
                return row.id
        except IntegrityError:  # made concurrently
            return self.project_id(name)

    # -- tokens ----------------------------------------------------------------------------
    def create(
        self, project: str, name: str, scopes: frozenset[Scope], expires_days: float | None = None
    ) -> tuple[str, TokenInfo]:
        """A new token (returned once, in clear) and its stored description."""
        project_id = self.project_id(project or DEFAULT_PROJECT, create=True)
        assert project_id is not None
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        now = utcnow()
        row = ApiToken(
            id=token_id,
            project_id=project_id,
            name=name[:128],
            scopes=",".join(sorted(s.value for s in scopes)),
            secret_hash=self.hasher.hash(secret),
            created_at=now,
            expires_at=now + timedelta(days=expires_days) if expires_days else None,
        )
        with self.db.session() as s:
            s.add(row)
        return f"pw_{token_id}_{secret}", self._info(row, project)

    def revoke(self, token_id: str) -> bool:
        """Revoke a token by id (or by the whole token); False when no live token matched."""
        match = TOKEN_RE.match(token_id)
        token_id = match.group(1) if match else token_id
        with self.db.session() as s:
            row = s.get(ApiToken, token_id)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = utcnow()
        with self._lock:
            self._verified = {k: v for k, v in self._verified.items() if v[0] != token_id}
        return True

    def list(self, project: str | None = None) -> list[TokenInfo]:
        stmt = select(ApiToken, Project.name).join(Project, Project.id == ApiToken.project_id)
        if project:
            stmt = stmt.where(Project.name == project)
        with self.db.session() as s:
            rows = s.execute(stmt.order_by(Project.name, ApiToken.created_at)).all()
            return [self._info(row, name) for row, name in rows]

    def any(self) -> bool:
        with self.db.session() as s:
            return s.scalars(select(ApiToken.id).limit(1)).first() is not None

    def verify(self, token: str) -> Principal | None:
        """The principal of a live token; None for anything else (same answer, no detail)."""
        match = TOKEN_RE.match(token)
        if match is None:
            return None
        token_id, secret = match.groups()
        with self.db.session() as s:
            found = s.execute(
                select(ApiToken, Project.name)
                .join(Project, Project.id == ApiToken.project_id)
                .where(ApiToken.id == token_id)
            ).first()
        if found is None:
            return None
        row, project = found
        if row.revoked_at is not None or (row.expires_at and row.expires_at <= utcnow()):
            return None
        if not self._seen(token, token_id) and not self._check(row.secret_hash, secret):
            return None
        self._remember(token, token_id)
        scopes = frozenset(Scope(s) for s in row.scopes.split(",") if s)
        return Principal(row.project_id, project, scopes, token_id)

    def _check(self, secret_hash: str, secret: str) -> bool:
        try:
            return self.hasher.verify(secret_hash, secret)
        except (VerificationError, InvalidHashError):
            return False

    def _seen(self, token: str, token_id: str) -> bool:
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            hit = self._verified.get(key)
        if hit is None or time.monotonic() - hit[1] > VERIFIED_TTL_S:
            return False
        return hmac.compare_digest(hit[0], token_id)

    def _remember(self, token: str, token_id: str) -> None:
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            if len(self._verified) >= _MAX_REMEMBERED:
                self._verified.clear()
            self._verified[key] = (token_id, time.monotonic())

    @staticmethod
    def _info(row: ApiToken, project: str) -> TokenInfo:
        return TokenInfo(
            row.id,
            project,
            row.name,
            tuple(row.scopes.split(",")),
            row.created_at,
            row.expires_at,
            row.revoked_at,
        )
