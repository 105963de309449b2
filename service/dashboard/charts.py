"""Charts as inline SVG, drawn on the server (no JavaScript, no chart library).

Every function returns ``Markup``; all text that reaches the SVG goes through ``escape``.
Colours come from CSS classes (``v-holds``, ``axis``...) so light and dark themes apply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape


def fmt(value: float | None, digits: int = 6) -> str:
    """A compact number: ``0.3``, ``-1.25e-05``; ``-`` when missing."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


def _svg(width: int, height: int, label: str, body: list[str], cls: str = "chart") -> Markup:
    head = (
        f'<svg class="{cls}" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg" '
        f'preserveAspectRatio="xMinYMin meet"><title>{escape(label)}</title>'
    )
    return Markup(head + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, cls: str = "lbl", anchor: str = "start") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" class="{cls}" text-anchor="{anchor}">{escape(text)}</text>'
    )


# -- counterexample: inputs inside their intervals ------------------------------------
@dataclass(frozen=True)
class IntervalRow:
    name: str
    value: float
    lower: float
    upper: float


def interval_chart(rows: Sequence[IntervalRow], label: str) -> Markup:
    """One row per input: the allowed interval as a bar, the value as a marker on it."""
    width, left, right, step = 760, 70, 300, 30
    span = width - left - right
    body: list[str] = []
    for i, row in enumerate(rows):
        y = 10 + i * step
        lo, hi = row.lower, row.upper
        frac = 0.5 if hi <= lo else (row.value - lo) / (hi - lo)
        inside = 0.0 <= frac <= 1.0
        x = left + span * min(max(frac, 0.0), 1.0)
        body.append(_text(left - 8, y + 15, row.name, "lbl mono", "end"))
        body.append(
            f'<rect class="interval" x="{left}" y="{y + 6}" width="{span}" height="12" rx="3">'
            f"<title>{escape(f'{row.name} allowed in [{fmt(lo)}, {fmt(hi)}]')}</title></rect>"
        )
        marker = "marker" if inside else "marker outside"
        body.append(
            f'<path class="{marker}" d="M{x:.1f} {y + 2} l6 0 l-6 10 l-6 -10 z M{x:.1f} {y + 4} '
            f'L{x:.1f} {y + 22}"><title>{escape(f"{row.name} = {fmt(row.value, 9)}")}</title>'
            "</path>"
        )
        body.append(_text(left + span + 10, y + 15, f"{fmt(row.value)}", "lbl mono strong"))
        body.append(
            _text(left + span + 95, y + 15, f"in [{fmt(lo, 4)}, {fmt(hi, 4)}]", "lbl mono dim")
        )
    return _svg(width, 14 + len(rows) * step, label, body)


# -- counterexample: outputs, engine and onnxruntime side by side ------------------------
@dataclass(frozen=True)
class OutputRow:
    name: str
    engine: float
    runtime: float | None
    thresholds: tuple[float, ...] = ()


