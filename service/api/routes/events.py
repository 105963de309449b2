"""GET /v1/jobs/{id}/events: server-sent events (status changes and progress).

Each event is ``id: <n>``, ``event: status|progress`` and ``data: <json>``; the stream
replays from ``Last-Event-ID`` (or the start) and ends after the job's final status. All
streams of a process share one database poller (``service.api.hub``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from service.api.deps import ReadAuth, ServicesDep
from service.api.hub import EventHub
from service.api.routes.jobs import JobId, job_or_404
from service.api.schemas import problem_responses
from service.errors import ServiceError
from service.queue.states import EventKind, Status
from service.store.jobs import Event

router = APIRouter(
    prefix="/v1/jobs", tags=["jobs"], responses=problem_responses(401, 403, 404, 422, 503)
)
KEEPALIVE_S = 15.0
MAX_EVENT_ID = 2**63 - 1


def _frame(event: Event) -> str:
    data = json.dumps({**event.data, "at": event.created_at.isoformat() + "Z"})
    return f"id: {event.id}\nevent: {event.kind.value}\ndata: {data}\n\n"


def _final(event: Event) -> bool:
    return event.kind is EventKind.STATUS and Status(event.data["status"]).terminal


async def _stream(hub: EventHub, job_id: int, after: int) -> AsyncIterator[str]:
    async for event in hub.subscribe(job_id, after, KEEPALIVE_S):
        if event is None:
            yield ": keep-alive\n\n"
            continue
        yield _frame(event)
        if _final(event):
            return


def last_event_id(value: str | None) -> int:
    """The event id to resume after: digits within 64 bits, else a 422."""
    if value is None or value == "":
        return 0
    if len(value) > 19 or not (value.isascii() and value.isdigit()) or int(value) > MAX_EVENT_ID:
        raise ServiceError(
            422,
            "Invalid request",
            "Last-Event-ID must be an event id (a non-negative integer below 2^63)",
            "invalid-request",
            [{"pointer": "/headers/last-event-id", "detail": "not an event id"}],
        )
    return int(value)


@router.get("/{job_id}/events", responses={200: {"content": {"text/event-stream": {}}}})
def job_events(
    request: Request,
    job_id: JobId,
    services: ServicesDep,
    who: ReadAuth,
    last_event_id_header: str | None = Header(default=None, alias="last-event-id"),
) -> StreamingResponse:
    after = last_event_id(last_event_id_header)
    job_or_404(services, job_id, who)
    return StreamingResponse(
        _stream(request.app.state.hub, job_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
