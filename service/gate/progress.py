"""Progress of a gate run: a rich bar on a terminal, plain log lines otherwise (CI)."""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from service.gate.tasks import Outcome, Status, Task

STYLE = {
    Status.PASSED: "green",
    Status.FAILED: "red",
    Status.UNKNOWN: "yellow",
    Status.ERROR: "red",
}


def outcome_line(outcome: Outcome) -> str:
    result = outcome.result
    line = (
        f"{outcome.status.value.upper():8} {outcome.task.id}: {result.verdict.value} "
        f"(expected {outcome.task.check.expect.value}, {outcome.seconds:.2f} s"
        f"{', cached' if outcome.cached else ''})"
    )
    if outcome.status is not Status.PASSED and result.reason:
        line += f": {result.reason}"
    return line


class GateProgress:
    """A context manager with `start(task)` and `done(outcome)` callbacks."""

    def __init__(self, total: int, *, live: bool | None = None) -> None:
        self.console = Console(stderr=True)
        self.live = sys.stderr.isatty() if live is None else live
        self._progress: Progress | None = None
        self._bar = None
        self.total = total
        self.finished = 0

    def __enter__(self) -> GateProgress:
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]proofwell gate"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._bar = self._progress.add_task("checks", total=self.total)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start(self, task: Task) -> None:
        if not self.live:
            self._plain(f"running  {task.id}")

    def done(self, outcome: Outcome) -> None:
        self.finished += 1
        if self._progress is not None and self._bar is not None:
            self._progress.update(self._bar, advance=1)
            self.console.print(Text(outcome_line(outcome), style=STYLE[outcome.status]))
        else:
            self._plain(f"[{self.finished}/{self.total}] {outcome_line(outcome)}")

    @staticmethod
    def _plain(line: str) -> None:
        # One unwrapped line per event: CI logs are read and grepped line by line.
        print(line, file=sys.stderr, flush=True)
