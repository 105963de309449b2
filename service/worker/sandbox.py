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

    @classmethod
    def for_timeout(cls, timeout_s: float, memory_mb: int) -> Limits:
        # The engine stops itself at timeout_s; the CPU limit is the backstop.
        return cls(memory_mb=memory_mb, cpu_s=int(timeout_s + max(10.0, 0.5 * timeout_s)) + 1)


def context() -> BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def resolve(runner: str) -> Callable[..., dict[str, Any]]:
    module, _, name = runner.partition(":")
    fn: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module), name)
    return fn


def apply_limits(limits: Limits) -> None:
    memory = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 5))
    # glibc reserves 64 MB of address space per thread arena; cap them so the
    # address-space limit measures what the solver uses, not how many threads it has.
    libc = ctypes.util.find_library("c")
    if libc:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(libc).mallopt(_M_ARENA_MAX, 2)


def _watch_parent(conn: Connection) -> None:
    try:
        while True:
            conn.recv()
    except (EOFError, OSError):
        os.killpg(os.getpgid(0), signal.SIGKILL)


def child_main(conn: Connection, payload: dict[str, Any], limits: Limits, runner: str) -> None:
    os.setsid()  # own process group: the worker kills the job with everything it started
    threading.Thread(target=_watch_parent, args=(conn,), daemon=True).start()
    try:
        fn = resolve(runner)
        apply_limits(limits)
        result = fn(payload, lambda progress: conn.send(("progress", progress)))
        # An allocation that failed inside a library may come back as an `error` verdict.
        failed_alloc = result.get("verdict") == "error" and _ALLOC.search(result.get("reason", ""))
        conn.send(("memory", None) if failed_alloc else ("result", result))
    except BaseException as exc:  # noqa: BLE001 - reported to the worker, never swallowed
        message = (
            ("memory", None) if out_of_memory(exc) else ("crash", f"{type(exc).__name__}: {exc}")
        )
        with contextlib.suppress(Exception):
            conn.send(message)


def out_of_memory(exc: BaseException) -> bool:
    """Did the address-space limit cause this (an allocation or a library mapping failed)?"""
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
        return True
    text = str(exc)
    return isinstance(exc, ImportError) and ("failed to map" in text or "memory" in text)
