"""Comparing two model versions; regressions are not hidden by resource-limited unknowns."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from service.regressions import representative
from tests.unit.test_dashboard_job_extras import page
from tests.unit.test_dashboard_pages import submit, upload

DECLS = "(declare-const X_0 Real)(declare-const Y_0 Real)(assert (>= X_0 0))(assert (<= X_0 1))"


def finished(
    client: TestClient, artefact: str, label: str, result: dict[str, Any], timeout: float = 60
) -> str:
    """A job whose result is stored as the engine would (no engine run: the store directly)."""
    jobs = client.app.state.services.jobs  # type: ignore[attr-defined]
    text = f"; {label}\n{DECLS}(assert (>= Y_0 100))"
    job = submit(client, artefact, {"vnnlib": text}, timeout=timeout)
    claimed = jobs.claim("test-worker", 30.0)
    assert claimed is not None and str(claimed.id) == job
    assert jobs.finish(int(job), "test-worker", {"stats": {}, **result}, 1.5)
    return job


HOLDS = {"verdict": "holds", "stats": {"proved_fraction": 1.0}}
VIOLATED = {"verdict": "violated", "counterexample": {"inputs": [0.5], "outputs": [101.0]}}
OOM = {"verdict": "unknown", "reason": "memory limit 2048 MB exceeded"}
LOST = {"verdict": "unknown", "reason": "z3 gave up; 40.0% of the input volume proved"}


def test_compare_finds_the_regression_an_out_of_memory_run_would_hide(client: TestClient) -> None:
    old = upload(client, "test_tiny.onnx", "ctl.onnx")
    new = upload(client, "test_nano.onnx", "ctl.onnx")
    finished(client, old, "range", HOLDS)
    finished(client, new, "range", VIOLATED)
    # A rerun with more time ran out of memory: newer, but it says nothing about the model.
    newest_oom = finished(client, new, "range", OOM, timeout=600)
    finished(client, old, "stable", HOLDS)
    finished(client, new, "stable", HOLDS)
    finished(client, old, "slow one", HOLDS)
    finished(client, new, "slow one", OOM)  # undecided by a limit: not a regression
    finished(client, old, "lost proof", HOLDS)
    finished(client, new, "lost proof", LOST)  # undecided for a reason of the model: counted

    html = page(client, f"/compare?a={old}&b={new}")
    assert "<strong>2 regressions:</strong>" in html
    rows = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0].split("<tr")[1:]
    changes = {r.split('class="prop">')[1].split("<")[0]: r for r in rows}
    assert 'class="regression">regression' in changes["range"]
    assert 'class="regression">regression' in changes["lost proof"]
    assert "regression" not in changes["slow one"] and "not counted" in changes["slow one"]
    assert "<td>same</td>" in changes["stable"]
    assert "counterexample" in changes["range"] and f"/jobs/{newest_oom}" not in changes["range"]

    model = page(client, f"/models/{new}")  # the model page agrees
    assert "2 regressions:" in model
    assert f'href="/compare?a={old}&amp;b={new}"' in model


def test_compare_pages_without_or_with_unknown_models(client: TestClient) -> None:
    assert "Compare model versions" in page(client, "/compare")
    assert "No model with id" in page(client, "/compare?a=nope&b=nothing", 404)


def test_representative_prefers_decided_runs() -> None:
    assert representative([]) is None
