"""The dashboard: server-rendered pages over the stores, behind the API's read scope.

``/`` overview, ``/jobs`` the filterable job table, ``/jobs/{id}`` one job,
``/models/{artefact}`` one model across its versions, ``/static/dashboard/*`` the assets.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache, partial
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape

from service.api.deps import PageAuth, Services, ServicesDep
from service.dashboard import charts, job_extras, views
from service.names import labels_of
from service.queue.states import Status
from service.store.job_search import JobQuery, recent_properties, search
from service.store.parsed import load_parsed

HERE = Path(__file__).parent
STATIC = {"dashboard.css": "text/css", "live.js": "text/javascript", "copy.js": "text/javascript"}
PAGE_SIZE = 25
VERDICTS = ("holds", "violated", "unknown", "error")
# Words that pick out the common reasons a job ended undecided or failed.
REASONS = ("timeout", "memory", "cancelled", "worker", "unsupported", "invalid")

router = APIRouter(include_in_schema=False)


@cache
def templates() -> Jinja2Templates:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = charts.fmt
    return Jinja2Templates(env=env)


def _page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return templates().TemplateResponse(request, template, context, status_code=status_code)


def _missing(request: Request, what: str, ident: str) -> HTMLResponse:
    return _page(request, "missing.html", 404, what=what, ident=ident)


@router.get("/static/dashboard/{name}")
def asset(name: str) -> FileResponse:
    """The dashboard's own CSS and JS, from the package (no CDN)."""
    if name not in STATIC:
        from service.errors import not_found

        raise not_found("asset", name)
    return FileResponse(
        HERE / "static" / name,
        media_type=STATIC[name],
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, services: ServicesDep, who: PageAuth) -> HTMLResponse:
    project = who.project_id
    verdicts = services.jobs.verdict_counts(project)
    statuses = services.jobs.status_counts(project)
    recent, total = services.jobs.list(limit=10, project=project)
    finished, _ = services.jobs.list(status=Status.DONE.value, limit=60, project=project)
    latest = services.jobs.latest_per_property(project=project)
    infos = services.artefacts.many([j.artefact for j in recent + latest], project)
    points = [
        charts.TimePoint(j.id, j.seconds, j.verdict or "unknown")
        for j in reversed(finished)
        if j.seconds is not None and not j.cached
    ]
    return _page(
        request,
        "overview.html",
        verdicts={v: verdicts.get(v, 0) for v in VERDICTS},
        statuses=statuses,
        total=total,
        recent=views.job_rows(recent, infos),
        chart=charts.solve_time_chart(points, "Solve time of recent jobs (log scale)"),
        models=views.model_summaries(latest, infos),
    )


