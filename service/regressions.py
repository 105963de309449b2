"""Which run speaks for a property on a model version, and what counts as a regression.

A run that ended `unknown` because it hit a resource limit (timeout, memory, CPU time,
wall clock) or was cancelled says nothing about the model: it is skipped when another run
of the same property on the same version decided it. Otherwise an out-of-memory `unknown`
newer than a `violated` run would hide a regression.
"""

from __future__ import annotations

from collections.abc import Iterable

from service.store.jobs import Job

RESOURCE_REASONS = ("timeout", "memory limit", "cpu time limit", "wall-clock limit", "cancelled")


def resource_limited(job: Job) -> bool:
    """An undecided run whose reason is a resource limit (or a cancel), not the model."""
    if job.status.value == "cancelled":
        return True
    reason = (job.reason or "").strip().lower()
    return job.verdict == "unknown" and reason.startswith(RESOURCE_REASONS)


def state(job: Job) -> str:
    return job.verdict if job.verdict and job.status.value == "done" else job.status.value


def representative(jobs: Iterable[Job]) -> Job | None:
    """The run that speaks for a property on one version (``jobs`` oldest first): the newest
    decided run; else the newest run not stopped by a resource limit; else the newest."""
    ordered = list(jobs)
    for wanted in (
        lambda j: state(j) in ("holds", "violated", "error"),
        lambda j: state(j) in ("unknown", "failed") and not resource_limited(j),
        lambda j: True,
    ):
        found = [j for j in ordered if wanted(j)]
        if found:
            return found[-1]
    return None


def regressed(before: str | None, after: str | None) -> bool:
    """A property that held and now does not: violated, an error, or undecided for a reason
    other than a resource limit (callers pass ``unknown`` only for such runs)."""
    return before == "holds" and after in ("violated", "error", "unknown")


def fixed(before: str | None, after: str | None) -> bool:
    return before in ("violated", "error") and after == "holds"
