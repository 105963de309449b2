"""The child process that runs one job under CPU-time and address-space limits.

The child talks to its worker over a pipe: ``("progress", dict)`` while it runs, then
``("result", dict)``, ``("memory", None)`` or ``("crash", text)``. A thread in the child
watches the pipe: when the worker dies the child kills its own process group, so no
orphaned solver outlives its worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import importlib
import multiprocessing
import os
import re
import resource
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any

DEFAULT_RUNNER = "service.worker.engine:run_job"
# Imported once by the fork server, so each job's child starts in milliseconds.
PRELOAD = [
    "service.worker.engine",
    "numpy",
    "numpy.random",
    "onnx",
    "onnxruntime",
    "z3",
    "verifiers.verify",
]
_M_ARENA_MAX = -8
_ALLOC = re.compile(r"alloc(ation)? failed|bad_alloc|unable to allocate|out of memory", re.I)


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    cpu_s: int
    idle: bool = False  # run on idle CPU time only (SCHED_IDLE), below every other process

    @classmethod
    def for_timeout(cls, timeout_s: float, memory_mb: int, idle: bool = False) -> Limits:
        # The engine stops itself at timeout_s; the CPU limit is the backstop.
        cpu_s = int(timeout_s + max(10.0, 0.5 * timeout_s)) + 1
        return cls(memory_mb=memory_mb, cpu_s=cpu_s, idle=idle)


def context() -> BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def _nothing() -> None:
    return None


def warm_up() -> None:
    """Start the fork server and let it import PRELOAD now, before any job is claimed.

    On a loaded machine that takes seconds; done after a claim, it can outlast a short
    lease, and another worker would take the job again."""
    process = context().Process(target=_nothing, name="proofwell-warm-up")
    process.start()
    process.join(timeout=120)


def resolve(runner: str) -> Callable[..., dict[str, Any]]:
    module, _, name = runner.partition(":")
    fn: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module), name)
    return fn


def apply_limits(limits: Limits) -> None:
    if limits.idle:
        run_on_idle_cpu()
    memory = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 5))
    # glibc reserves 64 MB of address space per thread arena; cap them so the
    # address-space limit measures what the solver uses, not how many threads it has.
    libc = ctypes.util.find_library("c")
    if libc:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(libc).mallopt(_M_ARENA_MAX, 2)


def run_on_idle_cpu() -> None:
    """Schedule the calling thread, and the threads it starts, only on CPU time no other
    process wants: SCHED_IDLE (the job's watchdog, started before, keeps its priority and
    still ends a starved job at its timeout). A job's own session is an autogroup of its
    own, where the worker's nice stops counting, so under a burst the jobs took a core's
    share from the API (50 clients: 1,000-1,300 submissions/s against 1,500-1,850 with
    the worker under SCHED_IDLE). Elsewhere than Linux it does nothing."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _watch_parent(conn: Connection) -> None:
    try:
        while True:
            conn.recv()
    except (EOFError, OSError):
        os.killpg(os.getpgid(0), signal.SIGKILL)


def unknown(reason: str) -> dict[str, Any]:
    """An `unknown` result for a resource limit (time or memory) with its reason."""
    return {
        "verdict": "unknown",
        "reason": reason,
        "counterexample": None,
        "stats": {"seconds": 0.0, "method": "", "subproblems": 0, "proved_fraction": 0.0},
        "certificate": None,
    }


class _Reply:
    """The pipe to the worker, shared by the job and its watchdog: one final message."""

    def __init__(self, conn: Connection) -> None:
        self.conn, self.lock, self.done = conn, threading.Lock(), False

    def progress(self, data: dict[str, Any]) -> None:
        with self.lock:
            if not self.done:
                self.conn.send(("progress", data))

    def final(self, message: tuple[str, Any]) -> bool:
        with self.lock:
            if self.done:
                return False
            self.done = True
            with contextlib.suppress(Exception):
                self.conn.send(message)
            return True


def _watchdog(reply: _Reply, timeout_s: float) -> None:
    """End the job at its timeout plus a grace, whatever it is doing (loading the model,
    preparing the property, or a solver call that does not return): `unknown`, with why."""
    reason = f"timeout ({timeout_s:g} s) reached (including loading and preparing the property)"
    if reply.final(("result", unknown(reason))):
        os.killpg(os.getpgid(0), signal.SIGKILL)


def grace_s(timeout_s: float) -> float:
    """How long past its timeout a job may take to report (the engine checks its deadline
    between steps, not within them)."""
    return min(30.0, 2.0 + 0.1 * timeout_s)


def child_main(conn: Connection, payload: dict[str, Any], limits: Limits, runner: str) -> None:
    os.setsid()  # own process group: the worker kills the job with everything it started
    threading.Thread(target=_watch_parent, args=(conn,), daemon=True).start()
    reply = _Reply(conn)
    timeout = (payload.get("options") or {}).get("timeout_s")
    if timeout:
        timer = threading.Timer(
            float(timeout) + grace_s(float(timeout)), _watchdog, (reply, timeout)
        )
        timer.daemon = True
        timer.start()
    try:
        fn = resolve(runner)
        apply_limits(limits)
        result = fn(payload, reply.progress)
        # An allocation that failed inside a library may come back as an `error` verdict.
        failed_alloc = result.get("verdict") == "error" and _ALLOC.search(result.get("reason", ""))
        reply.final(("memory", None) if failed_alloc else ("result", result))
    except BaseException as exc:  # noqa: BLE001 - reported to the worker, never swallowed
        message = (
            ("memory", None) if out_of_memory(exc) else ("crash", f"{type(exc).__name__}: {exc}")
        )
        reply.final(message)


def out_of_memory(exc: BaseException) -> bool:
    """Did the address-space limit cause this (an allocation or a library mapping failed)?"""
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
        return True
    text = str(exc)
    if isinstance(exc, ImportError):
        return "failed to map" in text or "memory" in text
    # z3 reports an allocation that failed under the address-space limit as a Z3Exception
    # ("out of memory", "bad_alloc"); other libraries as their own exception types.
    return (
        _ALLOC.search(text) is not None
        or type(exc).__name__ == "Z3Exception"
        and ("memory" in text.lower())
    )
