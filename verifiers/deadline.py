"""A deadline checked inside long computations (bounds, LP batches, the slope optimiser).

A search step on a deep 784-input network bounds 64 regions at once and can take seconds;
checking the clock only between steps let a 60 s timeout end at 64-70 s. Long loops call
`check(deadline)` instead, which raises OutOfTime; the search drops that step's partial
work (its regions go back on the stack, open) and stops.
"""

from __future__ import annotations

import time


class OutOfTime(Exception):
    """The deadline passed inside a computation; its partial results are not to be used."""


def check(deadline: float | None) -> None:
    """Raise OutOfTime once time.monotonic() has reached `deadline` (None: no deadline)."""
    if deadline is not None and time.monotonic() >= deadline:
        raise OutOfTime
