"""Local execution: tasks run by the engine in a process pool, answered from the cache first."""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from service.gate.cache import ResultCache, cache_key
from service.gate.tasks import Outcome, Task
from verifiers.options import default_workers
from verifiers.result import Result, Stats, Verdict

log = logging.getLogger(__name__)

OnStart = Callable[[Task], None]
OnDone = Callable[[Outcome], None]


def execute_task(task: Task) -> dict[str, Any]:
    """Run the engine on one task (in a pool process); the result as JSON, never a raise."""
    from service.run_files import verify_files
    from verifiers.errors import VerifierError

    started = time.monotonic()
    sub = task.check.subnetwork
    try:
        result = verify_files(
            task.check.model,
            task.prop,
            task.options(),
            inputs=sub.inputs if sub else None,
            outputs=sub.outputs if sub else None,
        )
    except VerifierError as exc:
        result = _error(str(exc), started)
    except OSError as exc:
        result = _error(f"{exc.filename}: {exc.strerror}", started)
    except ValueError as exc:  # malformed JSON of a SPEC or SYSTEM file
        result = _error(f"{task.label}: {exc}", started)
    return result.to_json()


def _error(reason: str, started: float) -> Result:
    return Result(Verdict.ERROR, Stats(seconds=time.monotonic() - started), reason=reason)


def task_key(task: Task) -> str:
    sub = task.check.subnetwork
    return cache_key(
        task.check.model,
        task.prop,
        sub.to_json() if sub else None,
        {**task.options().cache_key(), "kind": task.check.kind.value},
    )


def run_local(
    tasks: Sequence[Task],
    *,
    jobs: int = 0,
    cache: ResultCache | None = None,
    on_start: OnStart | None = None,
    on_done: OnDone | None = None,
) -> list[Outcome]:
    """Run every task; outcomes in the order of `tasks`."""
    outcomes: dict[int, Outcome] = {}
    pending: list[tuple[int, str | None]] = []
    for index, task in enumerate(tasks):
        key = _key_or_none(task)
        hit = cache.get(key) if cache is not None and key is not None else None
        if hit is not None:
            outcomes[index] = Outcome(task, hit, cached=True)
            if on_done:
                on_done(outcomes[index])
        else:
            pending.append((index, key))
    jobs = jobs or default_workers()
    if jobs == 1 or len(pending) <= 1:
        for index, key in pending:
            outcomes[index] = _finish(tasks[index], key, _in_process(tasks[index], on_start), cache)
            if on_done:
                on_done(outcomes[index])
    else:
        _pool(tasks, pending, min(jobs, len(pending)), cache, outcomes, on_start, on_done)
    return [outcomes[i] for i in range(len(tasks))]


def _key_or_none(task: Task) -> str | None:
    try:
        return task_key(task)
    except OSError as exc:
        log.warning("cannot hash %s: %s", task.id, exc)
        return None


def _in_process(task: Task, on_start: OnStart | None) -> dict[str, Any]:
    if on_start:
        on_start(task)
    return execute_task(task)


def _finish(
    task: Task, key: str | None, data: dict[str, Any], cache: ResultCache | None
) -> Outcome:
    result = Result.from_json(data)
    if cache is not None and key is not None:
        cache.put(key, result)
    return Outcome(task, result)


def _pool(tasks, pending, jobs, cache, outcomes, on_start, on_done) -> None:
    # spawn, not fork: the parent may run a progress thread, and forking a threaded process
    # can deadlock the child on a lock the thread held.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        running: dict[Future[dict[str, Any]], tuple[int, str | None]] = {}
        for index, key in pending:
            if on_start:
                on_start(tasks[index])
            running[pool.submit(execute_task, tasks[index])] = (index, key)
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                index, key = running.pop(future)
                try:
                    data = future.result()
                except Exception as exc:  # a crashed worker process (e.g. out of memory)
                    reason = f"the engine process failed: {exc!r}"
                    data = Result(Verdict.ERROR, Stats(), reason=reason).to_json()
                outcomes[index] = _finish(tasks[index], key, data, cache)
                if on_done:
                    on_done(outcomes[index])
