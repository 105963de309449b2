"""The required fields of SARIF 2.1.0 (OASIS sarif-schema-2.1.0.json), checked by hand.

No PyPI package ships the published schema (sarif-om, sarif-tools and sarif-pydantic were
looked at), and the tests must not fetch it; these are the schema's `required` lists, enums
and cross-references for the objects the gate writes.
"""

from __future__ import annotations

from typing import Any

LEVELS = ("none", "note", "warning", "error")
KINDS = ("notApplicable", "pass", "fail", "review", "open", "informational")


def assert_valid_sarif(log: dict[str, Any]) -> None:
    assert log["version"] == "2.1.0"
    assert isinstance(log.get("$schema", ""), str)
    runs = log["runs"]
    assert isinstance(runs, list)
    for run in runs:
        _run(run)


def _run(run: dict[str, Any]) -> None:
    driver = run["tool"]["driver"]
    assert isinstance(driver["name"], str) and driver["name"]
    rules = driver.get("rules", [])
    ids = [rule["id"] for rule in rules]
    assert all(isinstance(i, str) and i for i in ids) and len(set(ids)) == len(ids)
    for rule in rules:
        if "shortDescription" in rule:
            assert isinstance(rule["shortDescription"]["text"], str)
    for base in run.get("originalUriBaseIds", {}).values():
        assert base["uri"].endswith("/")
    for invocation in run.get("invocations", []):
        assert isinstance(invocation["executionSuccessful"], bool)
    for result in run.get("results", []):
        _result(result, ids)


def _result(result: dict[str, Any], rule_ids: list[str]) -> None:
    message = result["message"]
    assert isinstance(message.get("text") or message.get("id"), str)
    assert result.get("level", "warning") in LEVELS
    assert result.get("kind", "fail") in KINDS
    if "ruleIndex" in result:
        assert 0 <= result["ruleIndex"] < len(rule_ids)
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
    for location in result.get("locations", []):
        physical = location["physicalLocation"]
        artifact = physical["artifactLocation"]
        assert isinstance(artifact["uri"], str) and not artifact["uri"].startswith("/")
        region = physical.get("region", {})
        assert region.get("startLine", 1) >= 1
    for key, value in result.get("partialFingerprints", {}).items():
        assert isinstance(key, str) and isinstance(value, str)
    assert isinstance(result.get("properties", {}), dict)
