"""The gate's decision: which outcomes block the merge, and the exit code.

Exit 3 when any task is an error (the run cannot be trusted), else 1 when a decided verdict
misses its expectation, else 2 when a verdict is unknown (unless ``--unknown=warn``), else 0.
With a baseline, failures the baseline already had are reported but do not block.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from service.gate.baseline import Comparison
from service.gate.tasks import Outcome, Status


@dataclass(frozen=True)
class GateSummary:
    outcomes: tuple[Outcome, ...]
    unknown_fails: bool = True
    comparison: Comparison | None = None

    @property
    def failing(self) -> frozenset[Status]:
        """Statuses that count as failures (for baselines and reports)."""
        return frozenset({Status.FAILED, Status.UNKNOWN} if self.unknown_fails else {Status.FAILED})

    def blocks(self, outcome: Outcome) -> bool:
        if outcome.status is Status.ERROR:
            return True
        if outcome.status not in self.failing:
            return False
        return self.comparison is None or outcome.task.id not in self.comparison.excused

    @property
    def exit_code(self) -> int:
        blocking = {o.status for o in self.outcomes if self.blocks(o)}
        for status, code in ((Status.ERROR, 3), (Status.FAILED, 1), (Status.UNKNOWN, 2)):
            if status in blocking:
                return code
        return 0

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    def counts(self) -> Counter[Status]:
        return Counter(o.status for o in self.outcomes)

    def headline(self) -> str:
        counts = self.counts()
        parts = [f"{counts[s]} {s.value}" for s in Status if counts[s]]
        cached = sum(o.cached for o in self.outcomes)
        verdict = "passed" if self.passed else f"failed (exit {self.exit_code})"
        # A [[check]] table is one check; each of its properties is one verdict.
        n_checks = len({o.task.check.name for o in self.outcomes})
        n = len(self.outcomes)
        size = f"{n} propert{'y' if n == 1 else 'ies'} in {n_checks} check{'' if n_checks == 1 else 's'}"
        return (
            f"proofwell gate {verdict}: {size}, {', '.join(parts)}; "
            f"{cached} from cache, {len(self.outcomes) - cached} run"
        )
