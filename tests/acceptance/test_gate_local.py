"""`proofwell gate --local` on a temporary copy of examples/gate: exits, reports, cache."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from service.gate import runner
from tests.acceptance.gate_helpers import VIOLATED_CHECK, gate, make_repo
from tests.unit.gate_sarif import assert_valid_sarif


def cases(junit: Path) -> dict[str, ET.Element]:
    root = ET.parse(junit).getroot()
    return {f"{c.get('classname')}::{c.get('name')}": c for c in root.iter("testcase")}


def test_all_checks_hold(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    run = gate(repo, "--junit", str(tmp_path / "j.xml"), "--summary", str(tmp_path / "s.md"))
    assert run.code == 0, run.output
    found = cases(tmp_path / "j.xml")
    assert len(found) == 5
    assert all(c.find("failure") is None and c.find("error") is None for c in found.values())
    summary = (tmp_path / "s.md").read_text()
    assert "proofwell gate passed" in summary and "brake-contract" in summary


def test_one_violated_property_fails_and_is_reported(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, VIOLATED_CHECK)
    junit, sarif, summary = tmp_path / "j.xml", tmp_path / "out.sarif", tmp_path / "s.md"
    run = gate(repo, "--junit", str(junit), "--sarif", str(sarif), "--summary", str(summary))
    assert run.code == 1, run.output
    failed = {k: c for k, c in cases(junit).items() if c.find("failure") is not None}
    assert list(failed) == ["clear-on-top::properties/clear_always_top.vnnlib"]
    failure = next(iter(failed.values())).find("failure")
    assert failure is not None and "violated (expected holds)" in failure.get("message", "")
    assert "inputs [" in (failure.text or "")
    log = json.loads(sarif.read_text())
    assert_valid_sarif(log)
    (result,) = log["runs"][0]["results"]
    assert result["level"] == "error" and "clear-on-top" in result["message"]["text"]
    location = result["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location["uri"] == "properties/clear_always_top.vnnlib"
    assert "Counterexample: inputs [" in result["message"]["text"]
    text = summary.read_text()
    assert "clear-on-top" in text and "counterexample: inputs [" in text


UNKNOWN_CHECK = """
[[check]]
name = "no-time"
model = "models/advisory.onnx"
properties = ["properties/advisory/clear_beats_left.vnnlib"]
timeout = 0
"""


def test_unknown_fails_unless_warned(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "proofwell.toml").write_text(UNKNOWN_CHECK)
    run = gate(repo)
    assert run.code == 2, run.output
    assert "UNKNOWN  no-time::" in run.output and "timeout" in run.output
    junit = tmp_path / "j.xml"
    warned = gate(repo, "--unknown", "warn", "--junit", str(junit))
    assert warned.code == 0, warned.output
    (case,) = cases(junit).values()
    assert case.find("skipped") is not None


def test_a_second_run_on_unchanged_inputs_skips_the_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = runner.execute_task

    def counting(task: runner.Task) -> dict:
        calls.append(task.id)
        return real(task)

    monkeypatch.setattr(runner, "execute_task", counting)
    repo = make_repo(tmp_path, VIOLATED_CHECK)
    first = gate(repo)
    assert first.code == 1 and len(calls) == 6
    calls.clear()
    second = gate(repo)
    assert second.code == 1 and calls == [], second.output
    assert "6 from cache, 0 run" in second.output
    # Changing one property's bytes runs that property again, and only it.
    prop = repo / "properties" / "advisory" / "scores_bounded.vnnlib"
    prop.write_text(prop.read_text() + "\n; edited\n")
    third = gate(repo)
    assert third.code == 1 and calls == [
        "advisory-safety::properties/advisory/scores_bounded.vnnlib"
    ]


def test_parallel_jobs_in_a_process_pool(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, VIOLATED_CHECK)
    run = gate(repo, "--no-cache", jobs="2")
    assert run.code == 1, run.output
    assert "FAILED   clear-on-top::properties/clear_always_top.vnnlib" in run.output
    assert "5 passed, 1 failed" in run.output


def test_baseline_fails_only_on_regressions(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, VIOLATED_CHECK)
    baseline = tmp_path / "baseline.json"
    assert gate(repo, "--write-baseline", str(baseline)).code == 1
    # The same known failure: reported, not blocking.
    known = gate(repo, "--baseline", str(baseline))
    assert known.code == 0, known.output
    assert "baseline: known failure: clear-on-top::" in known.output
    # A property that held now breaks: a regression, and it blocks.
    props = repo / "properties"
    (props / "advisory" / "scores_bounded.vnnlib").write_text(
        (props / "clear_always_top.vnnlib").read_text()
    )
    summary = tmp_path / "s.md"
    regressed = gate(repo, "--baseline", str(baseline), "--summary", str(summary))
    assert regressed.code == 1, regressed.output
    assert "baseline: regression: advisory-safety::properties/advisory/scores_bounded" in (
        regressed.output
    )
    assert "Regressions (held before, not now): `advisory-safety::" in summary.read_text()
    # The known failure fixed (the property now holds): reported as fixed.
    (props / "clear_always_top.vnnlib").write_text(
        (props / "advisory" / "clear_beats_left.vnnlib").read_text()
    )
    fixed = gate(repo, "--baseline", str(baseline))
    assert "baseline: fixed: clear-on-top::properties/clear_always_top.vnnlib" in fixed.output


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[[check]]\nname = "a"\nmodel = "models/advisory.onnx"\n', "key 'properties'"),
        (
            '[[check]]\nname = "a"\nmodel = "models/nope.onnx"\nproperties = ["x"]\n',
            "check 'a' (check[1]): key 'model'",
        ),
        (
            '[[check]]\nname = "a"\nmodel = "models/advisory.onnx"\n'
            'properties = ["properties/*.vnnlib"]\nexpect = "maybe"\n',
            "key 'expect'",
        ),
        (
            '[[check]]\nname = "a"\nmodel = "models/advisory.onnx"\n'
            'properties = ["properties/*.vnnlib"]\ntimeout = "fast"\n',
            "key 'timeout'",
        ),
        ('[[check]]\nmodel = "models/advisory.onnx"\n', "check[1]: key 'name'"),
        ("[[check]]\nname = \n", "invalid TOML"),
        ('[checks]\nname = "a"\n', "unknown key 'checks'"),
    ],
)
def test_malformed_configuration_exits_3_naming_the_key(
    tmp_path: Path, toml: str, named: str
) -> None:
    repo = make_repo(tmp_path)
    (repo / "proofwell.toml").write_text(toml)
    run = gate(repo)
    assert run.code == 3 and named in run.output, run.output


def test_an_invalid_property_is_an_error_exit_3(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, VIOLATED_CHECK)
    (repo / "properties" / "clear_always_top.vnnlib").write_text("(assert (<= X_0")
    junit = tmp_path / "j.xml"
    run = gate(repo, "--junit", str(junit))
    assert run.code == 3, run.output
    errored = [k for k, c in cases(junit).items() if c.find("error") is not None]
    assert sorted(errored) == [
        "advisory-known-gap::properties/clear_always_top.vnnlib",
        "clear-on-top::properties/clear_always_top.vnnlib",
    ]
