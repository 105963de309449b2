"""Projects, tokens and scopes over HTTP; the dashboard login; cross-site requests; headers."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.app import create_app
from service.config import Settings
from service.store.models import ApiToken
from service.store.tokens import Scope, TokenStore, parse_scopes
from tests.onnx_builders import dense_relu_model, to_bytes

PROBLEM = "application/problem+json"
BASE = "http://127.0.0.1"
VNNLIB = "\n".join(
    ["(declare-const X_0 Real)", "(declare-const X_1 Real)", "(declare-const Y_0 Real)"]
    + ["(declare-const Y_1 Real)", "(assert (>= X_0 0))", "(assert (<= X_0 1))"]
    + ["(assert (>= X_1 0))", "(assert (<= X_1 1))", "(assert (>= Y_0 5))"]
)


def model_bytes(scale: float = 1.0) -> bytes:
    w = np.eye(2, dtype=np.float32) * scale
    return to_bytes(dense_relu_model([w, w], [np.zeros(2, dtype=np.float32)] * 2))


@pytest.fixture
def locked(settings: Settings) -> Iterator[tuple[TestClient, TokenStore]]:
    """The app in token mode, and its token store."""
    app = create_app(settings.model_copy(update={"open_mode": False}))
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as c:
        yield c, app.state.services.tokens
    app.state.services.db.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_tokens_are_stored_hashed_and_revocable(locked: tuple[TestClient, TokenStore]) -> None:
    _, store = locked
    token, info = store.create("team-a", "ci", parse_scopes("read,submit"))
    assert token.startswith(f"pw_{info.id}_")
    with store.db.session() as s:
        stored = s.scalars(select(ApiToken.secret_hash)).one()
    secret = token.removeprefix(f"pw_{info.id}_")  # the secret itself may hold "_"
    assert stored.startswith("$argon2id$") and secret not in stored
    who = store.verify(token)
    assert who is not None and who.project == "team-a"
    assert who.scopes == {Scope.READ, Scope.SUBMIT}
    assert store.verify(token[:-2] + ("AA" if not token.endswith("AA") else "BB")) is None
    assert store.verify("pw_000000000000_" + "x" * 43) is None
    assert store.revoke(info.id) is True
    assert store.verify(token) is None  # at once, though it was verified a moment ago
    assert store.revoke(info.id) is False
    assert [t.revoked_at is not None for t in store.list("team-a")] == [True]


def test_scopes_must_be_known() -> None:
    with pytest.raises(ValueError, match="unknown scope 'write'"):
        parse_scopes("read,write")
    with pytest.raises(ValueError):
        parse_scopes("")


def test_every_api_route_needs_a_token(locked: tuple[TestClient, TokenStore]) -> None:
    c, _ = locked
    for method, url in [
        ("GET", "/v1/jobs"),
        ("GET", "/v1/jobs/1"),
        ("DELETE", "/v1/jobs/1"),
        ("GET", "/v1/jobs/1/events"),
        ("GET", "/v1/jobs/1/certificate"),
        ("GET", "/v1/artefacts/" + "a" * 64),
        ("POST", "/v1/jobs"),
        ("GET", "/metrics"),
    ]:
        r = c.request(method, url)
        assert r.status_code == 401, (method, url, r.status_code)
        assert r.headers["content-type"] == PROBLEM
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert c.get("/healthz").status_code == 200  # for load balancers
    bad = c.get("/v1/jobs", headers=bearer("pw_000000000000_" + "x" * 43))
    assert bad.status_code == 401


def test_scopes_are_enforced(locked: tuple[TestClient, TokenStore]) -> None:
    c, store = locked
    reader, _ = store.create("p", "r", parse_scopes("read"))
    submitter, _ = store.create("p", "s", parse_scopes("submit"))
    admin, _ = store.create("p", "a", parse_scopes("admin"))
    files = {"file": ("m.onnx", model_bytes())}
    denied = c.post("/v1/artefacts", files=files, headers=bearer(reader))
    assert denied.status_code == 403 and "submit" in denied.json()["detail"]
    assert c.post("/v1/artefacts", files=files, headers=bearer(submitter)).status_code == 201
    assert c.get("/v1/jobs", headers=bearer(reader)).status_code == 200
    assert c.get("/metrics", headers=bearer(reader)).status_code == 403
    assert c.get("/metrics", headers=bearer(admin)).status_code == 200
    assert c.post("/v1/artefacts", files=files, headers=bearer(admin)).status_code == 200


def test_another_projects_things_are_not_found(locked: tuple[TestClient, TokenStore]) -> None:
    c, store = locked
    a, _ = store.create("team-a", "", parse_scopes("read,submit"))
    b, _ = store.create("team-b", "", parse_scopes("admin"))
    data = model_bytes()
    art = c.post("/v1/artefacts", files={"file": ("a.onnx", data)}, headers=bearer(a)).json()
    body = {"artefact": art["id"], "property": {"vnnlib": VNNLIB}}
    job = c.post("/v1/jobs", json=body, headers=bearer(a)).json()
    for method, url in [
        ("GET", f"/v1/jobs/{job['id']}"),
        ("DELETE", f"/v1/jobs/{job['id']}"),
        ("GET", f"/v1/jobs/{job['id']}/events"),
        ("GET", f"/v1/jobs/{job['id']}/certificate"),
        ("GET", f"/v1/artefacts/{art['id']}"),
    ]:
        r = c.request(method, url, headers=bearer(b))
        assert r.status_code == 404, (method, url, r.status_code)
    assert c.get("/v1/jobs", headers=bearer(b)).json()["total"] == 0
    assert c.get("/v1/jobs", params={"ids": job["id"]}, headers=bearer(b)).json()["items"] == []
    # B cannot submit on A's artefact by its id...
    assert c.post("/v1/jobs", json=body, headers=bearer(b)).status_code == 404
    # ...until B uploads the same bytes itself (new to B: 201, under B's own file name).
    mine = c.post("/v1/artefacts", files={"file": ("b.onnx", data)}, headers=bearer(b))
    assert mine.status_code == 201 and mine.json()["filename"] == "b.onnx"
    other = c.post("/v1/jobs", json=body, headers=bearer(b)).json()
    assert other["id"] != job["id"]  # not attached to A's in-flight job
    assert c.get(f"/v1/jobs/{job['id']}", headers=bearer(a)).json()["status"] == "queued"
    page = c.get(f"/jobs/{job['id']}", headers={"Cookie": f"proofwell_session={b}"})
    assert page.status_code == 404


def test_dashboard_login_sets_a_strict_cookie(locked: tuple[TestClient, TokenStore]) -> None:
    c, store = locked
    token, _ = store.create("p", "", parse_scopes("read"))
    first = c.get("/jobs?status=done", follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"] == "/login?next=%2Fjobs%3Fstatus%3Ddone"
    assert c.get("/login").status_code == 200
    wrong = c.post("/login", data={"token": "nope", "next": "/jobs"}, follow_redirects=False)
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    ok = c.post("/login", data={"token": token, "next": "/jobs"}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/jobs"
    cookie = ok.headers["set-cookie"].lower()
    for attribute in ("httponly", "secure", "samesite=strict", "path=/"):
        assert attribute in cookie, cookie
    session = {"Cookie": f"proofwell_session={token}"}
    assert c.get("/jobs", headers=session).status_code == 200
    assert c.get("/v1/jobs", headers=session).status_code == 200  # the live page's stream
    away = c.post(
        "/login", data={"token": token, "next": "//evil.example/x"}, follow_redirects=False
    )
    assert away.headers["location"] == "/"
    store.revoke(token)
    assert c.get("/jobs", headers=session, follow_redirects=False).status_code == 303


def test_open_mode_answers_only_loopback_host_names(client: TestClient) -> None:
    assert client.get("/v1/jobs").status_code == 200
    # A token this server does not know (a CI token for another server) changes nothing.
    assert client.get("/v1/jobs", headers=bearer("ci-token")).status_code == 200
    rebound = client.get("/v1/jobs", headers={"Host": "attacker.example"})
    assert rebound.status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_cross_site_posts_are_refused(client: TestClient, headers: dict[str, str]) -> None:
    r = client.post("/v1/artefacts", files={"file": ("m.onnx", model_bytes())}, headers=headers)
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
    assert client.get("/v1/jobs").json()["total"] == 0
    listed = client.get("/v1/artefacts/" + "0" * 64)
    assert listed.status_code == 404


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, httpx, the CLI: no browser headers
        {"Origin": "http://127.0.0.1"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1"},
    ],
)
def test_same_site_and_non_browser_posts_pass(client: TestClient, headers: dict[str, str]) -> None:
    r = client.post("/v1/artefacts", files={"file": ("m.onnx", model_bytes())}, headers=headers)
    assert r.status_code == 201, r.text


def test_security_headers_on_pages_api_and_errors(client: TestClient) -> None:
    for url in ("/", "/jobs", "/v1/jobs", "/v1/jobs/999", "/healthz", "/login", "/nope"):
        h = client.get(url).headers
        assert h["x-content-type-options"] == "nosniff", url
        assert h["x-frame-options"] == "DENY", url
        csp = h["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, url
    assert "script-src 'self';" in client.get("/").headers["content-security-policy"]
    assert "cdn.jsdelivr.net" in client.get("/docs").headers["content-security-policy"]
