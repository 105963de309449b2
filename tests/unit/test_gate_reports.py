"""Reports, the exit-code policy and baselines on hand-made outcomes (no engine)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx

from service.gate.baseline import compare, read_baseline, write_baseline
from service.gate.config import Check, Expect, GateConfig, ModelKind
from service.gate.remote import run_server
from service.gate.reports import junit_xml, markdown, sarif
from service.gate.summary import GateSummary
from service.gate.tasks import Outcome, Status, Task
from tests.unit.gate_sarif import assert_valid_sarif
from verifiers.result import Counterexample, Result, Stats, Verdict

ROOT = Path("/repo")
CEX = Counterexample([0.5, 0.25], [1.0], [1.0000001], 0.125)


def outcome(name: str, verdict: Verdict, expect: Expect = Expect.HOLDS) -> Outcome:
    check = Check(name, ROOT / "m.onnx", ModelKind.ONNX, (ROOT / "p.vnnlib",), expect)
    result = Result(
        verdict,
        Stats(seconds=1.5),
        CEX if verdict is Verdict.VIOLATED else None,
        reason="timeout" if verdict is Verdict.UNKNOWN else None,
    )
    return Outcome(Task(check, ROOT / "p.vnnlib", "p.vnnlib"), result)


def summary(*outcomes: Outcome, unknown_fails: bool = True) -> GateSummary:
    return GateSummary(tuple(outcomes), unknown_fails)


def test_statuses_and_exit_codes() -> None:
    ok, broken = outcome("a", Verdict.HOLDS), outcome("b", Verdict.VIOLATED)
    gap_kept = outcome("c", Verdict.VIOLATED, Expect.VIOLATED)
    gap_gone = outcome("d", Verdict.HOLDS, Expect.VIOLATED)
    unknown, error = outcome("e", Verdict.UNKNOWN), outcome("f", Verdict.ERROR)
    assert [o.status for o in (ok, broken, gap_kept, gap_gone, unknown, error)] == [
        Status.PASSED,
        Status.FAILED,
        Status.PASSED,
        Status.FAILED,
        Status.UNKNOWN,
        Status.ERROR,
    ]
    assert summary(ok, gap_kept).exit_code == 0
    assert summary(ok, gap_gone).exit_code == 1
    assert summary(ok, unknown).exit_code == 2
    assert summary(ok, unknown, unknown_fails=False).exit_code == 0
    assert summary(broken, unknown).exit_code == 1
    assert summary(broken, unknown, error).exit_code == 3


def test_junit_has_one_case_per_task_with_failures() -> None:
    run = summary(outcome("a", Verdict.HOLDS), outcome("b", Verdict.VIOLATED))
    root = ET.fromstring(junit_xml(run).split("\n", 1)[1])
    assert (root.get("tests"), root.get("failures")) == ("2", "1")
    failure = root.find("testsuite[@name='b']/testcase/failure")
    assert failure is not None and "0.5, 0.25" in (failure.text or "")
    assert failure.get("message") == "violated (expected holds)"


def test_sarif_is_valid_and_has_one_result_per_failure() -> None:
    config = GateConfig(ROOT / "proofwell.toml", ROOT, ())
    run = summary(outcome("a", Verdict.HOLDS), outcome("b", Verdict.VIOLATED))
    log = json.loads(json.dumps(sarif(run, config)))
    assert_valid_sarif(log)
    (result,) = log["runs"][0]["results"]
    assert result["ruleId"] == "PW001" and result["properties"]["counterexample"]["margin"]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "p.vnnlib"


def test_markdown_lists_verdicts_times_and_counterexamples() -> None:
    text = markdown(summary(outcome("a", Verdict.HOLDS), outcome("b", Verdict.VIOLATED)))
    assert "| ✅ | a | `p.vnnlib` | holds | holds | 1.50 s | no |" in text
    assert "counterexample: inputs [0.5, 0.25] give outputs [1]" in text


def test_baseline_round_trip_and_comparison(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    before = [outcome("a", Verdict.HOLDS), outcome("b", Verdict.VIOLATED)]
    before.append(outcome("c", Verdict.VIOLATED))
    write_baseline(path, before)
    stored = read_baseline(path)
    assert stored["a::p.vnnlib"] is Status.PASSED
    now = [outcome("a", Verdict.VIOLATED), outcome("b", Verdict.VIOLATED)]
    now += [outcome("c", Verdict.HOLDS), outcome("new", Verdict.VIOLATED)]
    failing = frozenset({Status.FAILED, Status.UNKNOWN})
    comparison = compare(stored, now, failing)
    assert comparison.regressions == ("a::p.vnnlib",)
    assert comparison.known_failures == ("b::p.vnnlib",)
    assert comparison.fixed == ("c::p.vnnlib",)
    assert comparison.new_failures == ("new::p.vnnlib",)
    gated = GateSummary(tuple(now), True, comparison)
    assert not gated.blocks(now[1]) and gated.blocks(now[0]) and gated.exit_code == 1


def test_server_mode_sends_the_bearer_token_and_uploads_a_model_once(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"model")
    (tmp_path / "p.vnnlib").write_text("(assert true)")
    check = Check("c", tmp_path / "m.onnx", ModelKind.ONNX, (tmp_path / "p.vnnlib",))
    tasks = [Task(check, tmp_path / "p.vnnlib", "p.vnnlib")] * 2
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer secret"
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path == "/v1/artefacts":
            return httpx.Response(201, json={"id": "abc", "kind": "onnx", "size": 5})
        if request.method == "POST":
            body = json.loads(request.content)
            assert body["artefact"] == "abc" and body["property"] == {"vnnlib": "(assert true)"}
            return httpx.Response(202, json={"id": "7", "status": "queued"})
        job = {"id": "7", "status": "done", "verdict": "holds", "cached": True, "stats": {}}
        assert request.url.path == "/v1/jobs" and request.url.params["ids"] == "7,7"
        return httpx.Response(200, json={"items": [job], "total": 1})

    outcomes = run_server(
        tasks, "http://api", token="secret", poll_s=0, transport=httpx.MockTransport(handler)
    )
    assert [o.status for o in outcomes] == [Status.PASSED] * 2 and all(o.cached for o in outcomes)
    assert seen.count("POST /v1/artefacts") == 1 and seen.count("POST /v1/jobs") == 2


def test_server_mode_polls_all_its_jobs_in_one_request_per_round(tmp_path: Path) -> None:
    """A gate of many checks reads its open jobs together (ids=...), at most POLL_IDS per
    request, and one by one (with retries) when such a read fails."""
    (tmp_path / "m.onnx").write_bytes(b"model")
    (tmp_path / "p.vnnlib").write_text("(assert true)")
    check = Check("c", tmp_path / "m.onnx", ModelKind.ONNX, (tmp_path / "p.vnnlib",))
    tasks = [Task(check, tmp_path / "p.vnnlib", "p.vnnlib")] * 150
    reads: list[str] = []
    fresh = iter(range(1, 1000))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/artefacts":
            return httpx.Response(201, json={"id": "abc", "kind": "onnx", "size": 5})
        if request.method == "POST":
            return httpx.Response(202, json={"id": next(fresh), "status": "queued"})
        reads.append(str(request.url))
        if len(reads) == 1:  # the first batch read fails: every job is then read alone
            return httpx.Response(503, json={"title": "Service unavailable"})
        if request.url.path != "/v1/jobs":
            job_id = int(request.url.path.rsplit("/", 1)[1])
            return httpx.Response(200, json={"id": job_id, "status": "running"})
        ids = [int(i) for i in request.url.params["ids"].split(",")]
        # Job 5 has gone from the server: its task fails as unreadable.
        done = [{"id": i, "status": "done", "verdict": "holds", "stats": {}} for i in ids]
        return httpx.Response(200, json={"items": [j for j in done if j["id"] != 5]})

    outcomes = run_server(tasks, "http://api", poll_s=0, transport=httpx.MockTransport(handler))
    assert [o.status for o in outcomes].count(Status.PASSED) == 149
    assert "job 5 could not be read" in (outcomes[4].result.reason or "")
    batches = [r for r in reads if "ids=" in r]
    assert len(reads) == 1 + 150 + 2 and len(batches) == 3  # failed batch, singles, 100 + 50
    second = httpx.URL(batches[1]).params["ids"].split(",")
    assert second == [str(i) for i in range(1, 101)]
