"""`proofwell verify`'s human output: the verdict line, named values, the margin, traces."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from service import traces
from service.names import Names, labels_of, names_for, onnx_element_names
from verifiers.result import Result, Verdict, percent

COLOUR = {"holds": "green", "violated": "red", "unknown": "yellow", "error": "red"}
MARGIN_ONNX = (
    "how far onnxruntime's output lies inside the unsafe set: rounding smaller than this "
    "cannot undo the violation"
)
MARGIN_SYMBOLIC = "how far the value is past the condition that failed"


def context_of(model: Path, spec: Path | None) -> dict[str, Any]:
    """The system or module SPEC.json behind a symbolic run (invariants, names, epsilon)."""
    source = model if spec is None else spec
    if source.suffix.lower() != ".json":
        return {}
    try:
        data = json.loads(source.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def onnx_names(
    model: Path,
    spec: Path | None,
    n_in: int,
    n_out: int,
    inputs: tuple[str, ...] | None,
    outputs: tuple[str, ...] | None,
) -> Names:
    """Labels from the property file, else the ONNX tensors' names (X_i/Y_j always shown)."""
    labels: dict[str, str] = {}
    if spec is not None:
        try:
            text = spec.read_text()
            labels = labels_of(json.loads(text) if spec.suffix.lower() == ".json" else text)
        except (OSError, ValueError):
            labels = {}
    graph_in: list[str] | None = None
    graph_out: list[str] | None = None
    try:
        from verifiers.model import load_model

        graph_in, graph_out = onnx_element_names(load_model(model, inputs=inputs, outputs=outputs))
    except Exception:  # names are a courtesy: a model that does not load keeps X_i/Y_j
        pass
    return names_for(n_in, n_out, labels, graph_in, graph_out)


def print_result(result: Result, names: Names | None, context: dict[str, Any]) -> None:
    from rich.console import Console

    out = Console(highlight=False)
    if result.verdict is Verdict.ERROR:
        # One plain line: rich would wrap it at the terminal width.
        print(f"error: {result.reason}", file=sys.stderr)
        return
    out.print(f"[bold {COLOUR[result.verdict.value]}]{result.verdict.value}[/]", end="")
    stats = result.stats
    out.print(
        f"  ({stats.seconds:.2f} s, {stats.method}, {stats.subproblems} regions, "
        f"{percent(stats.proved_fraction)} proved)",
        markup=False,
    )
    if result.reason:
        out.print(f"reason: {result.reason}", markup=False)
    if result.counterexample is None:
        return
    cex = result.counterexample
    for line in _counterexample_lines(cex, names, context):
        out.print(line, markup=False, soft_wrap=True)


def _counterexample_lines(cex: Any, names: Names | None, context: dict[str, Any]) -> list[str]:
    trace_lines = traces.text_lines(cex.trace, context)
    lines: list[str] = []
    if names is not None:
        lines.append("counterexample inputs:")
        lines += [f"  {names.input(i)} = {v!r}" for i, v in enumerate(cex.inputs)]
        ort = cex.onnxruntime_outputs or []
        lines.append("outputs (engine, exact weights | onnxruntime, float32):")
        lines += [
            f"  {names.output(j)} = {v!r} | {ort[j]!r}"
            if j < len(ort)
            else f"  {names.output(j)} = {v!r}"
            for j, v in enumerate(cex.outputs)
        ]
        lines.append(f"margin: {cex.margin:.6g} ({MARGIN_ONNX})")
    elif not trace_lines:
        lines.append(f"counterexample inputs: {cex.inputs}")
        if cex.onnxruntime_outputs is not None:
            lines.append(f"onnxruntime outputs:   {cex.onnxruntime_outputs}")
    if names is None:
        lines.append(f"margin: {cex.margin:.6g} ({MARGIN_SYMBOLIC})")
    return lines + trace_lines
