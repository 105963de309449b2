"""`proofwell serve` on SQLite and `proofwell submit --wait` exit codes, end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.shared_data import VNNCOMP_TEST, needs_shared

ROOT = Path(__file__).resolve().parents[2]
CLI = "from service.cli import app; app()"
pytestmark = needs_shared


def cli(*args: str, cwd: Path) -> list[str]:
    return [sys.executable, "-c", CLI, *args]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": f"sqlite:///{tmp_path}/s.db"}
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            cli("serve", "--port", str(port), "--workers", "1", cwd=tmp_path),
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, (tmp_path / "serve.log").read_text()[-2000:]


def submit(server: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        cli("submit", "--server", server, *args, cwd=ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_submit_waits_and_exits_with_the_verdict(server: str) -> None:
    prop = str(VNNCOMP_TEST / "test_prop.vnnlib")
    held = submit(server, str(VNNCOMP_TEST / "test_unsat.onnx"), prop, "--wait")
    assert held.returncode == 0 and "holds" in held.stdout, held.stderr
    broken = submit(server, str(VNNCOMP_TEST / "test_sat.onnx"), prop, "--wait", "--json")
    assert broken.returncode == 1, broken.stderr
    assert json.loads(broken.stdout)["verdict"] == "violated"
    queued = submit(server, str(VNNCOMP_TEST / "test_unsat.onnx"), prop, "--timeout", "30")
    assert queued.returncode == 0 and queued.stdout.startswith("job ")


def test_submit_reports_a_bad_property(server: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(assert (<= X_0")
    r = submit(server, str(VNNCOMP_TEST / "test_unsat.onnx"), str(bad), "--wait")
    assert r.returncode == 3 and "Invalid input" in r.stderr
