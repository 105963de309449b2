"""GET /metrics: Prometheus text format, computed from the database at scrape time."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from service.api.deps import AdminAuth, ServicesDep
from service.api.schemas import problem_responses
from service.queue.states import Status

router = APIRouter(tags=["metrics"], responses=problem_responses(401, 403, 503))
BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _histogram(name: str, values: list[float]) -> list[str]:
    lines = [
        f"# HELP {name} Run time of finished (not cached) jobs in seconds.",
        f"# TYPE {name} histogram",
    ]
    for bound in BUCKETS:
        lines.append(f'{name}_bucket{{le="{bound:g}"}} {sum(v <= bound for v in values)}')
    lines.append(f'{name}_bucket{{le="+Inf"}} {len(values)}')
    lines += [f"{name}_sum {sum(values):.6f}", f"{name}_count {len(values)}"]
    return lines


def render(counts: dict[str, int], seconds: list[float], workers: int) -> str:
    lines = ["# HELP proofwell_jobs Jobs by status.", "# TYPE proofwell_jobs gauge"]
    lines += [f'proofwell_jobs{{status="{s.value}"}} {counts.get(s.value, 0)}' for s in Status]
    lines += [
        "# HELP proofwell_queue_depth Jobs waiting to be claimed.",
        "# TYPE proofwell_queue_depth gauge",
        f"proofwell_queue_depth {counts.get(Status.QUEUED.value, 0)}",
    ]
    lines += _histogram("proofwell_job_seconds", seconds)
    lines += [
        "# HELP proofwell_workers Workers seen recently.",
        "# TYPE proofwell_workers gauge",
        f"proofwell_workers {workers}",
    ]
    return "\n".join(lines) + "\n"


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(services: ServicesDep, _who: AdminAuth) -> PlainTextResponse:
    """Counts over every project: an ``admin`` token (or open mode)."""
    text = render(
        services.jobs.status_counts(),
        services.jobs.finished_seconds(),
        services.workers.seen_within(services.settings.worker_seen_s),
    )
    return PlainTextResponse(text, media_type=CONTENT_TYPE)
