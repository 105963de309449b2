"""Dashboard view models and SVG charts, without a server."""

from __future__ import annotations

from fractions import Fraction as F

from service.dashboard import charts, views
from verifiers.spec import parse_vnnlib
from verifiers.spec.property import HalfSpace

EVIL = "<script>alert(1)</script>"


def test_halfspaces_read_as_formulas() -> None:
    assert views.halfspace_text(HalfSpace((F(1), F(-1)), F(0))) == "Y_0 ≤ Y_1"
    assert views.halfspace_text(HalfSpace((F(0), F(-2)), F(-5))) == "Y_1 ≥ 2.5"
    assert views.halfspace_text(HalfSpace((F(0), F(3)), F(1), strict=True)) == "Y_1 < 0.333333"
    text = views.halfspace_text(HalfSpace((F(1), F(-2), F(1, 2)), F(1)))
    assert text == "Y_0 − 2·Y_1 + 0.5·Y_2 ≤ 1"


def test_property_labels() -> None:
    assert views.property_label({"vnnlib": "; delay_s=3\n; robust at x0\n(assert)"}) == (
        "robust at x0"
    )
    assert views.property_label({"vnnlib": "(declare-const X_0 Real)"}).startswith("VNN-LIB ")
    assert views.property_label({"preset": {"kind": "output_range"}}).startswith("output_range")
    assert views.property_label({"spec": {"function": "brake"}}).startswith("spec of brake")


def test_counterexample_view_finds_the_box_and_the_met_condition() -> None:
    prop = parse_vnnlib(
        "(declare-const X_0 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)"
        "(assert (>= X_0 -1))(assert (<= X_0 1))(assert (>= Y_0 2))(assert (<= Y_0 Y_1))"
    )
    cex = {"inputs": [0.5], "outputs": [2.5, 3.0], "onnxruntime_outputs": [2.5, 3.0], "margin": 0.5}
    view = views.counterexample_view(cex, prop)
    assert [c.text for c in view.constraints] == ["Y_0 ≥ 2", "Y_0 ≤ Y_1"]
    assert all(c.met for c in view.constraints)
    assert "in [-1, 1]" in view.inputs_svg and "threshold 2" in view.outputs_svg


def test_chart_text_is_escaped() -> None:
    svg = charts.interval_chart([charts.IntervalRow(EVIL, 0.0, -1.0, 1.0)], EVIL)
    hist = charts.history_chart([EVIL], [charts.HistoryPoint(0, 1, 0.0, "holds", EVIL)], EVIL)
    times = charts.solve_time_chart([charts.TimePoint(1, 0.5, EVIL)], EVIL)
    for out in (svg, hist, times):
        assert EVIL not in out and "&lt;script&gt;" in out
    assert "no finished jobs yet" in charts.solve_time_chart([], "empty")
