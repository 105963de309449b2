"""Reports of a gate run: JUnit XML, SARIF 2.1.0 and a Markdown summary."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import verifiers
from service.gate.config import GateConfig
from service.gate.summary import GateSummary
from service.gate.tasks import Outcome, Status

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
RULES = {
    Status.FAILED: ("PW001", "expectation-not-met", "A verdict differs from the expected one."),
    Status.UNKNOWN: ("PW002", "verdict-unknown", "No verdict within the time or memory limit."),
    Status.ERROR: ("PW003", "check-error", "The check could not run: invalid input."),
}


def describe(outcome: Outcome) -> str:
    """One line: the verdict against the expectation, and why."""
    result, check = outcome.result, outcome.task.check
    text = f"{result.verdict.value} (expected {check.expect.value})"
    if result.reason:
        text += f": {result.reason}"
    return text


def counterexample_text(outcome: Outcome) -> str | None:
    cex = outcome.result.counterexample
    if cex is None:
        return None
    outputs = cex.onnxruntime_outputs if cex.onnxruntime_outputs is not None else cex.outputs
    # Inputs in full precision, so the counterexample can be replayed exactly.
    inputs = "[" + ", ".join(repr(v) for v in cex.inputs) + "]"
    return (
        f"inputs {inputs} give outputs {_short(outputs)} (margin {cex.margin:.6g}: how far the "
        "output lies past the property's bound)"
    )


def _short(values: list[float] | None) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values or []) + "]"


# --- JUnit XML -------------------------------------------------------------------------------


def junit_xml(summary: GateSummary) -> str:
    suites = ET.Element("testsuites", name="proofwell gate")
    by_check: dict[str, list[Outcome]] = {}
    for outcome in summary.outcomes:
        by_check.setdefault(outcome.task.check.name, []).append(outcome)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for name, outcomes in by_check.items():
        suite = ET.SubElement(suites, "testsuite", name=name)
        counts = {"tests": len(outcomes), "failures": 0, "errors": 0, "skipped": 0}
        for outcome in outcomes:
            kind = _junit_case(suite, outcome, summary)
            if kind:
                counts[kind] += 1
        seconds = sum(o.seconds for o in outcomes)
        total_time += seconds
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("time", f"{seconds:.3f}")
    for key, value in totals.items():
        suites.set(key, str(value))
    suites.set("time", f"{total_time:.3f}")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


def _junit_case(suite: ET.Element, outcome: Outcome, summary: GateSummary) -> str | None:
    case = ET.SubElement(
        suite,
        "testcase",
        name=outcome.task.label,
        classname=outcome.task.check.name,
        time=f"{outcome.seconds:.3f}",
    )
    status, message = outcome.status, describe(outcome)
    link = f"dashboard: {outcome.url}" if outcome.url else None
    body = "\n".join(filter(None, [message, counterexample_text(outcome), link]))
    if outcome.url:
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", name="url", value=outcome.url)
    if status is Status.ERROR:
        ET.SubElement(case, "error", message=message, type="error").text = body
        return "errors"
    if status in summary.failing:
        ET.SubElement(
            case, "failure", message=message, type=outcome.result.verdict.value
        ).text = body
        return "failures"
    if status is Status.UNKNOWN:  # --unknown=warn
        ET.SubElement(case, "skipped", message=message)
        return "skipped"
    out = message + (" (cached)" if outcome.cached else "")
    ET.SubElement(case, "system-out").text = out + (f"\n{link}" if link else "")
    return None


# --- SARIF 2.1.0 -----------------------------------------------------------------------------


def sarif(summary: GateSummary, config: GateConfig) -> dict[str, Any]:
    results = [
        _sarif_result(o, summary, config) for o in summary.outcomes if o.status is not Status.PASSED
    ]
    rules = [
        {
            "id": rule_id,
            "name": name,
            "shortDescription": {"text": text},
        }
        for rule_id, name, text in RULES.values()
    ]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "proofwell",
                        "version": verifiers.__version__,
                        "rules": rules,
                    }
                },
                "originalUriBaseIds": {"SRCROOT": {"uri": config.root.resolve().as_uri() + "/"}},
                "invocations": [{"executionSuccessful": summary.exit_code != 3}],
                "results": results,
            }
        ],
    }


def _sarif_result(outcome: Outcome, summary: GateSummary, config: GateConfig) -> dict[str, Any]:
    rule_id = RULES[outcome.status][0]
    rule_index = list(RULES).index(outcome.status)
    text = f"proofwell check '{outcome.task.check.name}' on {outcome.task.label}: "
    text += describe(outcome)
    if cex := counterexample_text(outcome):
        text += f". Counterexample: {cex}"
    if outcome.url:
        text += f". Details: {outcome.url}"
    blocking = summary.blocks(outcome)
    found: dict[str, Any] = {"hostedViewerUri": outcome.url} if outcome.url else {}
    return found | {
        "ruleId": rule_id,
        "ruleIndex": rule_index,
        "level": "error" if blocking else "warning",
        "message": {"text": text},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {
                        "uri": config.relative(outcome.task.location),
                        "uriBaseId": "SRCROOT",
                    },
                    "region": {"startLine": 1},
                }
            }
        ],
        "partialFingerprints": {"proofwellTask/v1": outcome.task.id},
        "properties": {
            "check": outcome.task.check.name,
            "verdict": outcome.result.verdict.value,
            "expected": outcome.task.check.expect.value,
            "seconds": round(outcome.seconds, 3),
            "cached": outcome.cached,
            "url": outcome.url,
            "counterexample": (
                outcome.result.counterexample.to_json() if outcome.result.counterexample else None
            ),
        },
    }


def sarif_text(summary: GateSummary, config: GateConfig) -> str:
    return json.dumps(sarif(summary, config), indent=2) + "\n"


# --- Markdown --------------------------------------------------------------------------------

ICONS = {Status.PASSED: "✅", Status.FAILED: "❌", Status.UNKNOWN: "⚠️", Status.ERROR: "💥"}


def markdown(summary: GateSummary) -> str:
    lines = [f"## {'✅' if summary.passed else '❌'} {summary.headline()}", ""]
    lines += ["| | check | property | expected | verdict | time | cached |"]
    lines += ["|---|---|---|---|---|---|---|"]
    for o in summary.outcomes:
        verdict = o.result.verdict.value
        if o.url:
            verdict = f"[{verdict}]({o.url})"
        lines.append(
            f"| {ICONS[o.status]} | {_md(o.task.check.name)} | `{_md(o.task.label)}` "
            f"| {o.task.check.expect.value} | {verdict} | {o.seconds:.2f} s "
            f"| {'yes' if o.cached else 'no'} |"
        )
    lines += _baseline_lines(summary)
    details = [o for o in summary.outcomes if o.status is not Status.PASSED]
    if details:
        lines += ["", "### Failures and warnings", ""]
    for o in details:
        link = f" ([job]({o.url}))" if o.url else ""
        lines.append(f"- **{_md(o.task.id)}**: {_md(describe(o))}{link}")
        if cex := counterexample_text(o):
            lines.append(f"  - counterexample: {cex}")
    return "\n".join(lines) + "\n"


def _baseline_lines(summary: GateSummary) -> list[str]:
    comparison = summary.comparison
    if comparison is None:
        return []
    lines = ["", "### Compared with the baseline", ""]
    groups = (
        ("Regressions (held before, not now)", comparison.regressions),
        ("New failures (not failing in the baseline)", comparison.new_failures),
        ("Known failures (failing in the baseline too)", comparison.known_failures),
        ("Fixed", comparison.fixed),
    )
    for title, ids in groups:
        lines.append(f"- {title}: " + (", ".join(f"`{_md(i)}`" for i in ids) or "none"))
    return lines


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_reports(
    summary: GateSummary,
    config: GateConfig,
    *,
    junit: Path | None = None,
    sarif_path: Path | None = None,
    summary_path: Path | None = None,
) -> None:
    if junit is not None:
        junit.write_text(junit_xml(summary), encoding="utf-8")
    if sarif_path is not None:
        sarif_path.write_text(sarif_text(summary, config), encoding="utf-8")
    if summary_path is not None:
        # Append: GitHub's $GITHUB_STEP_SUMMARY collects the output of several steps.
        with summary_path.open("a", encoding="utf-8") as fh:
            fh.write(markdown(summary))
