"""The dashboard in a real headless Chromium (Debian's), driven over the DevTools protocol.

`proofwell serve` (no local workers) and a `proofwell worker` whose runner sleeps as the
property asks (tests/integration/runners.py) run on a temp SQLite file; the job page is
opened while the job runs and must switch to the final verdict without a reload.
The screenshot lands in ``$PROOFWELL_ARTIFACTS`` (default: ``artifacts/`` at the repo root).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures import VNNCOMP_TEST

ROOT = Path(__file__).resolve().parents[2]
CLI = "from service.cli import app; app()"
DELAYED = "tests.integration.runners:delayed_engine"
CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1280,1000",
    "--remote-debugging-port=0",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed"),
]


class Browser:
    """A headless Chromium and one page, over the DevTools protocol (flat sessions)."""

    def __init__(self, profile: Path) -> None:
        from websockets.sync.client import connect

        assert CHROMIUM is not None
        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._stack = contextlib.ExitStack()
        try:
            self._connect(profile, connect)
        except BaseException:
            self.close()
            raise

    def _connect(self, profile: Path, connect: Any) -> None:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        url = f"ws://127.0.0.1:{port}{path}"
        self.ws = self._stack.enter_context(connect(url, max_size=64 * 1024 * 1024))
        self.ids = itertools.count(1)
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        attached = self.call("Target.attachToTarget", targetId=target, flatten=True)
        self.session = attached["sessionId"]
        self.call("Page.enable", session=True)

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        ident = next(self.ids)
        msg: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv(timeout=30))
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    def js(self, expression: str) -> Any:
        out = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        return out.get("result", {}).get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)
        deadline = time.monotonic() + 20
        while self.js("document.readyState") != "complete":
            assert time.monotonic() < deadline, f"{url} did not load"
            time.sleep(0.05)

    def dark(self, on: bool) -> None:
        value = "dark" if on else "light"
        features = [{"name": "prefers-color-scheme", "value": value}]
        self.call("Emulation.setEmulatedMedia", session=True, features=features)

    def screenshot(self, path: Path) -> None:
        size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": 1280, "height": min(size["height"], 6000), "scale": 1}
        shot = self.call(
            "Page.captureScreenshot",
            session=True,
            format="png",
            clip=clip,
            captureBeyondViewport=True,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        self._stack.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", CLI, *args], env=env, cwd=cwd, stdout=out, stderr=out
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    """`proofwell serve` plus one `proofwell worker` with the delaying runner."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": f"sqlite:///{tmp_path}/d.db"}
    env["PROOFWELL_POLL_S"] = "0.05"
    serve = _start(
        ["serve", "--port", str(port), "--workers", "0"], env, tmp_path, tmp_path / "serve.log"
    )
    url = f"http://127.0.0.1:{port}"
    procs = [serve]
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-2000:]
            time.sleep(0.1)
        procs.append(_start(["worker", "--runner", DELAYED], env, tmp_path, tmp_path / "w.log"))
        yield url
    finally:
        for proc in reversed(procs):
            _stop(proc)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser(tmp_path / "profile")
    try:
        yield b
    finally:
        b.close()


def _artifacts() -> Path:
    return Path(os.environ.get("PROOFWELL_ARTIFACTS", ROOT / "artifacts")) / "dashboard"


def test_job_page_turns_to_the_verdict_live(service: str, browser: Browser) -> None:
    sat = (VNNCOMP_TEST / "test_sat.onnx").read_bytes()
    vnnlib = "; delay_s=3\n" + (VNNCOMP_TEST / "test_prop.vnnlib").read_text()
    with httpx.Client(base_url=service, timeout=30) as c:
        artefact = c.post("/v1/artefacts", files={"file": ("controller.onnx", sat)}).json()["id"]
        body = {"artefact": artefact, "property": {"vnnlib": vnnlib}, "options": {"timeout_s": 60}}
        job = c.post("/v1/jobs", json=body).json()["id"]

    browser.open(f"{service}/jobs/{job}")
    browser.js("window.__sameDocument = true")
    badge = "document.querySelector('#state .badge').textContent"
    seen = [browser.js(badge)]
    assert seen[0] in ("queued", "running"), seen
    deadline = time.monotonic() + 120  # ~5 s normally; generous for a loaded CI machine
    while seen[-1] != "violated":
        assert time.monotonic() < deadline, f"no verdict on the page; badges seen: {seen}"
        time.sleep(0.1)
        state = browser.js(badge)
        if state != seen[-1]:
            seen.append(state)
    assert "running" in seen, seen
    assert browser.js("window.__sameDocument === true"), "the page reloaded"
    assert browser.js("document.querySelectorAll('#main svg.chart').length") >= 2
    assert browser.js("document.getElementById('live') === null")
    browser.screenshot(_artifacts() / f"job-{job}-violated.png")
    assert (_artifacts() / f"job-{job}-violated.png").stat().st_size > 10_000
