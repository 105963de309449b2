"""Per-step charts of a counterexample trace (BMC, closed loops): one small chart per signal.

Each chart draws the signal's value at every step as a line with dots, its bounds from the
invariants as dashed lines, and the step where the invariant failed in the violated colour.
"""

from __future__ import annotations

from markupsafe import Markup, escape

from service.dashboard.charts import _svg, _text, fmt
from service.traces import Signal

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 720, 160, 80, 20, 30, 26


def _range(signal: Signal) -> tuple[float, float]:
    values = [v for v in signal.values if v is not None]
    values += [b for b in (signal.lower, signal.upper) if b is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    pad = 0.08 * (hi - lo)
    return lo - pad, hi + pad


def step_chart(signal: Signal, failed_step: int | None) -> Markup:
    """The signal over the steps against its bounds; the failing step marked."""
    label = f"{signal.name} at each step"
    n = len(signal.values)
    lo, hi = _range(signal)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(k: int) -> float:
        return LEFT + (plot_w * k / (n - 1) if n > 1 else plot_w / 2)

    def y_of(v: float) -> float:
        return TOP + plot_h * (1 - (v - lo) / (hi - lo))

    body = [_text(10, 16, signal.name, "lbl mono strong")]
    for v in (lo, hi):
        body.append(_text(LEFT - 6, y_of(v) + 4, fmt(v, 4), "lbl dim", "end"))
    body.append(
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" '
        f'y2="{TOP + plot_h}"/>'
    )
    for name, bound in (("lower bound", signal.lower), ("upper bound", signal.upper)):
        if bound is not None:
            y = y_of(bound)
            body.append(
                f'<line class="threshold" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" '
                f'y2="{y:.1f}"><title>{escape(f"{name} {fmt(bound)}")}</title></line>'
            )
    points = [(k, v) for k, v in enumerate(signal.values) if v is not None]
    if len(points) > 1:
        path = " ".join(f"{x_of(k):.1f},{y_of(v):.1f}" for k, v in points)
        body.append(f'<polyline class="trace-line" points="{path}"/>')
    for k, v in points:
        cls = "marker outside" if k == failed_step else "marker"
        tip = escape(f"step {k}: {signal.name} = {fmt(v)}")
        body.append(
            f'<circle class="{cls}" cx="{x_of(k):.1f}" cy="{y_of(v):.1f}" r="4">'
            f"<title>{tip}</title></circle>"
        )
    for k in range(n):
        body.append(_text(x_of(k), HEIGHT - 8, str(k), "lbl dim", "middle"))
    return _svg(WIDTH, HEIGHT, label, body)