def _filter_value(value: str | None, allowed: tuple[str, ...]) -> str | None:
    return value if value in allowed else None


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    services: ServicesDep,
    who: PageAuth,
    status: str | None = None,
    verdict: str | None = None,
    model: str | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    prop: Annotated[str | None, Query(alias="property", max_length=64)] = None,
    reason: Annotated[str | None, Query(max_length=200)] = None,
    since: str | None = None,
    until: str | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    query = JobQuery(
        text=(q or "").strip() or None,
        status=_filter_value(status, tuple(s.value for s in Status)),
        verdict=_filter_value(verdict, VERDICTS),
        artefact=model or None,
        property_hash=prop or None,
        reason=(reason or "").strip() or None,
        since=_day(since),
        until=_day(until, end=True),
        project=who.project_id,
    )
    jobs, total = search(services.db, query, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    models = services.artefacts.recent(limit=200, project=who.project_id)
    infos = {m.id: m for m in models} | services.artefacts.many(
        [j.artefact for j in jobs], who.project_id
    )
    pages = max(1, -(-total // PAGE_SIZE))
    filters = _filters(query, since, until)

    def link(n: int) -> str:
        return "/jobs?" + urlencode({**filters, "page": n})

    return _page(
        request,
        "jobs.html",
        rows=views.job_rows(jobs, infos),
        total=total,
        page=page,
        pages=pages,
        prev_link=link(page - 1) if page > 1 else None,
        next_link=link(page + 1) if page < pages else None,
        filters=filters,
        statuses=[s.value for s in Status],
        verdicts=VERDICTS,
        models=[(m.id, views.model_name(m, m.id)) for m in models],
        properties=[
            (h, views.property_label(p))
            for h, p in recent_properties(services.db, project=who.project_id)
        ],
        reasons=REASONS,
    )


def _filters(query: JobQuery, since: str | None, until: str | None) -> dict[str, str]:
    """The filters in force, as query parameters (for the form and the page links)."""
    pairs = (
        ("q", query.text),
        ("status", query.status),
        ("verdict", query.verdict),
        ("model", query.artefact),
        ("property", query.property_hash),
        ("reason", query.reason),
        ("since", since if query.since else None),
        ("until", until if query.until else None),
    )
    return {k: v for k, v in pairs if v}


def _day(value: str | None, end: bool = False) -> datetime | None:
    """A ``YYYY-MM-DD`` date as a UTC datetime (the next midnight for an ``until``)."""
    try:
        day = datetime.strptime(value or "", "%Y-%m-%d")
    except ValueError:
        return None
    return day + timedelta(days=1) if end else day


def _sizes(services: Services, job: Any, cex: dict[str, Any] | None) -> tuple[int, int] | None:
    """The component's input and output sizes, where known without loading the model."""
    if cex and cex.get("inputs") is not None and cex.get("outputs") is not None:
        return len(cex["inputs"]), len(cex["outputs"])
    info = services.artefacts.get(job.artefact, job.project_id)
    if info is None or job.subnetwork or "n_inputs" not in info.meta:
        return None
    return int(info.meta["n_inputs"]), int(info.meta["n_outputs"])


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str, services: ServicesDep, who: PageAuth) -> HTMLResponse:
    valid = job_id.isascii() and job_id.isdigit() and len(job_id) < 11 and int(job_id) < 2**31
    job = services.jobs.get(int(job_id), who.project_id) if valid else None
    if job is None:
        return _missing(request, "job", job_id[:80])
    info = services.artefacts.get(job.artefact, who.project_id)
    parsed, problem = (None, None)
    if info is not None and info.kind == "onnx":
        sizes = _sizes(services, job, job.counterexample)
        stored = partial(load_parsed, services.db)
        parsed, problem = views.parse_property(job.prop, sizes, stored)
    cex = trace = None
    if job.verdict == "violated" and job.counterexample and job.status is Status.DONE:
        trace = job_extras.trace_view(job)
        spec = job.prop.get("spec") if info is not None and info.kind == "module" else None
        stepped = trace is not None and trace.kind == "steps"
        if "system" not in job.prop and not stepped:  # a trace says it all, with names
            labels = {**job_extras.tensor_labels(job, info), **labels_of(job.prop)}
            cex = views.counterexample_view(job.counterexample, parsed, spec, labels)
    has_certificate = (
        job.verdict == "holds" and services.jobs.certificate(job.id, who.project_id) is not None
    )
    return _page(
        request,
        "job.html",
        job=job,
        state=views.state_of(job),
        live=not job.status.terminal,
        model=views.model_name(info, job.artefact),
        prop=views.property_view(job.prop, parsed, problem),
        cex=cex,
        trace=trace,
        has_certificate=has_certificate,
        downloads=job_extras.downloads(job, info, has_certificate),
        command=job_extras.command(job, info),
        elapsed=job_extras.elapsed_s(job),
        tensors=job_extras.tensor_note(job, info) if cex is not None else None,
        info=info,
        when=views.when,
    )


@router.get("/models/{artefact}", response_class=HTMLResponse)
def model_page(
    request: Request, artefact: str, services: ServicesDep, who: PageAuth
) -> HTMLResponse:
    info = services.artefacts.get(artefact[:64], who.project_id)
    if info is None:
        return _missing(request, "model", artefact[:80])
    versions = services.artefacts.versions(info, who.project_id)
    jobs = services.jobs.history([v.id for v in versions], project=who.project_id)
    histories, points = views.property_histories(jobs, versions)
    chart = charts.history_chart(
        [h.label for h in histories], points, "Verdicts over time, one line per property"
    )
    return _page(
        request,
        "model.html",
        info=info,
        name=views.model_name(info, info.id),
        versions=versions,
        current=next(k for k, v in enumerate(versions) if v.id == info.id),
        histories=histories,
        regressions=sum(h.regression for h in histories),
        chart=chart,
        when=views.when,
    )


def _include_pages() -> None:
    """Pages with their own modules, served under this router."""
    from service.dashboard import compare

    router.include_router(compare.router)


_include_pages()
