"""Dashboard pages on SQLite with the real engine: content, filters, pagination, 404s, escaping."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from tests.fixtures import VNNCOMP_TEST

EVIL = "<script>alert(1)</script>"
HTML = "text/html"


def prop() -> str:
    return (VNNCOMP_TEST / "test_prop.vnnlib").read_text()


def upload(client: TestClient, file: str, name: str) -> str:
    data = (VNNCOMP_TEST / file).read_bytes()
    r = client.post("/v1/artefacts", files={"file": (name, data)})
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def submit(client: TestClient, artefact: str, prop: dict[str, Any], timeout: float = 60) -> str:
    body = {"artefact": artefact, "property": prop, "options": {"timeout_s": timeout}}
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def wait_done(client: TestClient, *job_ids: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    for job_id in job_ids:
        while client.get(f"/v1/jobs/{job_id}").json()["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline, f"job {job_id} not finished"
            time.sleep(0.05)


def page(client: TestClient, url: str, status: int = 200) -> str:
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith(HTML)
    return r.text


def job_links(html: str) -> list[int]:
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [int(m) for m in re.findall(r'<td><a href="/jobs/(\d+)">', body)]


def test_pages_show_verdicts_counterexample_proof_and_regression(
    client: TestClient, worker: object
) -> None:
    v1 = upload(client, "test_unsat.onnx", "ctl.onnx")
    v2 = upload(client, "test_sat.onnx", "ctl.onnx")  # a new version under the same name
    evil = upload(client, "test_tiny.onnx", f"{EVIL}.onnx")
    evil_prop = f"; {EVIL} comment\n" + prop()
    held, also = submit(client, v1, {"vnnlib": prop()}), submit(client, v1, {"vnnlib": evil_prop})
    broken = submit(client, v2, {"vnnlib": prop()})
    tiny = submit(client, evil, {"vnnlib": (VNNCOMP_TEST / "test_tiny.vnnlib").read_text()})
    brake = b"def brake(speed: Real, dist: Real) -> Real:\n    return 0.1 * speed - 0.01 * dist\n"
    module = client.post("/v1/artefacts", files={"file": ("brake.py", brake)}).json()["id"]
    spec = {"function": "brake", "inputs": {"speed": [0, 30], "dist": [0, 100]}}
    fails = submit(client, module, {"spec": spec | {"ensures": ["result <= 1"]}})
    wait_done(client, held, also, broken, tiny, fails)
    failed = page(client, f"/jobs/{fails}")
    assert 'class="badge v-violated"' in failed and "evaluated exactly" in failed
    assert (
        "in [0, 100]" in failed
        and "result &lt;= 1" in failed
        and "replayed in onnxruntime" not in failed
    )

    home = page(client, "/")
    assert re.search(r'class="count">3</span> <span class="what">holds', home)
    assert re.search(r'class="count">2</span> <span class="what">violated', home)
    assert "<svg" in home and f"/jobs/{broken}" in home
    models = home.split('id="models-h"', 1)[1]
    assert models.index(f"/models/{v2}") < models.index(f"/models/{v1}"), "failing first"

    bad = page(client, f"/jobs/{broken}")
    assert 'class="badge v-violated"' in bad and "Counterexample" in bad
    assert bad.count('<svg class="chart"') == 2
    assert "X_4" in bad and "Y_0 ≤ Y_1" in bad and "in [0.3, 0.5]" in bad
    assert "onnxruntime" in bad and 'id="live"' not in bad

    good = page(client, f"/jobs/{held}")
    assert 'class="badge v-holds"' in good and f'href="/v1/jobs/{held}/certificate"' in good
    assert "Subproblems" in good and "Download the certificate" in good
    assert 'class="certificate-check' in good
    assert "<caption>Input box</caption>" in good and "-0.28" in good

    model = page(client, f"/models/{v2}")
    assert "regression" in model and "v2 (this)" in model and f'href="/models/{v1}"' in model
    assert "<svg" in model and "test property: unsafe when Y_0 is minimal" in model
    assert "1 of 2" in page(client, f"/models/{v1}")

    texts = [home, bad, good, model, page(client, "/jobs"), page(client, f"/jobs/{also}")]
    texts += [page(client, f"/models/{evil}"), page(client, f"/jobs/{tiny}")]
    assert not any(EVIL in t for t in texts), "HTML injection"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in texts[-1] + texts[-2]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; comment" in texts[5]


def test_filters_and_pagination(client: TestClient) -> None:
    a, b = upload(client, "test_unsat.onnx", "a.onnx"), upload(client, "test_sat.onnx", "b.onnx")
    ids = [submit(client, a, {"vnnlib": prop()}, timeout=10 + i) for i in range(27)]
    ids += [submit(client, b, {"vnnlib": prop()}, timeout=10 + i) for i in range(3)]
    first = page(client, "/jobs")
    assert job_links(first) == [int(i) for i in reversed(ids)][:25]
    assert "Page 1 of 2" in first and 'href="/jobs?page=2"' in first and 'rel="prev"' not in first
    second = page(client, "/jobs?page=2")
    assert len(job_links(second)) == 5 and 'href="/jobs?page=1"' in second
    only_b = page(client, f"/jobs?model={b}")
    assert sorted(job_links(only_b)) == [int(i) for i in ids[-3:]] and "Page 1 of 1" in only_b
    assert f'<option value="{b}" selected>' in only_b
    queued = page(client, f"/jobs?status=queued&model={a}&page=2")
    assert len(job_links(queued)) == 2 and f"model={a}" in queued and "status=queued" in queued
    assert job_links(page(client, "/jobs?verdict=holds")) == []
    assert "No jobs." in page(client, "/jobs?status=running")
    assert len(job_links(page(client, "/jobs?status=bogus&verdict=nope"))) == 25  # ignored
    assert job_links(page(client, "/jobs?page=9")) == []
    assert client.get("/jobs?page=0").status_code == 422


def test_queued_job_page_is_live_and_module_spec_is_shown(client: TestClient) -> None:
    job = submit(client, upload(client, "test_unsat.onnx", "m.onnx"), {"vnnlib": prop()})
    html = page(client, f"/jobs/{job}")
    assert 'class="badge v-queued"' in html
    assert f'data-events="/v1/jobs/{job}/events"' in html
    assert '<script src="/static/dashboard/live.js" defer></script>' in html
    assert "<progress" in html
    brake = b"def brake(speed: Real) -> Real:\n    return min(max(0.1 * speed, 0.0), 1.0)\n"
    r = client.post("/v1/artefacts", files={"file": ("brake.py", brake)})
    spec = {"function": "brake", "inputs": {"speed": [0, 30]}, "ensures": ["result <= 1"]}
    module_job = submit(client, r.json()["id"], {"spec": spec})
    html = page(client, f"/jobs/{module_job}")
    assert "module specification" in html and "&#34;ensures&#34;: [" in html
    preset = {"kind": "output_range", "box": {"lower": [0] * 5, "upper": [1] * 5}}
    preset |= {"output": 0, "upper": 3}
    preset_job = submit(client, upload(client, "test_unsat.onnx", "m.onnx"), {"preset": preset})
    assert "Y_0 &gt; 3" in page(client, f"/jobs/{preset_job}")


def test_unknown_pages_are_404_and_assets_are_local(client: TestClient) -> None:
    img = "<img src=x onerror=alert(1)>"
    for url in ("/jobs/999", "/jobs/abc", "/jobs/99999999999999999999", f"/models/{img}"):
        assert "Not found" in page(client, url, 404)
    assert img not in client.get(f"/models/{img}").text
    css = client.get("/static/dashboard/dashboard.css")
    assert css.status_code == 200 and "prefers-color-scheme: dark" in css.text
    js = client.get("/static/dashboard/live.js")
    assert js.status_code == 200 and "EventSource" in js.text
    assert client.get("/static/dashboard/../app.py").status_code == 404
    home = page(client, "/")
    assert "http://" not in home.replace("http://www.w3.org/2000/svg", "")  # no CDN


@pytest.mark.parametrize("url", ["/", "/jobs", "/jobs/1", "/models/x"])
def test_pages_redirect_to_login_outside_open_mode(settings: Settings, url: str) -> None:
    from service.app import create_app

    app = create_app(settings.model_copy(update={"open_mode": False}))
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as c:
        r = c.get(url)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    app.state.services.db.dispose()
