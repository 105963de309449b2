"""The worker loop: claim jobs, run each in a limited child, heartbeat, finish or release.

One worker process runs up to ``concurrency`` children. Every ``poll_s`` it reads their
progress, checks its jobs are still its own (a cancelled job's child is killed at once),
renews leases every third of the lease, reclaims expired leases, and claims more work.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from service.config import Settings
from service.store.artefacts import ArtefactStore
from service.store.db import DATABASE_DOWN, Database
from service.store.jobs import Job, JobStore
from service.store.migrate import ensure_schema
from service.store.workers import WorkerStore
from service.worker.pending import PendingWrites
from service.worker.runner import Child, unknown
from service.worker.sandbox import DEFAULT_RUNNER, Limits, grace_s, warm_up

log = logging.getLogger(__name__)

# Write at most one progress event per job per this many seconds.
PROGRESS_EVERY_S = 0.5


class Worker:
    def __init__(
        self,
        settings: Settings,
        concurrency: int = 1,
        runner: str = DEFAULT_RUNNER,
        db: Database | None = None,
        parent_pid: int | None = None,
        idle_jobs: bool = False,
    ) -> None:
        self.settings, self.concurrency, self.runner = settings, max(1, concurrency), runner
        self.idle_jobs = idle_jobs  # jobs on idle CPU time only (sandbox.run_on_idle_cpu)
        # A worker started by `serve` stops when serve is gone (even if serve was killed).
        self.parent_pid = parent_pid
        self.db = db or Database(settings.database_url)
        self.jobs, self.artefacts = JobStore(self.db), ArtefactStore(self.db)
        self.workers = WorkerStore(self.db)
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.children: dict[int, Child] = {}
        self.stopping = threading.Event()
        self._last_progress: dict[int, float] = {}
        self._last_lease = self._last_beat = self._last_reclaim = 0.0
        self.pending = PendingWrites()

    def request_stop(self, *_: Any) -> None:
        self.stopping.set()

    def run(self, migrate: bool = True) -> None:
        if migrate:
            ensure_schema(self.db)
        warm_up()
        self.workers.register(self.id, socket.gethostname(), os.getpid(), self.concurrency)
        log.info("worker %s started (concurrency %d)", self.id, self.concurrency)
        try:
            while not self.stopping.is_set():
                try:
                    self.tick()
                except DATABASE_DOWN as exc:  # the database went away: retry, keep the children
                    log.warning("worker %s: database error, retrying: %s", self.id, exc)
                    self.stopping.wait(2.0)
                self.stopping.wait(self.settings.poll_s)
        finally:
            self.shutdown()

    def tick(self) -> None:
        now = time.monotonic()
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            log.warning("worker %s: its parent process is gone; stopping", self.id)
            self.stopping.set()
        self.pending.flush()  # before reclaiming: a kept result beats running the job again
        self._collect()
        self._check_held(renew=now - self._last_lease >= self.settings.lease_s / 3)
        if now - self._last_reclaim >= min(5.0, self.settings.lease_s / 2):
            self._last_reclaim = now
            self.jobs.reclaim_expired()
        while len(self.children) < self.concurrency and not self.stopping.is_set():
            job = self.jobs.claim(self.id, self.settings.lease_s)
            if job is None:
                break
            self._start(job)
        if now - self._last_beat >= 2.0:
            self._last_beat = now
            self.workers.beat(self.id, len(self.children))

    def shutdown(self) -> None:
        """Stop claiming; give running jobs back to the queue."""
        self.pending.flush()
        if len(self.pending):
            log.error("worker %s: %d results could not be stored", self.id, len(self.pending))
        for job_id, child in list(self.children.items()):
            child.kill()
            self.jobs.release(job_id, self.id, "worker stopped; job returned to the queue")
        self.children.clear()
        self.workers.stop(self.id)
        log.info("worker %s stopped", self.id)

    def _inputs(self, job: Job) -> dict[str, Any] | str:
        """What the child needs besides the property (the model's bytes and kind, or a
        system's files by path), or which artefact is missing."""
        if "system" in job.prop:
            files: dict[str, bytes] = {}
            for path, artefact in (job.prop.get("artefacts") or {}).items():
                data = self.artefacts.data(artefact)
                if data is None:
                    return artefact
                files[path] = data
            return {"kind": "system", "files": files}
        data = self.artefacts.data(job.artefact)
        info = self.artefacts.get(job.artefact)
        if data is None or info is None:
            return job.artefact
        return {"kind": info.kind, "data": data}

    def _start(self, job: Job) -> None:
        inputs = self._inputs(job)
        if isinstance(inputs, str):
            self.jobs.fail(job.id, self.id, f"artefact {inputs} is missing")
            return
        timeout = float(job.options.get("timeout_s") or self.settings.default_timeout_s)
        memory = int(job.options.get("memory_mb") or self.settings.default_memory_mb)
        payload = {
            **inputs,
            "prop": job.prop,
            "subnetwork": job.subnetwork,
            "attempt": job.attempts,
            "options": {**job.options, "timeout_s": timeout},
            "check_certificate": self.settings.check_certificates,
        }
        limits = Limits.for_timeout(timeout, memory, idle=self.idle_jobs)
        # The child's watchdog ends it at timeout + grace; this is the backstop behind it.
        wall = timeout + 2 * grace_s(timeout) + 5
        self.children[job.id] = Child(job.id, payload, limits, self.runner, wall_s=wall)
        log.info("job %d started (attempt %d)", job.id, job.attempts)

    def _check_held(self, renew: bool) -> None:
        ids = list(self.children)
        if not ids:
            return
        if renew:
            self._last_lease = time.monotonic()
            held = self.jobs.heartbeat(self.id, ids, self.settings.lease_s)
        else:
            held = self.jobs.held(self.id, ids)
        for job_id in set(ids) - held:
            log.info("job %d is no longer ours (cancelled or reclaimed): killing it", job_id)
            self.children.pop(job_id).kill()

    def _collect(self) -> None:
        for job_id, child in list(self.children.items()):
            self._progress(job_id, child.messages())
            if child.done():
                self._finish(job_id, self.children.pop(job_id))
            elif time.monotonic() > child.deadline:
                child.kill()
                self.children.pop(job_id)
                reason = f"wall-clock limit ({child.deadline - child.started:.0f} s) exceeded"
                self._store(job_id, unknown(reason), None, child.seconds)

    def _progress(self, job_id: int, reports: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        if reports and now - self._last_progress.get(job_id, 0.0) >= PROGRESS_EVERY_S:
            self._last_progress[job_id] = now
            try:
                self.jobs.progress(job_id, self.id, reports[-1])
            except DATABASE_DOWN:  # progress is advisory: the next report replaces it
                log.warning("job %d: progress not stored (database unavailable)", job_id)

    def _finish(self, job_id: int, child: Child) -> None:
        outcome = child.outcome()
        self._last_progress.pop(job_id, None)
        self._store(job_id, outcome.result, outcome.failure, child.seconds)

    def _store(
        self, job_id: int, result: dict[str, Any] | None, failure: str | None, seconds: float
    ) -> None:
        """Finish (or fail) the job; through a database outage, keep trying."""

        def write(retrying: bool) -> bool:
            if result is not None:
                return self.jobs.finish(job_id, self.id, result, seconds, adopt=retrying)
            return self.jobs.fail(job_id, self.id, failure or "unknown failure")

        done = self.pending.record(job_id, write)
        state = {True: "stored", False: "no longer ours", None: "kept until the database is back"}
        log.info("job %d finished (%s)", job_id, state[done])
