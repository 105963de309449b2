"""`proofwell serve` as a real process on a free localhost port, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from service.cli import app; app()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(tmp_path: Path, *serve_args: str) -> Iterator[str]:
    """Serve on a SQLite file in tmp_path; yield the base URL; stop with SIGTERM, which must
    end cleanly (exit 0), or the serve log is shown."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": f"sqlite:///{tmp_path}/s.db"}
    args = serve_args or ("--workers", "1")
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [*CLI, "serve", "--port", str(port), *args],
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
