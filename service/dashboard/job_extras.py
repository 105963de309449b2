"""The job page's extras: downloads, the reproduce command, elapsed time and traces.

Pure view code over a stored job (the route fetches; nothing here touches the database).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from markupsafe import Markup

from service import traces
from service.dashboard.charts import IntervalRow, interval_chart
from service.dashboard.trace_charts import step_chart
from service.job_files import property_file, reproduce_command
from service.names import tensor_elements
from service.store.artefacts import ArtefactInfo
from service.store.jobs import Job
from service.store.models import utcnow


@dataclass(frozen=True)
class Download:
    label: str
    href: str
    filename: str


@dataclass(frozen=True)
class StepRow:
    step: int
    cells: tuple[str, ...]
    fails: bool


@dataclass(frozen=True)
class TraceView:
    kind: str  # "steps" | "equivalence"
    summary: str
    columns: tuple[str, ...] = ()
    rows: tuple[StepRow, ...] = ()
    charts: tuple[Markup, ...] = ()
    lines: tuple[str, ...] = field(default=())


def downloads(job: Job, info: ArtefactInfo | None, has_certificate: bool) -> list[Download]:
    """What the page offers: model, property, result file, counterexample, certificate."""
    found: list[Download] = []
    if info is not None:
        name = info.filename or f"{info.id[:12]}.{'onnx' if info.kind == 'onnx' else 'py'}"
        found.append(Download("Model", f"/v1/artefacts/{info.id}/file", name))
    prop = property_file(job)
    if prop is not None:
        found.append(Download("Property", f"/v1/jobs/{job.id}/property", prop[0]))
    if job.status.value in ("done", "failed"):
        found.append(
            Download(
                "VNN-COMP result file",
                f"/v1/jobs/{job.id}/vnncomp-result",
                f"job-{job.id}-result.txt",
            )
        )
    if job.verdict == "violated" and job.counterexample:
        found.append(
            Download(
                "Counterexample (JSON)",
                f"/v1/jobs/{job.id}/counterexample",
                f"job-{job.id}-counterexample.json",
            )
        )
    if has_certificate:
        found.append(
            Download(
                "Certificate", f"/v1/jobs/{job.id}/certificate", f"job-{job.id}-certificate.json"
            )
        )
    return found


def _tensors(job: Job, info: ArtefactInfo | None) -> tuple[list[str], list[str]]:
    """The ONNX input and output tensor names of a job's component (its subnetwork's)."""
    sub = job.subnetwork or {}
    meta = info.meta if info is not None and info.kind == "onnx" else {}
    inputs = sub.get("inputs") or ([meta["input_name"]] if meta.get("input_name") else [])
    outputs = sub.get("outputs") or ([meta["output_name"]] if meta.get("output_name") else [])
    return inputs, outputs


def tensor_labels(job: Job, info: ArtefactInfo | None) -> dict[str, str]:
    """X_i / Y_j named after the ONNX tensor elements they are (``input[3]``), where the
    component has one input and one output tensor; a property's label map overrides these."""
    inputs, outputs = _tensors(job, info)
    cex = job.counterexample or {}
    if len(inputs) != 1 or len(outputs) != 1 or not cex.get("inputs") or not cex.get("outputs"):
        return {}
    labels = dict(
        zip(
            (f"X_{i}" for i in range(len(cex["inputs"]))),
            tensor_elements(inputs[0], len(cex["inputs"])),
            strict=True,
        )
    )
    outs = tensor_elements(outputs[0], len(cex["outputs"]))
    labels.update((f"Y_{j}", name) for j, name in enumerate(outs))
    return labels


def tensor_note(job: Job, info: ArtefactInfo | None) -> str | None:
    """Which ONNX tensors the X_i and Y_j of a counterexample are the elements of."""
    inputs, outputs = _tensors(job, info)
    if not inputs or not outputs:
        return None
    return (
        f"X_0, X_1, … are the elements of the ONNX input tensor {', '.join(inputs)} "
        f"(flattened in order); Y_0, Y_1, … those of {', '.join(outputs)}."
    )


def command(job: Job, info: ArtefactInfo | None) -> str:
    return reproduce_command(job, info.filename if info is not None else None)


def elapsed_s(job: Job, now: datetime | None = None) -> float | None:
    """Seconds a running job has run so far (None unless running)."""
    if job.status.value != "running" or job.started_at is None:
        return None
    return max(0.0, ((now or utcnow()) - job.started_at).total_seconds())


def trace_view(job: Job) -> TraceView | None:
    """The counterexample trace of a module or system job, for people."""
    cex = job.counterexample or {}
    trace = cex.get("trace")
    kind = traces.kind_of(trace)
    context = _context(job.prop)
    if kind == "steps":
        return _steps(trace, context)
    if kind == "equivalence":
        names = list(context.get("box") or {})
        view = traces.equivalence_trace(trace[0], traces.number(context.get("epsilon")), names)
        lines = traces.equivalence_lines(view)
        box = context.get("box") or {}
        rows = [
            IntervalRow(n, x, *(float(b) for b in box[n]))
            for n, x in zip(view.names, view.inputs, strict=True)
            if isinstance(box.get(n), list) and len(box[n]) == 2
        ]
        drawn = (interval_chart(rows, "Inputs within the input box"),) if rows else ()
        return TraceView("equivalence", lines[0], charts=drawn, lines=tuple(lines[1:]))
    return None  # a contract's counterexample is drawn by the module view (counterexample.py)


def _context(prop: dict[str, Any]) -> dict[str, Any]:
    for key in ("system", "spec"):
        if isinstance(prop.get(key), dict):
            return prop[key]
    return {}


def _steps(trace: list[dict[str, Any]], context: dict[str, Any]) -> TraceView:
    view = traces.step_trace(trace, [str(x) for x in context.get("invariant") or []])
    columns = (*view.signals, *view.inputs)
    rows = tuple(
        StepRow(
            k,
            tuple(traces.fmt(s.values[k] if k < len(s.values) else None) for s in columns),
            k == view.failed_step,
        )
        for k in range(view.steps + 1)
    )
    if view.failed_step is not None:
        which = ", ".join(f"“{f}”" for f in view.failed)
        summary = f"Invariant {which} failed at step {view.failed_step}."
    else:
        summary = "The trace that breaks the property."
    return TraceView(
        "steps",
        summary,
        tuple(s.name for s in columns),
        rows,
        tuple(step_chart(s, view.failed_step) for s in columns),
    )
