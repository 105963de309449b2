"""A placeholder ``/`` page; the real dashboard replaces this router."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from service.api.deps import ServicesDep

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def overview(services: ServicesDep) -> HTMLResponse:
    counts = services.jobs.status_counts()
    rows = "".join(f"<li>{escape(k)}: {n}</li>" for k, n in sorted(counts.items()))
    body = (
        "<!doctype html><html><head><meta charset='utf-8'><title>proofwell</title></head>"
        "<body><h1>proofwell</h1><p>Verification service. API: <a href='/docs'>/docs</a>, "
        "<a href='/v1/jobs'>/v1/jobs</a>, <a href='/metrics'>/metrics</a>.</p>"
        f"<h2>Jobs</h2><ul>{rows or '<li>none yet</li>'}</ul></body></html>"
    )
    return HTMLResponse(body)
