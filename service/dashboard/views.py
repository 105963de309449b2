"""View models: what the templates show, computed from store records.

Nothing here touches the database; routes fetch with the stores and pass records in.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from service.dashboard import charts
from service.regressions import regressed, representative, resource_limited
from service.store.artefacts import ArtefactInfo
from service.store.cache import digest
from service.store.jobs import Job
from service.store.parsed import parsed_key
from verifiers.spec.property import Case, HalfSpace, Property

MAX_ROWS = 64  # inputs or outputs drawn in a chart or table; the rest are counted
MAX_CASES = 12


def state_of(job: Job) -> str:
    """What the badge says: the verdict once done, the status before (or on failure)."""
    return job.verdict if job.verdict and job.status.value == "done" else job.status.value


def model_name(info: ArtefactInfo | None, artefact: str) -> str:
    if info is not None and info.filename:
        return info.filename
    return f"{artefact[:12]}…"


def property_label(prop: dict[str, Any]) -> str:
    """A short human label: a VNN-LIB file's first comment, a preset's kind or name."""
    short = digest(prop)[:8]
    if "vnnlib" in prop:
        for line in str(prop["vnnlib"]).splitlines():
            text = line.strip().lstrip(";").strip()
            if line.strip().startswith(";") and text and not text.startswith("delay_s="):
                return text if len(text) <= 60 else text[:59] + "…"
        return f"VNN-LIB {short}"
    if "preset" in prop and isinstance(prop["preset"], dict):
        preset = prop["preset"]
        return str(preset.get("name") or f"{preset.get('kind', 'preset')} {short}")
    if "spec" in prop and isinstance(prop["spec"], dict):
        spec = prop["spec"]
        return f"spec of {spec.get('function') or spec.get('step') or 'module'} {short}"
    if "system" in prop and isinstance(prop["system"], dict):
        system = prop["system"]
        return str(system.get("name") or f"{system.get('kind', 'system')} {short}")
    return f"property {short}"


@dataclass(frozen=True)
class JobRow:
    id: int
    state: str
    status: str
    model: str
    artefact: str
    prop: str
    seconds: float | None
    created: str
    cached: bool
    elapsed: float | None = None  # seconds a running job has run so far


def when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def job_rows(jobs: list[Job], infos: dict[str, ArtefactInfo]) -> list[JobRow]:
    return [
        JobRow(
            id=j.id,
            state=state_of(j),
            status=j.status.value,
            model=model_name(infos.get(j.artefact), j.artefact),
            artefact=j.artefact,
            prop=property_label(j.prop),
            seconds=j.seconds,
            created=when(j.created_at),
            cached=j.cached,
            elapsed=_elapsed(j),
        )
        for j in jobs
    ]


def _elapsed(job: Job) -> float | None:
    if job.status.value != "running" or job.started_at is None:
        return None
    from service.store.models import utcnow

    return max(0.0, (utcnow() - job.started_at).total_seconds())


# -- the property, readable ------------------------------------------------------------
def _num(value: Fraction) -> str:
    return charts.fmt(float(value))


def _term(coeff: Fraction, index: int, first: bool) -> str:
    sign = "−" if coeff < 0 else ("" if first else "+")
    mag = abs(coeff)
    body = f"Y_{index}" if mag == 1 else f"{_num(mag)}·Y_{index}"
    return f"{sign} {body}".strip() if not first or sign else body


def halfspace_text(h: HalfSpace) -> str:
    """``Y_0 ≤ Y_1``, ``Y_3 ≥ 2.5`` or ``Y_0 − 2·Y_1 < 0``."""
    nz = [(i, c) for i, c in enumerate(h.coeffs) if c != 0]
    rel = "<" if h.strict else "≤"
    if len(nz) == 1:
        i, c = nz[0]
        bound = h.rhs / c
        if c < 0:
            rel = ">" if h.strict else "≥"
        return f"Y_{i} {rel} {_num(bound)}"
    if len(nz) == 2 and h.rhs == 0 and {c for _, c in nz} == {Fraction(1), Fraction(-1)}:
        pos = next(i for i, c in nz if c > 0)
        neg = next(i for i, c in nz if c < 0)
        return f"Y_{pos} {rel} Y_{neg}"
    if not nz:
        return f"0 {rel} {_num(h.rhs)}"
    lhs = " ".join(_term(c, i, k == 0) for k, (i, c) in enumerate(nz))
    return f"{lhs} {rel} {_num(h.rhs)}"


@dataclass(frozen=True)
class BoxRow:
    name: str
    lower: str
    upper: str
    exact: str


@dataclass(frozen=True)
class CaseView:
    box: list[BoxRow]
    hidden_rows: int
    unsafe: list[list[str]]  # a disjunction of conjunctions of atoms


@dataclass(frozen=True)
class PropertyView:
    kind: str  # vnnlib | preset | spec | system
    label: str
    source: str
    cases: list[CaseView] = field(default_factory=list)
    hidden_cases: int = 0
    n_inputs: int = 0
    n_outputs: int = 0
    problem: str | None = None  # why the structure could not be shown


def case_view(case: Case) -> CaseView:
    rows = [
        BoxRow(f"X_{i}", _num(lo), _num(hi), f"[{lo}, {hi}]")
        for i, (lo, hi) in enumerate(zip(case.lower_exact, case.upper_exact, strict=True))
    ]
    unsafe = [[halfspace_text(h) for h in conj.halfspaces] for conj in case.unsafe]
    return CaseView(rows[:MAX_ROWS], max(0, len(rows) - MAX_ROWS), unsafe)


def parse_property(
    prop: dict[str, Any],
    sizes: tuple[int, int] | None,
    stored: Callable[[str], dict[str, Any] | None] | None = None,
) -> tuple[Property | None, str | None]:
    """The parsed property, or why it could not be parsed here. Read back as the API stored
    it at submission (``stored``, by key) when it can be, else parsed; either way once per
    property and sizes in a process (pages are viewed again and again)."""
    prop_hash = digest(prop)
    key = (prop_hash, sizes)
    found = _PARSED.get(key)
    if found is None:
        data = stored(parsed_key(prop_hash, sizes)) if stored is not None and sizes else None
        found = (_from_stored(prop, data), None) if data is not None else _parse(prop, sizes)
        if len(_PARSED) >= MAX_PARSED:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = found
    return found


MAX_PARSED = 128
_PARSED: dict[tuple[str, tuple[int, int] | None], tuple[Property | None, str | None]] = {}


def _from_stored(prop: dict[str, Any], data: dict[str, Any]) -> Property:
    source = prop["vnnlib"] if "vnnlib" in prop else json.dumps(prop.get("preset"), sort_keys=True)
    return Property.from_json(data, str(source))


def _parse(
    prop: dict[str, Any], sizes: tuple[int, int] | None
) -> tuple[Property | None, str | None]:
    from verifiers.errors import VerifierError
    from verifiers.spec import parse_preset, parse_vnnlib

    try:
        if "vnnlib" in prop:
            n_in, n_out = sizes or (None, None)
            return parse_vnnlib(prop["vnnlib"], n_inputs=n_in, n_outputs=n_out), None
        if "preset" in prop and sizes:
            return parse_preset(prop["preset"], n_inputs=sizes[0], n_outputs=sizes[1]), None
    except VerifierError as exc:
        return None, str(exc)
    return None, None


def property_view(
    prop: dict[str, Any], parsed: Property | None, problem: str | None
) -> PropertyView:
    label = property_label(prop)
    if "vnnlib" in prop:
        kind, source = "vnnlib", str(prop["vnnlib"])
    else:
        kind = next((k for k in ("preset", "system") if k in prop), "spec")
        source = json.dumps(prop.get(kind), indent=2, sort_keys=True)
    if parsed is None:
        return PropertyView(kind, label, source, problem=problem)
    cases = [case_view(c) for c in parsed.cases[:MAX_CASES]]
    return PropertyView(
        kind,
        label,
        source,
        cases,
        max(0, len(parsed.cases) - MAX_CASES),
        parsed.n_inputs,
        parsed.n_outputs,
    )


# -- models: failing first; properties across versions ---------------------------------
@dataclass(frozen=True)
class ModelSummary:
    artefact: str
    name: str
    kind: str
    properties: int
    counts: dict[str, int]

    @property
    def failing(self) -> int:
        return self.counts.get("violated", 0)


def model_summaries(latest: list[Job], infos: dict[str, ArtefactInfo]) -> list[ModelSummary]:
    """One line per model from the newest job of each property; failing models first."""
    counts: dict[str, dict[str, int]] = {}
    for job in latest:
        per = counts.setdefault(job.artefact, {})
        state = state_of(job)
        per[state] = per.get(state, 0) + 1
    out = [
        ModelSummary(
            a,
            model_name(infos.get(a), a),
            infos[a].kind if a in infos else "?",
            sum(c.values()),
            c,
        )
        for a, c in counts.items()
    ]
    return sorted(out, key=lambda m: (-m.failing, -m.counts.get("error", 0), m.name))


@dataclass(frozen=True)
class Cell:
    job_id: int
    state: str
    regression: bool


@dataclass(frozen=True)
class PropertyHistory:
    label: str
    cells: list[Cell | None]  # one per version, oldest first
    regression: bool


def _regressed(before: list[Cell | None], job: Job) -> bool:
    """Held on an earlier version, fails on this one (resource-limited unknowns ignored)."""
    seen = [c.state for c in before if c is not None]
    return "holds" in seen and not resource_limited(job) and regressed("holds", state_of(job))


def property_histories(
    jobs: list[Job], versions: list[ArtefactInfo]
) -> tuple[list[PropertyHistory], list[charts.HistoryPoint]]:
    """The verdict of each property on each version (the newest decided run; see
    service/regressions.py), and every job as a point."""
    column = {v.id: k for k, v in enumerate(versions)}
    labels: dict[str, str] = {}
    runs: dict[tuple[str, int], list[Job]] = {}
    for job in jobs:  # oldest first
        key = digest(job.prop)
        labels.setdefault(key, property_label(job.prop))
        runs.setdefault((key, column[job.artefact]), []).append(job)
    latest = {k: representative(v) for k, v in runs.items()}
    histories = []
    for key, label in labels.items():
        cells: list[Cell | None] = []
        for k in range(len(versions)):
            job = latest.get((key, k))
            cell = None
            if job is not None:
                cell = Cell(job.id, state_of(job), _regressed(cells, job))
            cells.append(cell)
        histories.append(PropertyHistory(label, cells, any(c and c.regression for c in cells)))
    rows = {key: i for i, key in enumerate(labels)}
    points = [
        charts.HistoryPoint(
            rows[digest(j.prop)],
            j.id,
            j.created_at.timestamp(),
            state_of(j),
            f"job {j.id} on version {column[j.artefact] + 1}: {state_of(j)} ({when(j.created_at)})",
        )
        for j in jobs
    ]
    return histories, points


# The counterexample drawing lives in its own module; re-exported for callers of views.
from service.dashboard.counterexample import (  # noqa: E402
    Constraint,
    CounterexampleView,
    counterexample_view,
)

__all__ = ["Constraint", "CounterexampleView", "counterexample_view"]
