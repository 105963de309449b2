"""`proofwell serve` on SQLite and `proofwell submit --wait` exit codes, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures import VNNCOMP_TEST
from tests.live_server import running_server

ROOT = Path(__file__).resolve().parents[2]
CLI = "from service.cli import app; app()"


def cli(*args: str, cwd: Path) -> list[str]:
    return [sys.executable, "-c", CLI, *args]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with running_server(tmp_path) as url:
        yield url


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
    # The job's id and dashboard page come first, before the wait (stderr: stdout stays clean).
    first = held.stderr.splitlines()[0]
    assert first.startswith("job ") and f"{server}/jobs/" in first, held.stderr
    broken = submit(server, str(VNNCOMP_TEST / "test_sat.onnx"), prop, "--wait", "--json")
    assert broken.returncode == 1, broken.stderr
    assert json.loads(broken.stdout)["verdict"] == "violated"
    queued = submit(server, str(VNNCOMP_TEST / "test_unsat.onnx"), prop, "--timeout", "30")
    assert queued.returncode == 0 and queued.stdout.startswith("job ")
    job_id = queued.stdout.split()[1].rstrip(":")
    assert f"{server}/jobs/{job_id}" in queued.stdout


def test_submit_reports_a_bad_property(server: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(assert (<= X_0")
    r = submit(server, str(VNNCOMP_TEST / "test_unsat.onnx"), str(bad), "--wait")
    assert r.returncode == 3 and "Invalid input" in r.stderr
    assert r.stderr.startswith(f"error: Invalid input: {bad}:1:"), r.stderr  # the user's file
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    r = submit(server, str(text), str(bad))
    assert (
        r.returncode == 3
        and r.stderr.strip() == f"error: {text}: not an ONNX model (the file is text)"
    )
    broken = tmp_path / "preset.json"
    broken.write_text("{\n  oops")
    r = submit(server, str(VNNCOMP_TEST / "test_unsat.onnx"), str(broken))
    assert r.returncode == 3 and f"error: {broken}:2:3: invalid JSON" in r.stderr
