"""Database outages on real PostgreSQL (through a proxy the test cuts): a finished job's
result is kept and stored when the database is back; the API answers 503 + Retry-After."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from service.app import create_app
from service.config import Settings
from service.store.artefacts import ArtefactStore
from service.store.db import Database
from service.store.jobs import JobSpec, JobStore
from service.store.migrate import upgrade
from service.worker.main import Worker
from tests.integration.pg import fresh_database
from tests.integration.runners import DELAYED, with_delay
from tests.integration.tcp_proxy import TcpProxy
from tests.onnx_builders import dense_relu_model, to_bytes

pytestmark = pytest.mark.postgres
PROPERTY = "\n".join(
    ["(declare-const X_0 Real)", "(declare-const X_1 Real)", "(declare-const Y_0 Real)"]
    + ["(declare-const Y_1 Real)", "(assert (>= X_0 0.0))", "(assert (<= X_0 1.0))"]
    + ["(assert (>= X_1 0.0))", "(assert (<= X_1 1.0))", "(assert (>= Y_0 3.0))"]
)


@pytest.fixture
def database() -> Iterator[tuple[str, TcpProxy]]:
    """A fresh migrated database, and a proxy in front of its server."""
    with fresh_database() as url:
        upgrade(url)
        parsed = make_url(url)
        proxy = TcpProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
        try:
            yield url, proxy
        finally:
            proxy.close()


def wait_for(check, within: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not {what} within {within} s")


def queue_job(db: Database, delay_s: float) -> int:
    model = to_bytes(
        dense_relu_model([np.eye(2, dtype=np.float32)] * 2, [np.zeros(2, dtype=np.float32)] * 2)
    )
    ArtefactStore(db).put("b" * 64, "onnx", model, "id.onnx", {"n_inputs": 2, "n_outputs": 2})
    spec = JobSpec(
        artefact="b" * 64,
        prop={"vnnlib": with_delay(PROPERTY, delay_s)},
        property_hash="p",
        subnetwork=None,
        options={"timeout_s": 30},
        cache_key="k",
    )
    return JobStore(db).submit(spec).id


@pytest.mark.parametrize("outage_s", [3.0, 6.0], ids=["short", "past-the-lease"])
def test_a_result_survives_a_database_outage(
    database: tuple[str, TcpProxy], outage_s: float
) -> None:
    url, proxy = database
    direct = Database(url)
    jobs = JobStore(direct)
    job_id = queue_job(direct, delay_s=3.0)
    settings = Settings(database_url=proxy.url_for(url), lease_s=3.0, poll_s=0.05)
    worker = Worker(settings, concurrency=1, runner=DELAYED)
    thread = threading.Thread(target=worker.run, kwargs={"migrate": False}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: jobs.get(job_id).status.value == "running", 30, "running")
        # Claimed is not yet started: the worker reads the model after claiming, and a cut
        # before that leaves the job to its lease (another test's case, not this one's).
        wait_for(lambda: job_id in worker.children, 30, "started in a child")
        proxy.cut()  # the job finishes while the database is away
        wait_for(lambda: len(worker.pending) == 1, 60, "kept in memory")
        time.sleep(outage_s)
        assert jobs.get(job_id).status.value == "running"
        proxy.restore()
        wait_for(lambda: jobs.get(job_id).status.value == "done", 30, "stored")
        job = jobs.get(job_id)
        assert job.verdict == "holds" and job.attempts == 1  # not run again
        assert len(worker.pending) == 0
    finally:
        proxy.restore()
        worker.request_stop()
        thread.join(timeout=20)
        worker.db.dispose()
        direct.dispose()


def test_the_api_answers_503_with_retry_after_during_an_outage(
    database: tuple[str, TcpProxy],
) -> None:
    url, proxy = database
    app = create_app(Settings(database_url=proxy.url_for(url)))
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        assert c.get("/v1/jobs").status_code == 200
        proxy.cut()
        for method, path in (("GET", "/v1/jobs"), ("GET", "/v1/jobs/1"), ("GET", "/healthz")):
            r = c.request(method, path)
            assert r.status_code == 503, (path, r.status_code, r.text[:200])
            assert r.headers["content-type"] == "application/problem+json"
            if path != "/healthz":
                assert int(r.headers["retry-after"]) > 0
        r = c.post("/v1/jobs", json={"artefact": "a" * 64, "property": {"vnnlib": PROPERTY}})
        assert r.status_code == 503
        proxy.restore()
        wait_for(lambda: c.get("/v1/jobs").status_code == 200, 10, "answering again")
    app.state.services.db.dispose()


def test_batched_submissions_answer_503_in_an_outage_and_then_202(
    database: tuple[str, TcpProxy],
) -> None:
    """The submit route's common path (a model the API has read, a small VNN-LIB property:
    parsed on the event loop, written in a batch) through an outage: 503 + Retry-After,
    then 202 once the database is back; identical submissions share one job."""
    url, proxy = database
    app = create_app(Settings(database_url=proxy.url_for(url)))
    model = to_bytes(
        dense_relu_model([np.eye(2, dtype=np.float32)] * 2, [np.zeros(2, dtype=np.float32)] * 2)
    )
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        artefact = c.post("/v1/artefacts", files={"file": ("m.onnx", model)}).json()["id"]

        def submit(tag: str):  # noqa: ANN202
            body = {"artefact": artefact, "property": {"vnnlib": f"; {tag}\n{PROPERTY}"}}
            return c.post("/v1/jobs", json=body)

        first, again = submit("a"), submit("a")
        assert first.status_code == again.status_code == 202, first.text
        assert first.json()["id"] == again.json()["id"]
        proxy.cut()
        down = submit("b")
        assert down.status_code == 503, down.text[:200]
        assert int(down.headers["retry-after"]) > 0
        proxy.restore()
        wait_for(lambda: submit("c").status_code == 202, 10, "accepting submissions again")
        assert submit("c").json()["id"] != first.json()["id"]
    app.state.services.submissions.close()
    app.state.services.db.dispose()
