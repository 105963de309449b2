"""ASGI middleware that guards every route: security headers, cross-site requests, body size.

Pure ASGI (not ``BaseHTTPMiddleware``) so server-sent event streams pass through untouched.

Cross-site requests follow Go's ``net/http.CrossOriginProtection``: a state-changing request
(POST, PUT, PATCH, DELETE) is refused with 403 when a browser says it comes from another site
(``Sec-Fetch-Site: cross-site|same-site``, or an ``Origin`` whose host is not the ``Host``
addressed). Requests without either header are not from a browser (curl, the CLI, httpx) and
pass; so do requests carrying an ``Authorization`` header, which a form cannot send.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# Swagger UI and ReDoc load their bundles from jsdelivr and start with an inline script.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data: https://fastapi.tiangolo.com; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; worker-src blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")
COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class SecurityHeaders:
    """CSP, nosniff, frame denial and friends on every response (API, pages, errors)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope["path"].startswith(DOCS_PATHS) else PAGE_CSP
        extra = [*COMMON_HEADERS, (b"content-security-policy", csp.encode())]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", ())}
                message["headers"] = [
                    *message.get("headers", ()),
                    *((k, v) for k, v in extra if k not in names),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def cross_site(scope: Scope) -> str | None:
    """Why a state-changing request is refused as cross-site, or None to let it through."""
    if scope["method"] not in UNSAFE or _header(scope, b"authorization") is not None:
        return None
    site = _header(scope, b"sec-fetch-site")
    if site is not None:
        return None if site in ("same-origin", "none") else f"Sec-Fetch-Site: {site}"
    origin = _header(scope, b"origin")
    if origin is None:
        return None  # not a browser
    host = _header(scope, b"host") or ""
    if origin != "null" and urlsplit(origin).netloc.lower() == host.lower():
        return None
    return f"Origin {origin} is not this server ({host})"


async def _send_problem(
    send: Send, status: int, title: str, detail: str, path: str, **extra: Any
) -> None:
    body = json.dumps(
        {
            "type": f"/problems/{title.lower().replace(' ', '-')}",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": path,
            **extra,
        }
    ).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class CrossSiteGuard:
    """Refuse state-changing requests that a browser sends on behalf of another site."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        why = cross_site(scope) if scope["type"] == "http" else None
        if why is None:
            await self.app(scope, receive, send)
            return
        detail = (
            f"cross-site request refused ({why}); send the request from this server's own "
            "pages, or with an Authorization header"
        )
        await _send_problem(send, 403, "Cross-site request", detail, scope["path"])


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds the limit of {limit} bytes")


class BodyLimit:
    """Refuse bodies over a limit while they stream in (Content-Length or not).

    ``limit_for(path)`` gives the limit in bytes and the JSON pointer to blame; the request
    fails with 413 as soon as the bytes received pass it, before anything is spooled further.
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], tuple[int, str]]) -> None:
        self.app, self.limit_for = app, limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, pointer = self.limit_for(scope["path"])
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            detail = f"the request body ({declared} bytes) exceeds the limit of {limit} bytes"
            errors = [{"pointer": pointer, "limit_bytes": limit}]
            await _send_problem(
                send, 413, "Payload too large", detail, scope["path"], errors=errors
            )
            return
        received = 0

        async def counting() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counting, send)
