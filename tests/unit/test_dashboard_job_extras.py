"""The job page's extras on SQLite with the real engine: downloads, the reproduce command,
cancel and rerun buttons, elapsed time, and closed-loop traces drawn per step."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from tests.fixtures import VNNCOMP_TEST
from tests.integration.runners import with_delay
from tests.unit.test_dashboard_pages import page, prop, submit, upload, wait_done

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def test_downloads_and_reproduce_command_of_a_violated_and_a_held_job(
    client: TestClient, worker: object
) -> None:
    sat, unsat = (
        upload(client, "test_sat.onnx", "ctl.onnx"),
        upload(client, "test_unsat.onnx", "ok.onnx"),
    )
    broken, held = (
        submit(client, sat, {"vnnlib": prop()}),
        submit(client, unsat, {"vnnlib": prop()}),
    )
    wait_done(client, broken, held)
    html = page(client, f"/jobs/{broken}")
    assert f"proofwell verify ctl.onnx job-{broken}.vnnlib --timeout 60" in html
    for href in ("counterexample", "vnncomp-result", "property"):
        assert f'href="/v1/jobs/{broken}/{href}"' in html
    assert f'href="/v1/artefacts/{sat}/file"' in html and sat[:12] in html
    assert "elements of the ONNX input tensor input " in html and "those of output." in html

    cex = client.get(f"/v1/jobs/{broken}/counterexample")
    assert cex.status_code == 200 and "attachment" in cex.headers["content-disposition"]
    document = cex.json()
    assert document["verdict"] == "violated" and document["model"] == "ctl.onnx"
    assert len(document["counterexample"]["inputs"]) == 5
    result = client.get(f"/v1/jobs/{broken}/vnncomp-result").text
    assert result.startswith("sat\n((X_0 ") and "(Y_4 " in result
    assert client.get(f"/v1/jobs/{broken}/property").text == prop()
    model = client.get(f"/v1/artefacts/{sat}/file")
    assert model.content == (VNNCOMP_TEST / "test_sat.onnx").read_bytes()
    assert 'filename="ctl.onnx"' in model.headers["content-disposition"]

    assert client.get(f"/v1/jobs/{held}/vnncomp-result").text == "unsat\n"
    missing = client.get(f"/v1/jobs/{held}/counterexample")
    assert missing.status_code == 404 and missing.json()["type"].endswith("no-counterexample")
    assert f'href="/v1/jobs/{held}/counterexample"' not in page(client, f"/jobs/{held}")


def test_cancel_and_rerun_buttons(client: TestClient, worker: object) -> None:
    artefact = upload(client, "test_unsat.onnx", "slow.onnx")
    job = submit(client, artefact, {"vnnlib": with_delay(prop(), 60)}, timeout=30)
    html = page(client, f"/jobs/{job}")
    assert f'action="/jobs/{job}/cancel"' in html and f'action="/jobs/{job}/rerun"' in html
    foreign = client.post(f"/jobs/{job}/cancel", headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    r = client.post(f"/jobs/{job}/cancel", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/jobs/{job}"
    assert client.get(f"/v1/jobs/{job}").json()["status"] == "cancelled"
    assert f'action="/jobs/{job}/cancel"' not in page(client, f"/jobs/{job}")

    r = client.post(
        f"/jobs/{job}/rerun", data={"timeout_s": "120", "memory_mb": "4096"}, follow_redirects=False
    )
    assert r.status_code == 303
    new = r.headers["location"].rsplit("/", 1)[1]
    assert new != job
    options = client.get(f"/v1/jobs/{new}").json()["options"]
    assert (options["timeout_s"], options["memory_mb"]) == (120, 4096)
    bad = client.post(f"/jobs/{job}/rerun", data={"timeout_s": "-1"}, follow_redirects=False)
    assert bad.status_code == 422
    client.delete(f"/v1/jobs/{new}")


def test_a_running_job_shows_its_elapsed_time(client: TestClient, worker: object) -> None:
    import time

    artefact = upload(client, "test_unsat.onnx", "slow.onnx")
    job = submit(client, artefact, {"vnnlib": with_delay(prop(), 30)})
    deadline = time.monotonic() + 20
    while client.get(f"/v1/jobs/{job}").json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    html = page(client, f"/jobs/{job}")
    assert "Running for" in html and 'id="elapsed" data-seconds="' in html
    client.delete(f"/v1/jobs/{job}")


def closed_loop_job(client: TestClient) -> str:
    system = json.loads((EXAMPLES / "closed_loop" / "SYSTEM_fails.json").read_text())
    system["components"]["controller"]["onnx"] = "controller_net.onnx"
    files = {}
    for path, source in (
        ("controller_net.onnx", EXAMPLES / "equivalence" / "controller_net.onnx"),
        ("plant.py", EXAMPLES / "closed_loop" / "plant.py"),
    ):
        r = client.post("/v1/artefacts", files={"file": (source.name, source.read_bytes())})
        files[path] = r.json()["id"]
    body = {"property": {"system": system}, "artefacts": files, "options": {"timeout_s": 60}}
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def test_a_failing_closed_loop_is_drawn_step_by_step(client: TestClient, worker: object) -> None:
    job = closed_loop_job(client)
    wait_done(client, job)
    html = page(client, f"/jobs/{job}")
    assert "Invariant “dist &gt;= 18.5” failed at step 2." in html
    assert html.count('<svg class="chart"') >= 3  # dist, speed and u, one chart each
    assert "dist at each step" in html and 'class="threshold"' in html
    assert html.count("fails here") == 1 and "X_0" not in html
    assert f"proofwell verify job-{job}-SYSTEM.json --timeout 60" in html


def test_a_label_map_names_the_counterexample_in_the_charts(
    client: TestClient, worker: object
) -> None:
    sat = upload(client, "test_sat.onnx", "ctl.onnx")
    labels = "; label X_0 = rho\n; label Y_0 = clear of conflict\n"
    job = submit(client, sat, {"vnnlib": labels + prop()})
    wait_done(client, job)
    html = page(client, f"/jobs/{job}")
    charts = html.split('<section class="panel verdict-violated"', 1)[1].split("</section>", 1)[0]
    assert ">rho</text>" in charts and ">clear of…</text>" in charts  # cut to fit the chart
    # Unlabelled: the ONNX tensor element it is.
    assert ">input[1]</text>" in charts and ">output[1]</text>" in charts


def test_a_module_bmc_trace_is_drawn_by_name(client: TestClient, worker: object) -> None:
    source = "def step(x: Real, u: Real) -> Real:\n    return x + u\n"
    r = client.post("/v1/artefacts", files={"file": ("counter.py", source.encode())})
    spec = {
        "step": "step",
        "init": {"x": [0, 1]},
        "inputs": {"u": [-1, 1]},
        "invariant": ["x <= 3.5"],
        "steps": 5,
    }
    job = submit(client, r.json()["id"], {"spec": spec})
    wait_done(client, job)
    html = page(client, f"/jobs/{job}")
    assert "Invariant “x &lt;= 3.5” failed at step 3." in html
    assert "x at each step" in html and "u at each step" in html
    assert ">X_0<" not in html and html.count("fails here") == 1
