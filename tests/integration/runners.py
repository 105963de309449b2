"""Job runners for tests: the real engine behind a delay, so a test can act mid-job.

The delay is asked for in the property itself, with a VNN-LIB comment line
``; delay_s=N`` (comments pass through the API untouched).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from service.worker.engine import run_job

DELAYED = "tests.integration.runners:delayed_engine"
_DELAY = re.compile(r";\s*delay_s=([0-9.]+)")


def with_delay(vnnlib: str, seconds: float) -> str:
    return f"; delay_s={seconds}\n{vnnlib}"


def delayed_engine(
    payload: dict[str, Any], on_progress: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Sleep as the property asks, on the first attempt only, then run the real engine."""
    match = _DELAY.search(payload["prop"].get("vnnlib", ""))
    if match and payload.get("attempt", 1) <= 1:
        on_progress(
            {
                "subproblems_done": 0,
                "subproblems_open": 1,
                "proved_fraction": 0.0,
                "seconds": 0.0,
                "phase": "delay",
            }
        )
        time.sleep(float(match.group(1)))
    return run_job(payload, on_progress)
