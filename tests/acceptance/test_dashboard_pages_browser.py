"""Each page issue 16 changed, in headless Chromium: rendered, checked in the DOM, and
screenshotted (``$PROOFWELL_ARTIFACTS/dashboard/``, default ``artifacts/`` at the repo root).

Pages: the jobs list with a search, a violated job (downloads, reproduce command), a failing
closed loop (per-step charts), a running job (elapsed time ticking, the Cancel button
clicked), the comparison of two model versions, and the model page.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.acceptance.test_dashboard_browser import CHROMIUM, Browser, _artifacts
from tests.fixtures import VNNCOMP_TEST

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed"),
]


def _upload(c: httpx.Client, path: Path, name: str) -> str:
    return str(c.post("/v1/artefacts", files={"file": (name, path.read_bytes())}).json()["id"])


def _job(c: httpx.Client, body: dict) -> str:
    r = c.post("/v1/jobs", json={"options": {"timeout_s": 60}, **body})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _wait(c: httpx.Client, *jobs: str, status: tuple[str, ...] = ("done", "failed")) -> None:
    deadline = time.monotonic() + 120
    for job in jobs:
        while c.get(f"/v1/jobs/{job}").json()["status"] not in status:
            assert time.monotonic() < deadline, f"job {job} did not reach {status}"
            time.sleep(0.1)


def _closed_loop(c: httpx.Client) -> str:
    system = json.loads((EXAMPLES / "closed_loop" / "SYSTEM_fails.json").read_text())
    system["components"]["controller"]["onnx"] = "controller_net.onnx"
    files = {
        "controller_net.onnx": _upload(
            c, EXAMPLES / "equivalence" / "controller_net.onnx", "controller_net.onnx"
        ),
        "plant.py": _upload(c, EXAMPLES / "closed_loop" / "plant.py", "plant.py"),
    }
    return _job(c, {"property": {"system": system}, "artefacts": files})


def _shot(browser: Browser, name: str) -> None:
    """Screenshot the page; it must fit the width and carry real content."""
    assert browser.js("document.documentElement.scrollWidth <= window.innerWidth + 1"), name
    path = _artifacts() / f"{name}.png"
    browser.screenshot(path)
    assert path.stat().st_size > 15_000, f"{name}: the screenshot looks empty"


def _visible(browser: Browser, selector: str) -> bool:
    return bool(
        browser.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return false; const r = e.getBoundingClientRect();"
            " return r.width > 0 && r.height > 0; })()"
        )
    )


def test_changed_pages_render_in_chromium(service: str, browser: Browser) -> None:
    prop = (VNNCOMP_TEST / "test_prop.vnnlib").read_text()
    with httpx.Client(base_url=service, timeout=30) as c:
        old = _upload(c, VNNCOMP_TEST / "test_unsat.onnx", "brake.onnx")
        new = _upload(c, VNNCOMP_TEST / "test_sat.onnx", "brake.onnx")
        held = _job(c, {"artefact": old, "property": {"vnnlib": prop}})
        broken = _job(c, {"artefact": new, "property": {"vnnlib": prop}})
        loop = _closed_loop(c)
        _wait(c, held, broken, loop)
        slow = _job(c, {"artefact": old, "property": {"vnnlib": "; delay_s=60\n" + prop}})
        _wait(c, slow, status=("running",))

    browser.open(f"{service}/jobs?q=brake")
    assert browser.js("document.querySelectorAll('table.jobs tbody tr').length") == 3, browser.js(
        "document.querySelector('table.jobs').outerHTML"
    )
    assert browser.js("document.querySelector('input[name=q]').value") == "brake"
    assert _visible(browser, "table.jobs .hash") and not _visible(browser, "#no-such-thing")
    _shot(browser, "jobs-search")

    browser.open(f"{service}/jobs/{broken}")
    assert _visible(browser, "#repro-command") and _visible(browser, "[data-copy]")
    command = browser.js("document.getElementById('repro-command').textContent")
    assert command.startswith("proofwell verify brake.onnx ")
    links = browser.js("[...document.querySelectorAll('.downloads a')].map(a => a.textContent)")
    assert "Counterexample (JSON)" in links and "VNN-COMP result file" in links
    _shot(browser, "job-violated")

    browser.open(f"{service}/jobs/{loop}")
    assert browser.js("document.querySelectorAll('#main svg.chart').length") >= 3
    assert _visible(browser, "table.trace-table td.fails")
    _shot(browser, "job-closed-loop")

    browser.open(f"{service}/compare?a={old}&b={new}")
    assert browser.js("document.querySelectorAll('table.compare .regression').length") == 1
    _shot(browser, "compare")

    browser.open(f"{service}/models/{new}")
    assert _visible(browser, "a[href^='/compare?']")
    _shot(browser, "model")

    browser.open(f"{service}/jobs/{slow}")
    first = browser.js("document.getElementById('elapsed').textContent")
    time.sleep(2.2)
    assert browser.js("document.getElementById('elapsed').textContent") != first  # ticking
    _shot(browser, "job-running")
    browser.js("document.querySelector('form[action$=\"/cancel\"] button').click()")
    deadline = time.monotonic() + 20
    while browser.js("document.getElementById('status')?.textContent") != "cancelled":
        assert time.monotonic() < deadline, "the Cancel button did not cancel the job"
        time.sleep(0.1)
