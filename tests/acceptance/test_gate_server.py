"""`proofwell gate --server URL` against a live `proofwell serve` on SQLite."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from service.cli import app
from tests.acceptance.gate_helpers import VIOLATED_CHECK, make_repo

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": f"sqlite:///{tmp_path}/s.db"}
    command = [sys.executable, "-c", "from service.cli import app; app()"]
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [*command, "serve", "--port", str(port), "--workers", "1"],
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


def test_gate_on_a_server_submits_everything_and_uses_its_cache(
    tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROOFWELL_TOKEN", "ci-token")
    repo = make_repo(tmp_path, VIOLATED_CHECK)
    junit = tmp_path / "j.xml"
    args = ["gate", "--server", server, "--config", str(repo / "proofwell.toml")]
    first = CliRunner().invoke(app, [*args, "--junit", str(junit)])
    assert first.exit_code == 1, first.output
    assert "FAILED   clear-on-top::properties/clear_always_top.vnnlib: violated" in first.output
    assert "6 checks, 5 passed, 1 failed" in first.output
    assert 'classname="clear-on-top"' in junit.read_text()
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 1, second.output
    assert "6 from cache, 0 run" in second.output
