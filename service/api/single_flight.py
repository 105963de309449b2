"""One blocking read for many concurrent requests that want the same thing.

A burst of requests about something the process has not read yet (a model's metadata on
first use) would otherwise read it once per request, each in a thread of its own: dozens of
threads then take turns at the GIL with the event loop, and every request in the process,
the quick ones included, waits behind them.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from starlette.concurrency import run_in_threadpool

V = TypeVar("V")


class SingleFlight(Generic[V]):
    """``run(key, read)``: ``read()`` in a thread, shared by every caller asking for ``key``
    while it runs (a caller that goes away does not cancel it for the others)."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Task[V]] = {}

    async def run(self, key: Hashable, read: Callable[[], V]) -> V:
        loop = asyncio.get_running_loop()
        task = self._running.get(key)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(run_in_threadpool(read))
            self._running[key] = task
            task.add_done_callback(functools.partial(self._forget, key))
        return await asyncio.shield(task)

    def _forget(self, key: Hashable, task: asyncio.Task[V]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
