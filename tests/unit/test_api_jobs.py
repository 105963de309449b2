"""Jobs over HTTP on SQLite with the real engine: verdicts, cache, cancel, events, errors."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.fixtures import VNNCOMP_TEST
from tests.integration.runners import with_delay

PROBLEM = "application/problem+json"


def prop() -> str:
    return (VNNCOMP_TEST / "test_prop.vnnlib").read_text()


def upload(client: TestClient, name: str) -> str:
    r = client.post("/v1/artefacts", files={"file": (name, (VNNCOMP_TEST / name).read_bytes())})
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def submit(client: TestClient, artefact: str, vnnlib: str, **options: Any) -> dict[str, Any]:
    body = {
        "artefact": artefact,
        "property": {"vnnlib": vnnlib},
        "options": {"timeout_s": 60, **options},
    }
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    return dict(r.json())


def wait_done(client: TestClient, job_id: str, within: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            return dict(job)
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not finished within {within} s")


def test_verdicts_certificate_and_cache(client: TestClient, worker: object) -> None:
    unsat, sat = upload(client, "test_unsat.onnx"), upload(client, "test_sat.onnx")
    held = submit(client, unsat, prop())
    broken = submit(client, sat, prop())
    assert held["status"] == "queued" and held["cached"] is False
    held, broken = wait_done(client, held["id"]), wait_done(client, broken["id"])
    assert (held["status"], held["verdict"]) == ("done", "holds")
    assert broken["verdict"] == "violated"
    assert len(broken["counterexample"]["inputs"]) == 5
    assert broken["counterexample"]["margin"] >= 0
    assert held["stats"]["proved_fraction"] == 1.0
    check = held["stats"]["certificate_check"]
    assert check["checked"] and check["valid"] and check["checker"].startswith("proofwell")
    assert check["seconds"] >= 0
    downloaded = client.get(f"/v1/jobs/{held['id']}/certificate")
    assert downloaded.status_code == 200
    assert downloaded.json()["format"] == "proofwell-certificate"
    cert = client.get(f"/v1/jobs/{broken['id']}/certificate")
    assert cert.status_code == 404 and cert.headers["content-type"] == PROBLEM
    again = submit(client, unsat, prop())
    assert (again["status"], again["verdict"], again["cached"]) == ("done", "holds", True)
    other = submit(client, unsat, prop(), timeout_s=61)  # other options: not the same work
    assert other["cached"] is False


def test_cancel_kills_the_running_child(client: TestClient, worker: Any) -> None:
    job = submit(client, upload(client, "test_unsat.onnx"), with_delay(prop(), 60))
    deadline = time.monotonic() + 20
    while client.get(f"/v1/jobs/{job['id']}").json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    while not worker.children:
        time.sleep(0.01)
    child = worker.children[int(job["id"])]
    r = client.delete(f"/v1/jobs/{job['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    t0 = time.monotonic()
    while child.process.is_alive() or child.process.exitcode is None:
        assert time.monotonic() - t0 < 1.0, "the child outlived its cancelled job"
        time.sleep(0.02)
    assert wait_done(client, job["id"])["status"] == "cancelled"


def test_events_stream_status_and_progress(client: TestClient, worker: object) -> None:
    job = submit(client, upload(client, "test_unsat.onnx"), with_delay(prop(), 0.6))
    kinds, statuses = [], []
    with client.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event: "):
                kinds.append(line[7:])
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if "status" in data:
                    statuses.append(data["status"])
    assert statuses == ["queued", "running", "done"]
    assert "progress" in kinds


def test_malformed_property_is_422_with_line_and_column(client: TestClient) -> None:
    artefact = upload(client, "test_unsat.onnx")
    r = client.post(
        "/v1/jobs",
        json={
            "artefact": artefact,
            "property": {"vnnlib": "(declare-const X_0 Real)\n(assert (<= X_0"},
        },
    )
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    error = r.json()["errors"][0]
    assert error["pointer"] == "/property/vnnlib"
    assert (error["line"], error["column"]) == (2, 9)


def test_preset_property_and_wrong_sizes(client: TestClient) -> None:
    artefact = upload(client, "test_unsat.onnx")
    preset = {"kind": "linf_robustness", "center": [0.0] * 5, "epsilon": 0.01, "label": 0}
    r = client.post("/v1/jobs", json={"artefact": artefact, "property": {"preset": preset}})
    assert r.status_code == 202, r.text
    preset["center"] = [0.0] * 3
    bad = client.post("/v1/jobs", json={"artefact": artefact, "property": {"preset": preset}})
    assert bad.status_code == 422 and bad.json()["errors"][0]["pointer"] == "/property/preset"


def test_error_paths_are_problem_json(client: TestClient) -> None:
    cases = [
        client.post("/v1/jobs", json={"artefact": "0" * 64, "property": {"vnnlib": prop()}}),
        client.get("/v1/jobs/12345"),
        client.delete("/v1/jobs/12345"),
        client.get("/v1/jobs/12345/events"),
        client.get("/v1/artefacts/feed"),
        client.post("/v1/jobs", json={"artefact": "x", "property": {}}),
        client.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}),
        client.get("/no/such/route"),
    ]
    assert [r.status_code for r in cases] == [404, 404, 404, 404, 404, 422, 422, 404]
    for r in cases:
        assert r.headers["content-type"] == PROBLEM
        body = r.json()
        assert {"type", "title", "status", "detail", "instance"} <= body.keys()
    assert cases[0].json()["errors"] == [{"pointer": "/artefact"}]
    assert cases[5].json()["errors"][0]["pointer"] == "/property"


def test_list_filters_and_pagination(client: TestClient) -> None:
    artefact = upload(client, "test_unsat.onnx")
    ids = [submit(client, artefact, prop(), seed=i)["id"] for i in range(3)]
    page = client.get("/v1/jobs", params={"limit": 2, "offset": 0}).json()
    assert page["total"] == 3 and [j["id"] for j in page["items"]] == ids[::-1][:2]
    rest = client.get("/v1/jobs", params={"limit": 2, "offset": 2}).json()
    assert [j["id"] for j in rest["items"]] == [ids[0]]
    assert client.get("/v1/jobs", params={"status": "done"}).json()["total"] == 0
    assert client.get("/v1/jobs", params={"artefact": artefact}).json()["total"] == 3
    assert client.get("/v1/jobs", params={"verdict": "holds"}).json()["total"] == 0
    assert client.get("/v1/jobs", params={"limit": 0}).status_code == 422


def test_stored_certificates_are_compact_json(client: TestClient, worker: object) -> None:
    """JSON columns are written without spaces: a stored certificate is the size of the
    file `verify --certificate` writes, not about 10% more."""
    from sqlalchemy import text

    job = wait_done(client, submit(client, upload(client, "test_unsat.onnx"), prop())["id"])
    assert job["verdict"] == "holds"
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.engine.connect() as conn:
        raw = conn.execute(text("SELECT certificate FROM results")).scalar_one()
    stored = json.loads(raw)
    assert raw == json.dumps(stored, separators=(",", ":"))
    assert stored == client.get(f"/v1/jobs/{job['id']}/certificate").json()


def test_jobs_read_by_ids_in_one_request(client: TestClient) -> None:
    artefact = upload(client, "test_unsat.onnx")
    ids = [submit(client, artefact, prop(), seed=i)["id"] for i in range(3)]
    listed = client.get("/v1/jobs", params={"ids": f"{ids[2]},{ids[0]},999999"}).json()
    # The existing ones, by id, each as GET /v1/jobs/{id} answers it; unknown ids left out.
    assert listed["items"] == [client.get(f"/v1/jobs/{i}").json() for i in (ids[0], ids[2])]
    assert listed["total"] == 2
    too_many = ",".join(str(i) for i in range(1, 102))
    for bad in ["", "1,,2", "1;2", "-1", "0", "2147483648", "1" * 11, too_many, "1,x"]:
        r = client.get("/v1/jobs", params={"ids": bad})
        assert r.status_code == 422, (bad, r.status_code)
        assert r.headers["content-type"].startswith(PROBLEM)


def test_health_metrics_and_dashboard(client: TestClient, worker: object) -> None:
    deadline = time.monotonic() + 10
    while client.get("/healthz").json()["workers_seen"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok", "workers_seen": 1}
    job = submit(client, upload(client, "test_unsat.onnx"), prop())
    wait_done(client, job["id"])
    text = client.get("/metrics").text
    assert 'proofwell_jobs{status="done"} 1' in text
    assert "proofwell_queue_depth 0" in text
    assert 'proofwell_job_seconds_bucket{le="+Inf"} 1' in text
    assert "proofwell" in client.get("/").text


def test_internal_errors_hide_the_trace(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(services.jobs, "list", boom)
    r = client.get("/v1/jobs")
    assert r.status_code == 500 and r.headers["content-type"] == PROBLEM
    assert "secret" not in r.text and "Traceback" not in r.text


BRAKE = b"""def brake(speed: Real, dist: Real) -> Real:
    u = 0.8 * speed - 0.1 * dist
    return min(max(u, 0.0), 1.0)
