"""Baselines: the statuses of an earlier run, to fail only on what got worse.

Written by ``--write-baseline``; read by ``--baseline``. A failure (a failed expectation, or
an unknown under ``--unknown=fail``) is *known* when the baseline recorded the same task as
failing too; it is then reported but does not fail the gate. Every other failure does:
a *regression* (the task passed in the baseline) or a *new failure* (the task is not in the
baseline). Errors always fail the gate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import verifiers
from service.gate.tasks import Outcome, Status

FORMAT = "proofwell-gate-baseline-1"


class BaselineError(Exception):
    """An unreadable or malformed baseline file."""


@dataclass(frozen=True)
class Comparison:
    regressions: tuple[str, ...]  # passed in the baseline, failing now
    new_failures: tuple[str, ...]  # failing now; absent from the baseline or an error there
    known_failures: tuple[str, ...]  # failing in both
    fixed: tuple[str, ...]  # failing in the baseline, passing now

    @property
    def excused(self) -> frozenset[str]:
        return frozenset(self.known_failures)


def write_baseline(path: Path, outcomes: Sequence[Outcome]) -> None:
    data = {
        "format": FORMAT,
        "engine_version": verifiers.__version__,
        "tasks": {
            o.task.id: {"status": o.status.value, "verdict": o.result.verdict.value}
            for o in outcomes
        },
    }
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_baseline(path: Path) -> dict[str, Status]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read the baseline: {exc.strerror}") from None
    except ValueError as exc:
        raise BaselineError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BaselineError(f"{path}: key 'format': expected {FORMAT!r}")
    tasks = data.get("tasks")
    if not isinstance(tasks, dict):
        raise BaselineError(f"{path}: key 'tasks': expected an object")
    statuses: dict[str, Status] = {}
    for task_id, entry in tasks.items():
        try:
            statuses[task_id] = Status(entry["status"])
        except (TypeError, KeyError, ValueError):
            raise BaselineError(f"{path}: key 'tasks.{task_id}.status': invalid") from None
    return statuses


def compare(
    baseline: dict[str, Status], outcomes: Sequence[Outcome], failing: frozenset[Status]
) -> Comparison:
    """Classify the current failures (statuses in `failing`) against the baseline."""
    regressions, new, known, fixed = [], [], [], []
    for outcome in outcomes:
        task_id, now_failing = outcome.task.id, outcome.status in failing
        before = baseline.get(task_id)
        was_failing = before is not None and before in failing
        if now_failing and before is Status.PASSED:
            regressions.append(task_id)
        elif now_failing and was_failing:
            known.append(task_id)
        elif now_failing:
            new.append(task_id)
        elif was_failing and outcome.status is Status.PASSED:
            fixed.append(task_id)
    return Comparison(tuple(regressions), tuple(new), tuple(known), tuple(fixed))
