"""One progress line for people: elapsed time, rate and an estimate of the time left.

Used on a terminal (a rich status line, rewritten in place) and, when stderr is not a
terminal (CI logs, pipes), as plain lines written at most every ``every_s`` seconds.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from verifiers.result import Progress, percent


def estimate_left(seconds: float, proved: float, timeout: float | None) -> float | None:
    """Seconds left at the rate the input volume has been proved so far, capped by the
    timeout; None while nothing is proved (no rate to go by)."""
    if proved <= 0.0 or seconds <= 0.0:
        return None
    left = seconds * (1.0 - proved) / proved
    if timeout is not None:
        left = min(left, max(0.0, timeout - seconds))
    return left


def describe(progress: Progress, timeout: float | None = None) -> str:
    seconds = progress.seconds
    rate = progress.subproblems_done / seconds if seconds > 0 else 0.0
    text = f"{seconds:.0f} s elapsed, {progress.subproblems_done} regions ({rate:.0f}/s), "
    if progress.subproblems_open:  # not every search phase counts its open regions
        text += f"{progress.subproblems_open} open, "
    text += f"{percent(progress.proved_fraction)} proved"
    left = estimate_left(seconds, progress.proved_fraction, timeout)
    if left is not None:
        text += f", ~{left:.0f} s left"
    elif timeout is not None:
        text += f", at most {max(0.0, timeout - seconds):.0f} s left (timeout)"
    return text


class ProgressLines:
    """A progress callback writing ``verifying: ...`` lines, one per ``every_s`` seconds."""

    def __init__(
        self,
        timeout: float | None,
        every_s: float = 5.0,
        stream: TextIO | None = None,
        prefix: str = "verifying",
    ) -> None:
        self.timeout, self.every_s, self.prefix = timeout, every_s, prefix
        self.stream = stream
        self._next = time.monotonic() + every_s

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every_s
        stream = self.stream or sys.stderr
        print(f"{self.prefix}: {describe(progress, self.timeout)}", file=stream, flush=True)
