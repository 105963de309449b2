"""All SSE streams of a process share one database poller."""

from __future__ import annotations

import asyncio
from pathlib import Path

from service.api.hub import EventHub
from service.store.db import Database
from service.store.jobs import JobSpec, JobStore
from service.store.migrate import upgrade
from service.store.models import Artefact


def test_streams_share_one_poller_and_get_their_own_events(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/h.db"
    upgrade(url)
    db = Database(url)
    with db.session() as s:
        s.add(Artefact(id="a", kind="onnx", size=1, filename=None, data=b"x", meta={}))
    jobs = JobStore(db)
    ids = [
        jobs.submit(JobSpec("a", {"vnnlib": str(i)}, str(i), None, {}, f"key-{i}")).id
        for i in range(100)
    ]
    hub = EventHub(jobs, poll_s=0.1)

    async def main() -> tuple[list[list[int]], int]:
        async def first_two(job_id: int) -> list[int]:
            got: list[int] = []
            async for event in hub.subscribe(job_id, 0, idle_s=5):
                assert event is not None and event.job_id == job_id
                got.append(event.id)
                if len(got) == 2:
                    return got
            return got

        tasks = [asyncio.create_task(first_two(i)) for i in ids]
        await asyncio.sleep(1.0)  # 100 idle streams (each has seen its "queued" event)
        polls = hub.polls
        await asyncio.to_thread(jobs.cancel, ids[7])
        await asyncio.to_thread(lambda: [jobs.cancel(i) for i in ids if i != ids[7]])
        done = await asyncio.gather(*tasks)
        await hub.close()
        return done, polls

    done, polls = asyncio.run(main())
    db.dispose()
    assert polls <= 15, f"{polls} queries in 1 s for 100 streams"
    for job_id, events in zip(ids, done, strict=True):
        assert len(events) == 2 and events == sorted(events)
        assert [e.id for e in jobs.events_after(job_id)] == events
    assert hub.streams == 0