def _scale(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    lo, hi = min([*finite, 0.0]), max([*finite, 0.0])
    if hi - lo < 1e-12:
        hi = lo + 1.0
    pad = 0.06 * (hi - lo)
    return lo - pad, hi + pad


def output_chart(rows: Sequence[OutputRow], label: str) -> Markup:
    """Horizontal bars from zero: engine (exact weights) and onnxruntime per output,
    with the property's thresholds on that output as dashed lines."""
    width, left, right, step = 720, 70, 190, 40
    values = [v for r in rows for v in (r.engine, r.runtime, *r.thresholds) if v is not None]
    lo, hi = _scale(values)
    span = width - left - right

    def at(v: float) -> float:
        return left + span * (v - lo) / (hi - lo)

    zero = at(0.0)
    height = 34 + len(rows) * step
    body = [
        f'<line class="axis" x1="{zero:.1f}" y1="4" x2="{zero:.1f}" y2="{height - 24}"/>',
        _text(left, height - 8, fmt(lo, 3), "lbl dim", "start"),
        _text(left + span, height - 8, fmt(hi, 3), "lbl dim", "end"),
    ]
    if min(zero - left, left + span - zero) > 50:
        body.append(_text(zero, height - 8, "0", "lbl dim", "middle"))
    for i, row in enumerate(rows):
        y = 8 + i * step
        body.append(_text(left - 8, y + 17, row.name, "lbl mono", "end"))
        for k, (cls, v, who) in enumerate(
            (("bar-engine", row.engine, "engine"), ("bar-ort", row.runtime, "onnxruntime"))
        ):
            if v is None:
                continue
            x0, x1 = sorted((zero, at(v)))
            body.append(
                f'<rect class="{cls}" x="{x0:.1f}" y="{y + 4 + 13 * k}" '
                f'width="{max(x1 - x0, 1.0):.1f}" height="11">'
                f"<title>{escape(f'{row.name} {who}: {fmt(v, 9)}')}</title></rect>"
            )
        for t in row.thresholds:
            body.append(
                f'<line class="threshold" x1="{at(t):.1f}" y1="{y}" x2="{at(t):.1f}" '
                f'y2="{y + 32}"><title>{escape(f"threshold {fmt(t, 9)}")}</title></line>'
            )
        body.append(_text(left + span + 10, y + 13, f"engine {fmt(row.engine)}", "lbl mono"))
        if row.runtime is not None:
            body.append(_text(left + span + 10, y + 27, f"ort {fmt(row.runtime)}", "lbl mono dim"))
    return _svg(width, height, label, body)


# -- overview: solve times ------------------------------------------------------------
@dataclass(frozen=True)
class TimePoint:
    job_id: int
    seconds: float
    verdict: str


def solve_time_chart(points: Sequence[TimePoint], label: str) -> Markup:
    """One bar per finished job (oldest left), log-scaled height, coloured by verdict."""
    width, height, left, bottom = 720, 200, 62, 24
    if not points:
        return _svg(width, 60, label, [_text(10, 34, "no finished jobs yet", "lbl dim")])
    floor = 1e-3
    top_exp = max(0, math.ceil(math.log10(max(max(p.seconds for p in points), floor))))
    bottom_exp = -3
    plot_h = height - bottom - 10

    def y_of(s: float) -> float:
        e = math.log10(max(s, floor))
        return 10 + plot_h * (1 - (e - bottom_exp) / (top_exp - bottom_exp))

    body = []
    for e in range(bottom_exp, top_exp + 1):
        y = y_of(10.0**e)
        body.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width}" y2="{y:.1f}"/>')
        body.append(_text(left - 6, y + 4, fmt(10.0**e) + " s", "lbl dim", "end"))
    slot = (width - left) / max(len(points), 1)
    bar_w = max(min(slot * 0.7, 24), 1.5)
    for i, p in enumerate(points):
        x, y = left + i * slot + (slot - bar_w) / 2, y_of(p.seconds)
        tip = escape(f"job {p.job_id}: {p.verdict}, {fmt(p.seconds, 4)} s")
        body.append(
            f'<a href="/jobs/{p.job_id}"><rect class="v-{escape(p.verdict)}" x="{x:.1f}" '
            f'y="{y:.1f}" width="{bar_w:.1f}" height="{height - bottom - y:.1f}">'
            f"<title>{tip}</title></rect></a>"
        )
    body.append(
        f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width}" '
        f'y2="{height - bottom}"/>'
    )
    body.append(_text(left, height - 6, "older", "lbl dim"))
    body.append(_text(width, height - 6, "newer", "lbl dim", "end"))
    return _svg(width, height, label, body)


# -- model: verdicts over time ----------------------------------------------------------
@dataclass(frozen=True)
class HistoryPoint:
    row: int
    job_id: int
    when: float  # a POSIX timestamp
    verdict: str
    note: str


def history_chart(rows: Sequence[str], points: Sequence[HistoryPoint], label: str) -> Markup:
    """One line per property, a dot per job at its submission time, coloured by verdict."""
    width, left, step = 720, 170, 26
    height = 30 + len(rows) * step
    if not points:
        return _svg(width, 60, label, [_text(10, 34, "no jobs yet", "lbl dim")])
    t0, t1 = min(p.when for p in points), max(p.when for p in points)
    span = max(t1 - t0, 1.0)

    def x_of(t: float) -> float:
        return left + 10 + (width - left - 30) * (t - t0) / span

    body = []
    for i, name in enumerate(rows):
        y = 16 + i * step
        short = name if len(name) <= 24 else name[:23] + "…"
        body.append(_text(left - 8, y + 4, short, "lbl", "end"))
        body.append(f'<line class="grid" x1="{left}" y1="{y}" x2="{width - 10}" y2="{y}"/>')
    for p in points:
        y = 16 + p.row * step
        body.append(
            f'<a href="/jobs/{p.job_id}"><circle class="v-{escape(p.verdict)}" '
            f'cx="{x_of(p.when):.1f}" cy="{y}" r="6"><title>{escape(p.note)}</title></circle></a>'
        )
    body.append(_text(left, height - 4, "earlier", "lbl dim"))
    body.append(_text(width - 10, height - 4, "later", "lbl dim", "end"))
    return _svg(width, height, label, body)
