"""GET /v1/jobs/{id}/events: server-sent events (status changes and progress).

Each event is ``id: <n>``, ``event: status|progress`` and ``data: <json>``; the stream
replays from ``Last-Event-ID`` (or the start) and ends after the job's final status.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from service.api.deps import Read, Services, ServicesDep
from service.errors import not_found
from service.queue.states import EventKind, Status
from service.store.jobs import Event

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
POLL_S = 0.25
KEEPALIVE_S = 15.0


def _frame(event: Event) -> str:
    data = json.dumps({**event.data, "at": event.created_at.isoformat() + "Z"})
    return f"id: {event.id}\nevent: {event.kind.value}\ndata: {data}\n\n"


def _final(event: Event) -> bool:
    return event.kind is EventKind.STATUS and Status(event.data["status"]).terminal


async def _stream(services: Services, job_id: int, after: int) -> AsyncIterator[str]:
    idle = 0.0
    while True:
        events = await run_in_threadpool(services.jobs.events_after, job_id, after)
        for event in events:
            after = event.id
            yield _frame(event)
            if _final(event):
                return
        if events:
            idle = 0.0
            continue
        await asyncio.sleep(POLL_S)
        idle += POLL_S
        if idle >= KEEPALIVE_S:
            idle = 0.0
            yield ": keep-alive\n\n"


@router.get(
    "/{job_id}/events", dependencies=[Read], responses={200: {"content": {"text/event-stream": {}}}}
)
def job_events(
    job_id: int, services: ServicesDep, last_event_id: str | None = Header(default=None)
) -> StreamingResponse:
    if services.jobs.get(job_id) is None:
        raise not_found("job", job_id)
    after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
    return StreamingResponse(
        _stream(services, job_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
