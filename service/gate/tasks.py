"""Tasks (one check x one property) and their outcomes against the expectation."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from service.gate.config import Check, Expect, GateConfig, ModelKind
from verifiers.options import Options
from verifiers.result import Result, Verdict


class Status(StrEnum):
    """How a task's verdict compares with what the check expects."""

    PASSED = "passed"  # the verdict is the expected one
    FAILED = "failed"  # decided, but not as expected (e.g. violated when holds was expected)
    UNKNOWN = "unknown"  # no decision within the limits
    ERROR = "error"  # invalid input or infrastructure failure


@dataclass(frozen=True)
class Task:
    check: Check
    prop: Path | None
    # The property (or, for a system, the model) as written relative to the config.
    label: str

    @property
    def id(self) -> str:
        """A stable identifier for baselines and reports: ``check::property``."""
        return f"{self.check.name}::{self.label}"

    @property
    def location(self) -> Path:
        """The file a failure points at: the property, or the system description."""
        return self.prop if self.prop is not None else self.check.model

    def options(self) -> Options:
        return Options(
            timeout_s=self.check.timeout_s,
            workers=1,
            seed=self.check.seed,
            margin=self.check.margin,
            record_tree=False,
        )


@dataclass(frozen=True)
class Outcome:
    task: Task
    result: Result
    cached: bool = False
    url: str | None = None  # the job's dashboard page, when run on a server

    @property
    def status(self) -> Status:
        verdict = self.result.verdict
        if verdict is Verdict.ERROR:
            return Status.ERROR
        if verdict is Verdict.UNKNOWN:
            return Status.UNKNOWN
        expected = Verdict.HOLDS if self.task.check.expect is Expect.HOLDS else Verdict.VIOLATED
        return Status.PASSED if verdict is expected else Status.FAILED

    @property
    def seconds(self) -> float:
        return self.result.stats.seconds


def expand(config: GateConfig) -> list[Task]:
    """Every check x property, in the order of the configuration."""
    tasks: list[Task] = []
    for check in config.checks:
        if check.kind is ModelKind.SYSTEM and not check.properties:
            tasks.append(Task(check, None, config.relative(check.model)))
            continue
        tasks += [Task(check, p, config.relative(p)) for p in check.properties]
    return tasks
