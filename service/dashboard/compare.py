"""Compare two model versions side by side: per property, verdict, time, proved fraction and
counterexample on each, and whether the property regressed (``/compare?a=OLD&b=NEW``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from service.api.deps import PageAuth, ServicesDep
from service.regressions import fixed, regressed, representative, resource_limited, state
from service.store.cache import digest
from service.store.jobs import Job

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Side:
    job_id: int
    state: str
    seconds: float | None
    proved: float | None
    reason: str | None
    has_counterexample: bool
    limited: bool  # undecided because of a resource limit: ignored for regressions


@dataclass(frozen=True)
class Row:
    label: str
    a: Side | None
    b: Side | None
    change: str  # "regression" | "fixed" | "same" | "changed" | "new" | "dropped"


def _side(job: Job | None) -> Side | None:
    if job is None:
        return None
    stats = job.stats or {}
    proved = stats.get("proved_fraction")
    return Side(
        job.id,
        state(job),
        job.seconds,
        float(proved) if proved is not None else None,
        job.reason,
        bool(job.counterexample),
        resource_limited(job),
    )


def _change(a: Side | None, b: Side | None) -> str:
    if a is None:
        return "new"
    if b is None:
        return "dropped"
    if not b.limited and regressed(a.state, b.state):
        return "regression"
    if fixed(a.state, b.state):
        return "fixed"
    return "same" if a.state == b.state else "changed"


def compare_rows(a_jobs: list[Job], b_jobs: list[Job]) -> list[Row]:
    """One row per property checked on either version, regressions first."""
    from service.dashboard.views import property_label

    labels: dict[str, str] = {}
    runs: dict[tuple[str, str], list[Job]] = {}
    for side, jobs in (("a", a_jobs), ("b", b_jobs)):
        for job in jobs:  # oldest first
            key = digest(job.prop)
            labels.setdefault(key, property_label(job.prop))
            runs.setdefault((key, side), []).append(job)
    rows = []
    for key, label in labels.items():
        a = _side(representative(runs.get((key, "a"), [])))
        b = _side(representative(runs.get((key, "b"), [])))
        rows.append(Row(label, a, b, _change(a, b)))
    order = {"regression": 0, "changed": 1, "fixed": 2, "new": 3, "dropped": 4, "same": 5}
    return sorted(rows, key=lambda r: (order[r.change], r.label))


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    services: ServicesDep,
    who: PageAuth,
    a: Annotated[str | None, Query(max_length=64)] = None,
    b: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    from service.dashboard.routes import _page
    from service.dashboard.views import model_name, when

    project = who.project_id
    models = services.artefacts.recent(limit=200, project=project)
    info_a = services.artefacts.get(a, project) if a else None
    info_b = services.artefacts.get(b, project) if b else None
    rows: list[Row] = []
    if info_a is not None and info_b is not None:
        rows = compare_rows(
            services.jobs.history([info_a.id], project=project),
            services.jobs.history([info_b.id], project=project),
        )
    missing = [x for x, info in ((a, info_a), (b, info_b)) if x and info is None]
    return _page(
        request,
        "compare.html",
        404 if missing else 200,
        a=info_a,
        b=info_b,
        name_a=model_name(info_a, a or ""),
        name_b=model_name(info_b, b or ""),
        rows=rows,
        regressions=sum(r.change == "regression" for r in rows),
        missing=missing,
        models=[(m.id, model_name(m, m.id), when(m.created_at)) for m in models],
        when=when,
    )
