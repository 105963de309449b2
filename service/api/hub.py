"""One poller shared by every open server-sent event stream of an API process.

Each stream subscribes to one job from an event id; a single task reads the new events of
all subscribed jobs in one query every ``poll_s`` and hands each stream its own. With no
stream open the task ends; the next subscription starts it again. So 100 idle streams cost
one small query per interval, not 100.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from service.store.jobs import Event, JobStore

log = logging.getLogger(__name__)
BATCH = 1000


@dataclass(eq=False)
class _Subscription:
    job_id: int
    after: int
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)


class EventHub:
    def __init__(self, jobs: JobStore, poll_s: float = 0.25) -> None:
        self.jobs, self.poll_s = jobs, poll_s
        self._subs: set[_Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self.polls = 0  # how many queries the poller made (observed by tests and /metrics)

    @property
    def streams(self) -> int:
        return len(self._subs)

    async def subscribe(
        self, job_id: int, after: int, idle_s: float
    ) -> AsyncIterator[Event | None]:
        """The job's events after ``after``, in order; None after ``idle_s`` without one."""
        sub = _Subscription(job_id, after)
        self._subs.add(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="proofwell-event-hub")
        try:
            while True:
                try:
                    yield await asyncio.wait_for(sub.queue.get(), idle_s)
                except TimeoutError:
                    yield None
        finally:
            self._subs.discard(sub)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while self._subs:
            full = False
            try:
                full = await self._poll()
            except Exception:  # noqa: BLE001 - the database may be down; streams wait
                log.warning("event hub: polling failed; retrying", exc_info=True)
                await asyncio.sleep(max(1.0, self.poll_s))
            if not full:
                await asyncio.sleep(self.poll_s)

    async def _poll(self) -> bool:
        subs = list(self._subs)
        if not subs:
            return False
        wanted = {s.job_id for s in subs}
        after = min(s.after for s in subs)
        self.polls += 1
        events = await run_in_threadpool(self.jobs.events_of, sorted(wanted), after, BATCH)
        for event in events:
            for sub in subs:
                if sub.job_id == event.job_id and event.id > sub.after:
                    sub.after = event.id
                    sub.queue.put_nowait(event)
        return len(events) == BATCH
