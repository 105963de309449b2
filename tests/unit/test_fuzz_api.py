"""schemathesis over every API route: no 500, every answer in the documented schema.

Runs in open mode and in token mode (with a read+submit token), on SQLite. The SSE route
is left out here (a stream of a live job never ends); its bad inputs are tested directly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.config import Settings
from service.store.tokens import parse_scopes

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def fuzz(app: object, headers: dict[str, str]) -> list[str]:
    """Every operation (but the event stream) with generated requests; their names."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path_regex="/events$")
    names = []
    for result in schema.get_all_operations():
        operation = result.ok()
        names.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        check()
    return names


@pytest.mark.parametrize("mode", ["open", "tokens"])
def test_no_server_errors_and_answers_match_the_schema(tmp_path: Path, mode: str) -> None:
    open_mode = mode == "open"
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/f.db", open_mode=open_mode))
    headers = {"Host": "localhost"}
    if not open_mode:
        token, _ = app.state.services.tokens.create("fuzz", "", parse_scopes("read,submit"))
        headers["Authorization"] = f"Bearer {token}"
    try:
        names = fuzz(app, headers)
    finally:
        app.state.services.db.dispose()
    assert "POST /v1/jobs" in names and "POST /v1/artefacts" in names
