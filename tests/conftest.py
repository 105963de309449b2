"""Shared fixtures: a SQLite service (app + client) and an in-process worker; `--slow`."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.config import Settings

with warnings.catch_warnings():
    # starlette's TestClient warns that it will move to httpx2; the client still works.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow",
        action="store_true",
        help="also run the tests marked slow (CI does: .ci/run)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the slow tests unless --slow (or a -m expression) asks for them."""
    if config.getoption("--slow") or config.getoption("-m"):
        return
    # A test named on the command line (path::test) runs, slow or not.
    named = [a.split("::", 1)[1] for a in config.args if "::" in a]

    def left_out(item: pytest.Item) -> bool:
        wanted = any(item.nodeid.split("::", 1)[-1].startswith(n) for n in named)
        return item.get_closest_marker("slow") is not None and not wanted

    slow = [item for item in items if left_out(item)]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not left_out(item)]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path}/pw.db", lease_s=5.0, poll_s=0.05)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    from service.app import create_app

    app = create_app(settings)
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        yield c
    app.state.services.db.dispose()


@pytest.fixture
def worker(settings: Settings, client: TestClient) -> Iterator[object]:
    """A worker with two slots in a thread of the test process (children are processes)."""
    from service.worker.main import Worker
    from tests.integration.runners import DELAYED

    w = Worker(settings, concurrency=2, runner=DELAYED)
    thread = threading.Thread(target=w.run, kwargs={"migrate": False}, daemon=True)
    thread.start()
    yield w
    w.request_stop()
    thread.join(timeout=20)
    w.db.dispose()
