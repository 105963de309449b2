"""`serve` runs its local workers below the API's CPU priority, so requests are answered
while jobs run on the same cores."""

from __future__ import annotations

import multiprocessing
import os

from service import cli_service
from service.config import Settings


class _Recorder:
    """Stands in for the worker loop: reports the niceness the loop would run at."""

    queue: multiprocessing.Queue

    def __init__(self, *_: object, **__: object) -> None:
        pass

    def request_stop(self, *_: object) -> None:
        pass

    def run(self, migrate: bool = True) -> None:
        self.queue.put(os.nice(0))


def _worker_at(nice: int, queue: multiprocessing.Queue) -> None:
    import service.worker.main as worker_main

    _Recorder.queue = queue
    worker_main.Worker = _Recorder  # type: ignore[misc]
    cli_service.run_worker(Settings(database_url="sqlite://"), 1, False, nice=nice)


def test_a_worker_runs_at_the_niceness_it_is_given() -> None:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    base = os.nice(0)
    for nice in (0, 10):
        proc = ctx.Process(target=_worker_at, args=(nice, queue))
        proc.start()
        proc.join(timeout=30)
        assert proc.exitcode == 0
        assert queue.get(timeout=5) == min(19, base + nice)


def test_serve_lowers_its_workers_by_default() -> None:
    assert Settings(database_url="sqlite://").worker_nice == 10
    assert Settings(database_url="sqlite://", worker_nice=0).worker_nice == 0
