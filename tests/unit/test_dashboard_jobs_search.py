"""The jobs list: text search, filters by property, reason and date, the model hash."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from tests.unit.test_dashboard_job_extras import page
from tests.unit.test_dashboard_pages import job_links, prop, submit, upload

TINY = "(declare-const X_0 Real)(declare-const Y_0 Real)(assert (>= X_0 0))(assert (<= X_0 1))"


def test_search_and_filters(client: TestClient) -> None:
    a = upload(client, "test_unsat.onnx", "brake_controller.onnx")
    b = upload(client, "test_tiny.onnx", "tiny.onnx")
    j1 = submit(client, a, {"vnnlib": prop()})
    j2 = submit(client, a, {"vnnlib": "; speed limit\n" + prop()})
    j3 = submit(client, b, {"vnnlib": TINY + "(assert (>= Y_0 100))"})
    client.delete(f"/v1/jobs/{j2}")  # reason: cancelled by request

    everything = page(client, "/jobs")
    assert sorted(job_links(everything)) == sorted(int(j) for j in (j1, j2, j3))
    assert a[:8] in everything and b[:8] in everything  # the model version beside its name

    assert job_links(page(client, "/jobs?q=brake")) == [int(j2), int(j1)]
    assert job_links(page(client, "/jobs?q=speed+limit")) == [int(j2)]
    assert job_links(page(client, f"/jobs?q=%23{j3}")) == [int(j3)]
    assert job_links(page(client, "/jobs?q=100%25")) == []  # % is a character, not a wildcard
    assert job_links(page(client, "/jobs?reason=cancelled")) == [int(j2)]

    html = page(client, "/jobs")
    options = html.split('name="property"', 1)[1].split("</select>", 1)[0]
    assert "speed limit" in options
    chosen = re.search(r'<option value="([0-9a-f]{64})">speed limit', options)
    assert chosen is not None, options
    chosen = chosen.group(1)
    assert job_links(page(client, f"/jobs?property={chosen}")) == [int(j2)]

    today = datetime.now(UTC).date()
    tomorrow = today + timedelta(days=1)
    assert len(job_links(page(client, f"/jobs?since={today}&until={today}"))) == 3
    assert job_links(page(client, f"/jobs?since={tomorrow}")) == []
    assert len(job_links(page(client, "/jobs?since=not-a-date"))) == 3  # ignored, not a 500
    kept = page(client, f"/jobs?q=brake&since={today}")
    assert 'value="brake"' in kept and f'value="{today}"' in kept
