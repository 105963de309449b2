"""Issue 16's pages and downloads see only the caller's project (issue 15's tokens)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.store.tokens import TokenStore, parse_scopes
from tests.unit.test_access_control import VNNLIB, bearer, locked, model_bytes  # noqa: F401


def test_other_projects_jobs_and_models_stay_hidden(
    locked: tuple[TestClient, TokenStore],  # noqa: F811
) -> None:
    client, store = locked
    a, _ = store.create("team-a", "ci", parse_scopes("read,submit"))
    b, _ = store.create("team-b", "ci", parse_scopes("read,submit"))
    r = client.post(
        "/v1/artefacts", files={"file": ("secret-brake.onnx", model_bytes())}, headers=bearer(a)
    )
    artefact = r.json()["id"]
    body = {"artefact": artefact, "property": {"vnnlib": VNNLIB}}
    job = client.post("/v1/jobs", json=body, headers=bearer(a)).json()["id"]

    mine = client.get(f"/v1/jobs/{job}/property", headers=bearer(a))
    assert mine.status_code == 200 and mine.text == VNNLIB
    for url in (
        f"/v1/jobs/{job}/property",
        f"/v1/jobs/{job}/vnncomp-result",
        f"/v1/jobs/{job}/counterexample",
        f"/v1/artefacts/{artefact}/file",
    ):
        assert client.get(url, headers=bearer(b)).status_code == 404, url
    assert f"/jobs/{job}" in client.get("/jobs?q=secret", headers=bearer(a)).text
    other = client.get("/jobs?q=secret", headers=bearer(b)).text
    assert f"/jobs/{job}" not in other and "secret-brake" not in other
    assert client.get(f"/compare?a={artefact}&b={artefact}", headers=bearer(b)).status_code == 404
    assert client.post(f"/jobs/{job}/cancel", headers=bearer(b)).status_code == 404
    assert client.post(f"/jobs/{job}/rerun", headers=bearer(b)).status_code == 404
    assert client.get(f"/v1/jobs/{job}", headers=bearer(a)).json()["status"] == "queued"
