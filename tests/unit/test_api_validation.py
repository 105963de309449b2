"""Values that used to reach a 500 or a crashed job are a 422; identical in-flight work is one job."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.onnx_builders import dense_relu_model, to_bytes

PROBLEM = "application/problem+json"
VNNLIB = "\n".join(
    ["(declare-const X_0 Real)", "(declare-const X_1 Real)", "(declare-const Y_0 Real)"]
    + ["(declare-const Y_1 Real)", "(assert (>= X_0 0))", "(assert (<= X_0 1))"]
    + ["(assert (>= X_1 0))", "(assert (<= X_1 1))", "(assert (>= Y_0 5))"]
)


@pytest.fixture
def artefact(client: TestClient) -> str:
    w = np.eye(2, dtype=np.float32)
    data = to_bytes(dense_relu_model([w, w], [np.zeros(2, dtype=np.float32)] * 2))
    r = client.post("/v1/artefacts", files={"file": ("m.onnx", data)})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def job(artefact: str, **extra: Any) -> dict[str, Any]:
    return {"artefact": artefact, "property": {"vnnlib": VNNLIB}, **extra}


def assert_422(r: Any, pointer: str | None = None) -> None:
    assert r.status_code == 422, (r.status_code, r.text[:300])
    assert r.headers["content-type"] == PROBLEM
    if pointer is not None:
        assert any(e["pointer"] == pointer for e in r.json()["errors"]), r.json()


@pytest.mark.parametrize(
    ("extra", "pointer"),
    [
        ({"options": {"seed": -1}}, "/options/seed"),
        ({"options": {"seed": 2**64}}, "/options/seed"),
        ({"options": {"timeout_s": 1e300}}, "/options/timeout_s"),
        ({"priority": 2**40}, "/priority"),
        ({"priority": -(2**63)}, "/priority"),
        ({"subnetwork": {"inputs": ["x" * 5000]}}, "/subnetwork/inputs/0"),
    ],
)
def test_out_of_range_options_are_422(
    client: TestClient, artefact: str, extra: dict[str, Any], pointer: str
) -> None:
    assert_422(client.post("/v1/jobs", json=job(artefact, **extra)), pointer)


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e999"])
def test_non_finite_margins_are_422(client: TestClient, artefact: str, number: str) -> None:
    body = (
        f'{{"artefact": "{artefact}", "property": {{"vnnlib": "x"}}, '
        f'"options": {{"margin": {number}}}}}'
    )
    r = client.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
    assert_422(r, "/options/margin")


@pytest.mark.parametrize(
    "url",
    [
        "/v1/jobs/2147483648",
        "/v1/jobs/99999999999999999999",
        "/v1/jobs/-1",
        "/v1/jobs/0/events",
        "/v1/jobs/9223372036854775808/certificate",
        "/v1/jobs?offset=9223372036854775808",
        "/v1/jobs?limit=100000",
        "/v1/artefacts/" + "a" * 65,
    ],
)
def test_ids_and_offsets_past_the_columns_are_422(client: TestClient, url: str) -> None:
    assert_422(client.get(url))
    if url.startswith("/v1/jobs/2"):
        assert_422(client.delete(url))


def test_dashboard_takes_huge_ids_as_missing(client: TestClient) -> None:
    for url in ("/jobs/2147483648", "/jobs/" + "9" * 5000, "/models/" + "f" * 5000):
        r = client.get(url)
        assert r.status_code == 404 and "text/html" in r.headers["content-type"]


@pytest.mark.parametrize("value", ["9" * 5000, "12a", "-3", "9223372036854775808"])
def test_bad_last_event_ids_are_422(client: TestClient, artefact: str, value: str) -> None:
    queued = client.post("/v1/jobs", json=job(artefact)).json()
    r = client.get(f"/v1/jobs/{queued['id']}/events", headers={"Last-Event-ID": value})
    assert_422(r, "/headers/last-event-id")


def test_long_and_deep_system_paths_are_422(client: TestClient, artefact: str) -> None:
    def system_job(path: str) -> dict[str, Any]:
        system = {"kind": "equivalence", "network": path, "reference": "ref.py", "epsilon": 0.1}
        return {"property": {"system": system}, "artefacts": {path: artefact}}

    for path in ("a/" * 600 + "m.onnx", "x" * 300 + ".onnx", "/".join(["d"] * 40) + "/m.onnx"):
        assert_422(client.post("/v1/jobs", json=system_job(path)))


def test_deeply_nested_json_is_422(client: TestClient, artefact: str) -> None:
    nested: Any = {"x": 1}
    for _ in range(40):
        nested = {"k": nested}
    assert_422(client.post("/v1/jobs", json={"property": {"preset": nested}}), "/property/preset")
    deep = '{"property": {"preset": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}}"
    r = client.post("/v1/jobs", content=deep, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text[:300]


def test_identical_submissions_attach_to_the_queued_job(client: TestClient, artefact: str) -> None:
    first = client.post("/v1/jobs", json=job(artefact, options={"timeout_s": 5}))
    ids = {first.json()["id"]}
    for _ in range(20):
        r = client.post("/v1/jobs", json=job(artefact, options={"timeout_s": 5}))
        assert r.status_code == 202
        ids.add(r.json()["id"])
    assert len(ids) == 1
    assert client.get("/v1/jobs").json()["total"] == 1
    other = client.post("/v1/jobs", json=job(artefact, options={"timeout_s": 6})).json()
    assert other["id"] not in ids  # other options: other work
    client.delete(f"/v1/jobs/{first.json()['id']}")
    again = client.post("/v1/jobs", json=job(artefact, options={"timeout_s": 5})).json()
    assert again["id"] not in ids and again["status"] == "queued"  # the old one was cancelled


def test_a_higher_priority_duplicate_raises_the_queued_job(
    client: TestClient, artefact: str
) -> None:
    low = client.post("/v1/jobs", json=job(artefact, priority=0)).json()
    client.post("/v1/jobs", json=job(artefact, priority=7))
    store = client.app.state.services.jobs  # type: ignore[attr-defined]
    claimed = store.claim("w", 30.0)
    assert claimed is not None and claimed.id == int(low["id"])
    with store.db.session() as s:
        from service.store.models import JobRow

        assert s.get(JobRow, claimed.id).priority == 7
