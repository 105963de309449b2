"""The worker under engine faults: hung preparation, z3 out of memory, slow preparation,
a database that refuses result writes for a while."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy.exc import OperationalError

from service.config import Settings
from service.store.artefacts import ArtefactStore
from service.store.db import Database
from service.store.jobs import Job, JobSpec, JobStore
from service.store.migrate import upgrade
from service.worker.main import Worker
from service.worker.pending import PendingWrites
from tests.onnx_builders import dense_relu_model, to_bytes
from tests.unit.fault_runners import HANGS, SLOW_PREPARATION, Z3_OUT_OF_MEMORY

PROPERTY = "\n".join(
    ["(declare-const X_0 Real)", "(declare-const X_1 Real)", "(declare-const Y_0 Real)"]
    + ["(declare-const Y_1 Real)", "(assert (>= X_0 0.0))", "(assert (<= X_0 1.0))"]
    + ["(assert (>= X_1 0.0))", "(assert (<= X_1 1.0))", "(assert (>= Y_0 3.0))"]
)


@pytest.fixture
def store(tmp_path) -> Iterator[tuple[Settings, JobStore]]:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/w.db", lease_s=5.0, poll_s=0.05)
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    model = to_bytes(
        dense_relu_model([np.eye(2, dtype=np.float32)] * 2, [np.zeros(2, dtype=np.float32)] * 2)
    )
    ArtefactStore(db).put("b" * 64, "onnx", model, "m.onnx", {"n_inputs": 2, "n_outputs": 2})
    yield settings, JobStore(db)
    db.dispose()


def run_one(settings: Settings, jobs: JobStore, runner: str, timeout_s: float) -> tuple[Job, float]:
    spec = JobSpec(
        artefact="b" * 64,
        prop={"vnnlib": PROPERTY},
        property_hash="p",
        subnetwork=None,
        options={"timeout_s": timeout_s, "memory_mb": 2048},
        cache_key=f"k-{runner}-{timeout_s}",
    )
    job_id = jobs.submit(spec).id
    worker = Worker(settings, concurrency=1, runner=runner)
    thread = threading.Thread(target=worker.run, kwargs={"migrate": False}, daemon=True)
    start = time.monotonic()
    thread.start()
    try:
        while time.monotonic() - start < 90:
            job = jobs.get(job_id)
            if job is not None and job.status.terminal:
                return job, time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError("the job did not end")
    finally:
        worker.request_stop()
        thread.join(timeout=20)
        worker.db.dispose()


def test_a_hung_preparation_ends_at_the_timeout(store: tuple[Settings, JobStore]) -> None:
    job, seconds = run_one(*store, HANGS, timeout_s=1.0)
    assert (job.status.value, job.verdict) == ("done", "unknown")
    assert "timeout (1 s) reached" in (job.reason or "")
    assert seconds < 1.0 + 2.1 + 3.0  # timeout + grace + start-up, not 2 x timeout + 30


def test_z3_out_of_memory_is_unknown_not_a_crash(store: tuple[Settings, JobStore]) -> None:
    job, _ = run_one(*store, Z3_OUT_OF_MEMORY, timeout_s=60.0)
    assert (job.status.value, job.verdict) == ("done", "unknown"), job.reason
    assert "memory" in (job.reason or "")


def test_preparation_counts_toward_the_timeout(store: tuple[Settings, JobStore]) -> None:
    job, seconds = run_one(*store, SLOW_PREPARATION, timeout_s=1.0)
    assert job.verdict == "unknown" and "preparing the property" in (job.reason or "")
    assert seconds < 1.0 + 2.1 + 3.0


def test_pending_writes_back_off_and_keep_the_result() -> None:
    now = [0.0]
    pending = PendingWrites(clock=lambda: now[0])
    calls: list[bool] = []

    def write(retrying: bool) -> bool:
        calls.append(retrying)
        if len(calls) <= 3:
            raise OperationalError("UPDATE jobs", {}, Exception("server closed the connection"))
        return True

    assert pending.record(7, write) is None and len(pending) == 1
    delays = []
    while len(pending):
        due = pending.writes[0].next_at
        delays.append(due - now[0])
        pending.flush()  # not due yet: nothing happens
        assert len(calls) == len(delays)
        now[0] = due
        pending.flush()
    assert calls == [False, True, True, True]
    assert delays == [0.25, 0.5, 1.0]
