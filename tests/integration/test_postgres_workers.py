"""Many worker processes on one PostgreSQL: each job done once, crashes and limits survived."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from service.store.artefacts import ArtefactStore
from service.store.db import Database
from service.store.jobs import Job, JobSpec, JobStore
from service.store.migrate import upgrade
from tests.integration.pg import fresh_database
from tests.integration.runners import DELAYED, with_delay
from tests.onnx_builders import dense_relu_model, to_bytes

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]
CLI = "from service.cli import app; app()"
# Unsafe where Y_0 >= 3 on [0, 1]^2 through an identity ReLU network: it holds.
PROPERTY = """(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (>= X_0 0.0))
(assert (<= X_0 1.0))
(assert (>= X_1 0.0))
(assert (<= X_1 1.0))
(assert (>= Y_0 3.0))
"""


def proofwell(
    *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PROOFWELL_LEASE_S": "2",
        "PROOFWELL_POLL_S": "0.05",
        **(env or {}),
    }
    cmd = [sys.executable, "-c", CLI, *args]
    if log is None:
        return subprocess.Popen(cmd, env=full_env, cwd=ROOT, stdout=subprocess.DEVNULL)
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=full_env, cwd=ROOT, stdout=out, stderr=out)


class Service:
    def __init__(self, url: str, log: Path) -> None:
        upgrade(url)
        self.url, self.log, self.db = url, log, Database(url)
        self.jobs = JobStore(self.db)
        model = to_bytes(
            dense_relu_model([np.eye(2, dtype=np.float32)] * 2, [np.zeros(2, dtype=np.float32)] * 2)
        )
        self.artefact = "b" * 64
        ArtefactStore(self.db).put(
            self.artefact, "onnx", model, "id.onnx", {"n_inputs": 2, "n_outputs": 2}
        )
        # 2 -> 1000 -> 1000 -> 2: its float64 matrices need fresh memory mappings.
        sizes = [(1000, 2), (1000, 1000), (2, 1000)]
        big = to_bytes(
            dense_relu_model(
                [np.full(s, 1e-3, dtype=np.float32) for s in sizes],
                [np.zeros(s[0], dtype=np.float32) for s in sizes],
            )
        )
        self.big = "c" * 64
        ArtefactStore(self.db).put(
            self.big, "onnx", big, "big.onnx", {"n_inputs": 2, "n_outputs": 2}
        )
        self.procs: list[subprocess.Popen[bytes]] = []

    def worker(self) -> subprocess.Popen[bytes]:
        proc = proofwell("worker", "--db", self.url, "--runner", DELAYED, log=self.log)
        self.procs.append(proc)
        return proc

    def submit(
        self, key: str, vnnlib: str = PROPERTY, artefact: str | None = None, **options: object
    ) -> Job:
        return self.jobs.submit(
            JobSpec(
                artefact=artefact or self.artefact,
                prop={"vnnlib": vnnlib},
                property_hash=key,
                subnetwork=None,
                options={"timeout_s": 30, **options},
                cache_key=key,
                max_attempts=3,
            )
        )

    def wait(self, ids: list[int], within: float, status: str = "done") -> list[Job]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            jobs = [self.jobs.get(i) for i in ids]
            if all(j is not None and j.status.value == status for j in jobs):
                return jobs  # type: ignore[return-value]
            time.sleep(0.1)
        raise AssertionError(
            f"not all {status} in {within} s; log:\n{self.log.read_text()[-3000:]}"
        )

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.db.dispose()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    with fresh_database() as url:
        svc = Service(url, tmp_path / "workers.log")
        try:
            yield svc
        finally:
            svc.close()


def status_events(svc: Service, job_id: int) -> list[str]:
    return [e.data["status"] for e in svc.jobs.events_after(job_id) if e.kind.value == "status"]


@pytest.mark.slow
def test_three_workers_do_each_of_100_jobs_once(service: Service) -> None:
    ids = [service.submit(f"job-{i}").id for i in range(100)]
    for _ in range(3):
        service.worker()
    jobs = service.wait(ids, within=150)
    assert all(j.verdict == "holds" and j.attempts == 1 for j in jobs)
    for job_id in ids:
        assert status_events(service, job_id) == ["queued", "running", "done"]
    with service.db.session() as s:
        from sqlalchemy import func, select

        from service.store.models import JobRow, ResultRow

        assert s.scalar(select(func.count()).select_from(ResultRow)) == 100
        workers = set(s.scalars(select(JobRow.worker_id)))
    assert len(workers) >= 2, workers
    for proc in service.procs:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_a_killed_workers_job_is_claimed_again(service: Service) -> None:
    first = service.worker()
    job = service.submit("slow", with_delay(PROPERTY, 60))
    service.wait([job.id], within=30, status="running")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=5)
    service.worker()
    done = service.wait([job.id], within=60)[0]
    assert (done.verdict, done.attempts) == ("holds", 2)
    assert status_events(service, job.id) == ["queued", "running", "queued", "running", "done"]


def test_a_job_over_its_memory_limit_ends_unknown_and_the_worker_lives(service: Service) -> None:
    worker = service.worker()
    greedy = service.submit("greedy", artefact=service.big, memory_mb=64)
    normal = service.submit("normal")
    greedy_done, normal_done = service.wait([greedy.id, normal.id], within=60)
    assert greedy_done.verdict == "unknown", (greedy_done, service.log.read_text()[-2000:])
    assert "memory limit 64 MB exceeded" in (greedy_done.reason or "")
    assert normal_done.verdict == "holds"
    assert worker.poll() is None


def test_worker_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    with fresh_database() as url:
        proc = proofwell("worker", "--db", url, log=tmp_path / "w.log")
        assert proc.wait(timeout=60) == 3
        assert "proofwell db upgrade" in (tmp_path / "w.log").read_text()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_api_and_two_workers_on_postgres(tmp_path: Path) -> None:
    """The documented topology without Docker: db upgrade, serve --workers 0, 2 workers."""
    import httpx

    with fresh_database() as url:
        assert proofwell("db", "upgrade", "--db", url).wait(timeout=60) == 0
        port, log = free_port(), tmp_path / "topology.log"
        procs = [proofwell("serve", "--db", url, "--port", str(port), "--workers", "0", log=log)]
        procs += [proofwell("worker", "--db", url, log=log) for _ in range(2)]
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    try:
                        if c.get("/healthz").json()["workers_seen"] == 2:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.2)
                model = to_bytes(
                    dense_relu_model([np.eye(2, dtype=np.float32)], [np.zeros(2, np.float32)])
                )
                artefact = c.post("/v1/artefacts", files={"file": ("m.onnx", model)}).json()
                body = {"artefact": artefact["id"], "property": {"vnnlib": PROPERTY}}
                job = c.post("/v1/jobs", json=body).json()
                while job["status"] not in ("done", "failed") and time.monotonic() < deadline:
                    time.sleep(0.1)
                    job = c.get(f"/v1/jobs/{job['id']}").json()
                assert job["verdict"] == "holds", (job, log.read_text()[-2000:])
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=20)
