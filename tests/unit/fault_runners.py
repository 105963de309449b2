"""Job runners that misbehave the ways real engines do, for the worker's limit tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

HANGS = "tests.unit.fault_runners:hangs"
Z3_OUT_OF_MEMORY = "tests.unit.fault_runners:z3_out_of_memory"
SLOW_PREPARATION = "tests.unit.fault_runners:slow_preparation"


def hangs(payload: dict[str, Any], _progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Preparation that never ends (a pathological parse, a solver call that ignores time)."""
    while True:
        time.sleep(0.05)


def z3_out_of_memory(
    payload: dict[str, Any], _progress: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """A real z3 allocation failure: z3's own memory cap makes it raise as under RLIMIT_AS."""
    import z3

    z3.set_param("memory_max_size", 30)
    xs = [z3.Int(f"x{i}") for i in range(3000)]
    solver = z3.Solver()
    for i in range(3000):
        solver.add(z3.Sum([xs[(i * 31 + j) % 3000] * ((i * j) % 7 + 1) for j in range(100)]) > i)
    solver.check()
    raise AssertionError("z3 did not run out of memory")


def slow_preparation(
    payload: dict[str, Any], progress: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """The real engine, after preparation that takes most of the timeout."""
    from service.worker import engine

    real = engine.build_property

    def slow(prop: dict[str, Any], sizes: tuple[int, int]) -> Any:
        time.sleep(float(payload["options"]["timeout_s"]) + 0.5)
        return real(prop, sizes)

    engine.build_property = slow
    return engine.run_job(payload, progress)
