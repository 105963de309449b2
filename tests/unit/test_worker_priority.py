"""`serve` runs its local workers below the API's CPU priority, so requests are answered
while jobs run on the same cores."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from service import cli_service
from service.config import Settings
from service.worker.sandbox import Limits, apply_limits


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


class _Started:
    """Stands in for a worker process: records what serve starts it with."""

    started: list[dict] = []

    def __init__(self, target, args, kwargs, name) -> None:
        self.kwargs = kwargs

    def start(self) -> None:
        _Started.started.append(self.kwargs)

    def is_alive(self) -> bool:
        return False

    def join(self, timeout: float | None = None) -> None:
        pass


class _Context:
    Process = _Started


@pytest.mark.parametrize(("nice", "idle"), [(None, None), ("0", "false"), ("7", "true")])
def test_serve_starts_its_workers_at_the_configured_niceness(
    tmp_path, monkeypatch: pytest.MonkeyPatch, nice: str | None, idle: str | None
) -> None:
    import multiprocessing

    import uvicorn

    if nice is not None:
        monkeypatch.setenv("PROOFWELL_WORKER_NICE", nice)
    if idle is not None:
        monkeypatch.setenv("PROOFWELL_WORKER_IDLE_JOBS", idle)
    monkeypatch.setattr(multiprocessing, "get_context", lambda _: _Context())
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    monkeypatch.setattr(cli_service.signal, "signal", lambda *a: None)  # keep pytest's
    _Started.started = []
    cli_service.serve(db=f"sqlite:///{tmp_path}/s.db", workers=2)
    expected = 10 if nice is None else int(nice)  # 10 below the API unless configured
    assert [kwargs["nice"] for kwargs in _Started.started] == [expected, expected]
    idle_jobs = idle != "false"  # jobs on idle CPU time unless configured off
    assert [kwargs["idle_jobs"] for kwargs in _Started.started] == [idle_jobs, idle_jobs]


def _scheduled_after(limits: Limits, queue: multiprocessing.Queue) -> None:
    apply_limits(limits)
    queue.put(os.sched_getscheduler(0))


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_an_idle_job_runs_on_idle_cpu_time_only() -> None:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    for idle, policy in ((True, os.SCHED_IDLE), (False, os.SCHED_OTHER)):
        limits = Limits.for_timeout(5, memory_mb=4096, idle=idle)
        proc = ctx.Process(target=_scheduled_after, args=(limits, queue))
        proc.start()
        proc.join(timeout=30)
        assert proc.exitcode == 0
        assert queue.get(timeout=5) == policy