"""
BRAKE_SPEC = {
    "function": "brake",
    "inputs": {"speed": [0, 30], "dist": [0, 100]},
    "requires": ["dist >= speed"],
    "ensures": ["result >= 0", "result <= 1"],
}


def test_symbolic_module_jobs(client: TestClient, worker: object) -> None:
    r = client.post("/v1/artefacts", files={"file": ("brake.py", BRAKE)})
    assert r.status_code == 201 and r.json()["kind"] == "module"
    module = r.json()["id"]
    held = client.post("/v1/jobs", json={"artefact": module, "property": {"spec": BRAKE_SPEC}})
    assert held.status_code == 202, held.text
    broken_spec = {**BRAKE_SPEC, "ensures": ["result <= 0.5"]}
    broken = client.post("/v1/jobs", json={"artefact": module, "property": {"spec": broken_spec}})
    assert wait_done(client, held.json()["id"])["verdict"] == "holds"
    assert wait_done(client, broken.json()["id"])["verdict"] == "violated"
    bad_spec = {**BRAKE_SPEC, "ensures": ["result >= (0"]}
    bad = client.post("/v1/jobs", json={"artefact": module, "property": {"spec": bad_spec}})
    assert bad.status_code == 422
    error = bad.json()["errors"][0]
    assert (error["pointer"], error["field"]) == ("/property/spec", "ensures[0]")
    wrong = client.post("/v1/jobs", json={"artefact": module, "property": {"vnnlib": prop()}})
    assert wrong.status_code == 422


def test_subnetwork_by_tensor_names(client: TestClient) -> None:
    import numpy as np

    from tests.onnx_builders import dense_relu_model, to_bytes

    weights = [np.eye(2, dtype=np.float32), np.ones((3, 2), dtype=np.float32)]
    model = dense_relu_model(weights, [np.zeros(2, np.float32), np.zeros(3, np.float32)])
    r = client.post("/v1/artefacts", files={"file": ("m.onnx", to_bytes(model))})
    artefact = r.json()["id"]
    preset = {
        "kind": "output_range",
        "box": {"lower": [0, 0], "upper": [1, 1]},
        "output": 0,
        "lower": 0,
    }
    ok = client.post(
        "/v1/jobs",
        json={
            "artefact": artefact,
            "property": {"preset": preset},
            "subnetwork": {"outputs": ["act0"]},
        },
    )
    assert ok.status_code == 202, ok.text
    bad = client.post(
        "/v1/jobs",
        json={
            "artefact": artefact,
            "property": {"preset": preset},
            "subnetwork": {"outputs": ["no_such_tensor"]},
        },
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["pointer"] == "/subnetwork"


def test_a_graph_network_holds_with_a_rechecked_certificate(
    client: TestClient, worker: object
) -> None:
    """A residual network (graph engine): the worker re-checks its certificate with the
    graph checker and the job says so."""
    import numpy as np

    from tests.onnx_builders import to_bytes
    from tests.unit.test_graph_verify import residual

    data = to_bytes(residual(np.random.default_rng(0)))
    r = client.post("/v1/artefacts", files={"file": ("residual.onnx", data)})
    assert r.status_code in (200, 201), r.text
    vnnlib = (
        "\n".join(f"(declare-const X_{i} Real)" for i in range(3))
        + "\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
        + "\n".join(f"(assert (>= X_{i} -0.2))\n(assert (<= X_{i} 0.3))" for i in range(3))
        + "\n(assert (>= Y_0 (+ Y_1 50.0)))\n"
    )
    job = wait_done(client, submit(client, r.json()["id"], vnnlib)["id"])
    assert job["verdict"] == "holds", job
    check = job["stats"]["certificate_check"]
    assert check["checked"] and check["valid"], check
    cert = client.get(f"/v1/jobs/{job['id']}/certificate").json()
    assert cert["engine"] == "graph" and cert["check"]["valid"] is True
