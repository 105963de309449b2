"""`proofwell gate --server URL` against a live `proofwell serve` on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
