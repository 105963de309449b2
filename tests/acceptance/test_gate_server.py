"""`proofwell gate --server URL` against a live `proofwell serve` on SQLite."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from service.cli import app
from tests.acceptance.gate_helpers import VIOLATED_CHECK, make_repo
from tests.live_server import running_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with running_server(tmp_path) as url:
        yield url


def test_gate_on_a_server_submits_everything_and_uses_its_cache(
    tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Open mode on loopback: no token (an unknown bearer token is refused since issue 15;
    # sending the token is tested in tests/unit/test_gate_reports.py).
    monkeypatch.delenv("PROOFWELL_TOKEN", raising=False)
    repo = make_repo(tmp_path, VIOLATED_CHECK)
    junit, sarif, summary = tmp_path / "j.xml", tmp_path / "r.sarif", tmp_path / "summary.md"
    args = ["gate", "--server", server, "--config", str(repo / "proofwell.toml")]
    reports = ["--junit", str(junit), "--sarif", str(sarif), "--summary", str(summary)]
    first = CliRunner().invoke(app, [*args, *reports])
    assert first.exit_code == 1, first.output
    assert "FAILED   clear-on-top::properties/clear_always_top.vnnlib: violated" in first.output
    assert "6 properties in 5 checks, 5 passed, 1 failed" in first.output
    assert 'classname="clear-on-top"' in junit.read_text()
    # Every report links the failing job's dashboard page.
    (result,) = json.loads(sarif.read_text())["runs"][0]["results"]
    url = result["hostedViewerUri"]
    assert url.startswith(f"{server}/jobs/") and url in result["message"]["text"]
    assert httpx.get(url).status_code == 200
    assert f'<property name="url" value="{url}"' in junit.read_text()
    assert junit.read_text().count(f'value="{server}/jobs/') == 6
    assert f"[violated]({url})" in summary.read_text() and f"([job]({url}))" in summary.read_text()
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 1, second.output
    assert "6 from cache, 0 run" in second.output


SYSTEM_CHECKS = """
[[check]]
name = "net-matches-controller"
model = "systems/equivalence/SYSTEM.json"
timeout = 60

[[check]]
name = "net-not-that-close"
model = "systems/equivalence/SYSTEM_fails.json"
expect = "violated"
timeout = 60
"""


def _system_repo(tmp_path: Path) -> Path:
    """The examples/equivalence systems in a gate repo; the reference lives outside the
    systems' folder (`../../controller/controller.py`), as in the examples."""
    repo = make_repo(tmp_path, SYSTEM_CHECKS)
    folder = repo / "systems" / "equivalence"
    folder.mkdir(parents=True)
    (repo / "controller").mkdir()
    examples = ROOT / "examples"
    shutil.copy(examples / "controller" / "controller.py", repo / "controller")
    shutil.copy(examples / "equivalence" / "controller_net.onnx", folder)
    for name in ("SYSTEM.json", "SYSTEM_fails.json"):
        system = json.loads((examples / "equivalence" / name).read_text())
        system["reference"]["module"] = "../../controller/controller.py"
        (folder / name).write_text(json.dumps(system))
    return repo


@pytest.mark.slow
def test_gate_on_a_server_checks_systems(tmp_path: Path, server: str) -> None:
    repo = _system_repo(tmp_path)
    args = ["gate", "--server", server, "--config", str(repo / "proofwell.toml")]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "not supported" not in first.output and "only with --local" not in first.output
    assert "7 properties in 6 checks, 7 passed" in first.output
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "7 from cache, 0 run" in second.output
    # Both systems' jobs (each run twice) are listed under their network.
    net = hashlib.sha256((repo / "systems/equivalence/controller_net.onnx").read_bytes())
    listed = httpx.get(f"{server}/v1/jobs", params={"artefact": net.hexdigest()}).json()
    assert listed["total"] == 4
