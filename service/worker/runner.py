"""One job's child process seen from the worker: start, read messages, kill, outcome."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

from service.worker.sandbox import Limits, child_main, context, unknown

__all__ = ["Child", "Outcome", "unknown"]


@dataclass(frozen=True)
class Outcome:
    """How a child ended: a result to store, or a failure reason."""

    result: dict[str, Any] | None
    failure: str | None = None


class Child:
    def __init__(
        self, job_id: int, payload: dict[str, Any], limits: Limits, runner: str, wall_s: float
    ) -> None:
        ctx = context()
        self.job_id, self.limits = job_id, limits
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=child_main,
            args=(child_conn, payload, limits, runner),
            name=f"proofwell-job-{job_id}",
            daemon=False,
        )
        self.started = time.monotonic()
        self.deadline = self.started + wall_s
        self.process.start()
        child_conn.close()
        self._final: tuple[str, Any] | None = None

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def messages(self) -> list[dict[str, Any]]:
        """Progress reports received since the last call; remembers the final message."""
        progress: list[dict[str, Any]] = []
        try:
            while self._final is None and self.conn.poll(0):
                kind, data = self.conn.recv()
                if kind == "progress":
                    progress.append(data)
                else:
                    self._final = (kind, data)
        except (EOFError, OSError):
            pass
        return progress

    def done(self) -> bool:
        return self._final is not None or not self.process.is_alive()

    def kill(self) -> None:
        pid = self.process.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()

    def outcome(self) -> Outcome:
        """Call once done(): the final message, or why the child died without one."""
        self.messages()
        if self._final is None:
            self.process.join(timeout=1)
            self.messages()
        final, self._final = self._final, None
        self.kill()
        if final is not None:
            return self._from_message(*final)
        return Outcome(unknown(self._death_reason(self.process.exitcode)))

    def _from_message(self, kind: str, data: Any) -> Outcome:
        if kind == "result":
            return Outcome(data)
        if kind == "memory":
            return Outcome(unknown(f"memory limit {self.limits.memory_mb} MB exceeded"))
        return Outcome(None, failure=f"the engine crashed: {data}")

    def _death_reason(self, exitcode: int | None) -> str:
        cpu = f"CPU time limit ({self.limits.cpu_s} s) exceeded"
        if exitcode == -signal.SIGXCPU:
            return cpu
        if exitcode == -signal.SIGKILL and self.seconds >= self.limits.cpu_s:
            return cpu
        return (
            f"memory limit {self.limits.memory_mb} MB exceeded "
            f"(the solver process died with exit code {exitcode})"
        )
