"""Dashboard login: paste an API token once; it is kept in a Secure, HttpOnly, SameSite=Strict
cookie (JavaScript cannot read it, other sites' requests do not carry it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from service.api.deps import SESSION_COOKIE, LoginRequired, ServicesDep
from service.dashboard.routes import templates

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only a path on this server (no scheme, no host, no '//' or '\\' tricks)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target if len(target) <= 2000 and "\\" not in target else "/"


def _form(request: Request, error: str | None, status: int, target: str) -> HTMLResponse:
    context = {"error": error, "next": _safe_next(target)}
    return templates().TemplateResponse(request, "login.html", context, status_code=status)


async def login_redirect(request: Request, _exc: Exception) -> Response:
    """The handler of LoginRequired: a page asked for without a session."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    from urllib.parse import quote

    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return _form(request, None, 200, next)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    services: ServicesDep,
    token: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    if services.tokens.verify(token.strip()) is None:
        return _form(request, "That token is not valid (revoked, expired or mistyped).", 401, next)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token.strip(),
        max_age=int(services.settings.session_hours * 3600),
        path="/",
        secure=services.settings.cookie_secure,
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


__all__ = ["LoginRequired", "login_redirect", "router"]
