"""Results a worker could not store yet: kept in memory and written again with backoff.

A database restart while a job finishes must not lose the job's result (and rerun it after
its lease). Each write is retried, at growing intervals up to ``MAX_DELAY_S``, until the
database takes it or answers that the job is no longer this worker's to finish.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.store.db import DATABASE_DOWN

log = logging.getLogger(__name__)
FIRST_DELAY_S = 0.25
MAX_DELAY_S = 15.0


@dataclass
class _Write:
    job_id: int
    store: Callable[[bool], bool]  # (retrying) -> stored?
    tries: int = 0
    next_at: float = 0.0


class PendingWrites:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.writes: list[_Write] = []

    def __len__(self) -> int:
        return len(self.writes)

    def record(self, job_id: int, store: Callable[[bool], bool]) -> bool | None:
        """Write now; on a database error keep it for later. Returns whether it was stored,
        or None when it is pending."""
        write = _Write(job_id, store)
        return self._attempt(write, retrying=False)

    def flush(self) -> None:
        """Retry the writes that are due (oldest first)."""
        now = self.clock()
        for write in [w for w in self.writes if w.next_at <= now]:
            self.writes.remove(write)
            if self._attempt(write, retrying=True) is None:
                break  # still down: the others wait for their own turn

    def _attempt(self, write: _Write, retrying: bool) -> bool | None:
        try:
            stored = write.store(retrying)
        except DATABASE_DOWN as exc:
            write.tries += 1
            delay = min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** (write.tries - 1))
            write.next_at = self.clock() + delay
            self.writes.append(write)
            log.warning(
                "job %d: result not stored (database: %s); retry %d in %.2f s",
                write.job_id,
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                write.tries,
                delay,
            )
            return None
        if write.tries:
            log.info("job %d: result stored after %d retries", write.job_id, write.tries)
        return stored
