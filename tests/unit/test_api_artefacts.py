"""POST /v1/artefacts: content addressing, validation, size limit, problem+json errors."""

from __future__ import annotations

import hashlib

import numpy as np
from fastapi.testclient import TestClient
from onnx import helper

from service.app import create_app
from service.config import Settings
from tests.onnx_builders import dense_relu_model, make_model, to_bytes

PROBLEM = "application/problem+json"


def tiny_model() -> bytes:
    return to_bytes(
        dense_relu_model([np.eye(2, dtype=np.float32)] * 2, [np.zeros(2, dtype=np.float32)] * 2)
    )


def upload(client: TestClient, data: bytes, name: str = "m.onnx"):
    return client.post("/v1/artefacts", files={"file": (name, data)})


def test_upload_is_content_addressed_and_deduplicated(client: TestClient) -> None:
    data = tiny_model()
    first = upload(client, data)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["id"] == hashlib.sha256(data).hexdigest()
    assert (body["kind"], body["size"]) == ("onnx", len(data))
    assert body["meta"] == {"n_inputs": 2, "n_outputs": 2, "input_name": "x", "output_name": "y"}
    again = upload(client, data, "other-name.onnx")
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    assert client.get(f"/v1/artefacts/{body['id']}").json()["kind"] == "onnx"


def test_unsupported_operator_names_the_node(client: TestClient) -> None:
    node = helper.make_node("Erf", ["x"], ["y"], name="the_erf")
    r = upload(client, to_bytes(make_model([node], input_shape=[1, 3])))
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == 422 and body["instance"] == "/v1/artefacts"
    assert body["errors"][0]["pointer"] == "/file"
    assert "Erf" in body["detail"] and "the_erf" in body["detail"]


def test_garbage_and_empty_files_are_refused(client: TestClient) -> None:
    for data in (b"\x00\x01not a model", b""):
        r = upload(client, data)
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text


def test_missing_file_field(client: TestClient) -> None:
    r = client.post("/v1/artefacts", data={"other": "x"})
    assert r.status_code == 422 and r.json()["errors"][0]["pointer"] == "/file"


def test_module_source_is_parsed_not_run(client: TestClient) -> None:
    source = b"def brake(speed: Real, dist: Real) -> Real:\n    return min(max(speed, 0.0), 1.0)\n"
    r = upload(client, source, "brake.py")
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "module"
    bad = upload(client, b"import os\nos.system('touch /tmp/pwned')\n", "evil.py")
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["line"] == 1


def test_upload_over_the_limit_is_413(tmp_path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/small.db", max_upload_mb=0.001)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        r = upload(client, b"x" * 5000)
        assert r.status_code == 413 and r.headers["content-type"] == PROBLEM
        assert r.json()["errors"][0]["pointer"] == "/file"
