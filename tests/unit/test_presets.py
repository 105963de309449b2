"""JSON presets and ``load_property``."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from verifiers.errors import SpecError
from verifiers.spec import HalfSpace, load_property, parse_preset, parse_vnnlib, to_vnnlib

F = Fraction


def robustness(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": "linf_robustness",
        "center": [0.5, 0.1, 0.0],
        "epsilon": 0.1,
        "label": 1,
    }
    data.update(overrides)
    return data


def output_range(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": "output_range",
        "box": {"lower": [0, -1], "upper": [1, "1/3"]},
        "output": 0,
        "lower": -2,
        "upper": 2.5,
    }
    data.update(overrides)
    return data


def field_error(data: Any, n_inputs: int = 3, n_outputs: int = 3) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_preset(data, n_inputs=n_inputs, n_outputs=n_outputs)
    return info.value


def test_linf_robustness_box_and_unsafe_set() -> None:
    prop = parse_preset(robustness(), n_inputs=3, n_outputs=3)
    (case,) = prop.cases
    assert case.lower_exact == (F("0.4"), F(0), F("-0.1"))
    assert case.upper_exact == (F("0.6"), F("0.2"), F("0.1"))
    # unsafe iff another output reaches the label's: y_1 - y_j <= 0 for j in {0, 2}
    assert [c.halfspaces for c in case.unsafe] == [
        (HalfSpace((F(-1), F(1), F(0)), F(0)),),
        (HalfSpace((F(0), F(1), F(-1)), F(0)),),
    ]


def test_linf_robustness_semantics_on_points() -> None:
    prop = parse_preset(robustness(), n_inputs=3, n_outputs=3)
    x = np.array([0.5, 0.1, 0.0])
    assert not prop.is_violated_by(x, np.array([0.0, 1.0, 0.5]))
    assert prop.is_violated_by(x, np.array([0.0, 1.0, 1.0]))  # a tie is unsafe
    assert not prop.is_violated_by(np.array([0.7, 0.1, 0.0]), np.array([2.0, 1.0, 0.0]))


def test_linf_robustness_clip() -> None:
    prop = parse_preset(robustness(clip=[0, 0.55]), n_inputs=3, n_outputs=3)
    assert prop.cases[0].lower_exact == (F("0.4"), F(0), F(0))
    assert prop.cases[0].upper_exact == (F("0.55"), F("0.2"), F("0.1"))


def test_output_range() -> None:
    prop = parse_preset(output_range(), n_inputs=2, n_outputs=2)
    (case,) = prop.cases
    assert case.upper_exact == (F(1), F(1, 3))
    assert [c.halfspaces for c in case.unsafe] == [
        (HalfSpace((F(1), F(0)), F(-2), strict=True),),
        (HalfSpace((F(-1), F(0)), F(-5, 2), strict=True),),
    ]
    x = np.array([0.5, 0.0])
    assert not prop.is_violated_by(x, np.array([2.5, 9.0]))
    assert prop.is_violated_by(x, np.array([2.75, 0.0]))


def test_output_range_with_one_bound() -> None:
    data = output_range()
    del data["lower"]
    prop = parse_preset(data, n_inputs=2, n_outputs=2)
    assert len(prop.cases[0].unsafe) == 1


def test_presets_round_trip_through_vnnlib() -> None:
    for prop in (
        parse_preset(robustness(), n_inputs=3, n_outputs=3),
        parse_preset(output_range(), n_inputs=2, n_outputs=2),
    ):
        assert parse_vnnlib(to_vnnlib(prop)).cases == prop.cases


INVALID = [
    ("monotonicity", {"kind": "monotonicity", "input": 0}, "kind", "two-copy"),
    ("unknown kind", {"kind": "sorting"}, "kind", "unknown preset kind"),
    ("no kind", {"center": []}, "kind", "unknown preset kind"),
    ("not an object", [1, 2], None, "JSON object"),
    ("missing center", {"kind": "linf_robustness", "epsilon": 1, "label": 0}, "center", "missing"),
    ("typo", robustness(epsilom=1), "epsilom", "unknown field"),
    ("center length", robustness(center=[1, 2]), "center", "expected 3 numbers"),
    ("center entry", robustness(center=[1, 2, "x"]), "center[2]", "expected a number"),
    ("center bool", robustness(center=[1, True, 0]), "center[1]", "expected a number"),
    ("center nan", robustness(center=[1, 0, float("nan")]), "center[2]", "finite"),
    ("center not list", robustness(center=3), "center", "list"),
    ("negative eps", robustness(epsilon=-0.1), "epsilon", ">= 0"),
    ("label float", robustness(label=1.0), "label", "integer"),
    ("label range", robustness(label=3), "label", "out of range"),
    ("clip shape", robustness(clip=[0]), "clip", "[lower, upper]"),
    ("clip order", robustness(clip=[1, 0]), "clip", "above"),
    ("clip empty", robustness(clip=[0.7, 1]), "center[0]", "outside clip"),
    ("huge exponent", robustness(epsilon="1e99999"), "epsilon", "out of range"),
    ("divide by zero", robustness(epsilon="1/0"), "epsilon", "division by zero"),
    ("box type", output_range(box=[0, 1]), "box", "lower"),
    ("box missing", output_range(box={"lower": [0, 0]}), "box.upper", "missing"),
    ("box extra", output_range(box={"lower": [0, 0], "upper": [1, 1], "x": 1}), "box.x", "unknown"),
    ("box order", output_range(box={"lower": [0, 2], "upper": [1, 1]}), "box.upper[1]", "above"),
    (
        "box entry",
        output_range(box={"lower": [0, None], "upper": [1, 1]}),
        "box.lower[1]",
        "number",
    ),
    ("output range", output_range(output=2), "output", "out of range"),
    ("bounds order", output_range(lower=3, upper=2), "upper", ">= lower"),
    (
        "no bounds",
        {"kind": "output_range", "box": {"lower": [0, 0], "upper": [1, 1]}, "output": 0},
        "lower",
        "needs",
    ),
]


@pytest.mark.parametrize(
    ("data", "field", "fragment"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_presets_name_the_field(data: Any, field: str | None, fragment: str) -> None:
    n_inputs = 2 if isinstance(data, dict) and data.get("kind") == "output_range" else 3
    error = field_error(data, n_inputs=n_inputs, n_outputs=2 if n_inputs == 2 else 3)
    assert error.field == field
    assert fragment in error.message


def test_robustness_needs_two_outputs() -> None:
    error = field_error(robustness(label=0), n_outputs=1)
    assert error.field == "label"


@given(
    st.lists(st.floats(-100, 100), min_size=1, max_size=5),
    st.floats(0, 10),
    st.data(),
)
def test_random_robustness_boxes_contain_the_center(
    center: list[float], epsilon: float, data: st.DataObject
) -> None:
    n_out = data.draw(st.integers(2, 5))
    label = data.draw(st.integers(0, n_out - 1))
    prop = parse_preset(
        {"kind": "linf_robustness", "center": center, "epsilon": epsilon, "label": label},
        n_inputs=len(center),
        n_outputs=n_out,
    )
    (case,) = prop.cases
    # JSON numbers are decimal text: the float 0.1 stands for 1/10 exactly.
    decimal = [F(repr(c)) for c in center]
    assert all(
        lo <= c <= hi for lo, c, hi in zip(case.lower_exact, decimal, case.upper_exact, strict=True)
    )
    assert len(case.unsafe) == n_out - 1
    assert np.all(case.lower <= np.array(center)) and np.all(np.array(center) <= case.upper)


# --- load_property -----------------------------------------------------------------------------


def test_load_vnnlib_and_json(tmp_path: Path) -> None:
    vnnlib = tmp_path / "p.vnnlib"
    vnnlib.write_text("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (<= -1 X_0 1))")
    assert load_property(vnnlib).n_inputs == 1
    preset = tmp_path / "p.json"
    preset.write_text(json.dumps(robustness()))
    assert load_property(str(preset), n_inputs=3, n_outputs=3).cases[0].upper_exact[0] == F("0.6")


def test_load_errors(tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{\n  "kind": }')
    with pytest.raises(SpecError) as info:
        load_property(bad_json, n_inputs=3, n_outputs=3)
    assert (info.value.line, info.value.column) == (2, 11)

    preset = tmp_path / "p.json"
    preset.write_text(json.dumps(robustness(label=7)))
    with pytest.raises(SpecError, match="model's number of inputs"):
        load_property(preset)
    with pytest.raises(SpecError) as info:
        load_property(preset, n_inputs=3, n_outputs=3)
    assert (info.value.source, info.value.field) == (str(preset), "label")

    with pytest.raises(SpecError, match="unknown property format"):
        load_property(tmp_path / "p.txt")
    with pytest.raises(SpecError, match="cannot read"):
        load_property(tmp_path / "missing.vnnlib")

    bad_vnnlib = tmp_path / "bad.vnnlib"
    bad_vnnlib.write_text("(declare-const X_0 Real")
    with pytest.raises(SpecError) as info:
        load_property(bad_vnnlib)
    assert (info.value.source, info.value.line, info.value.column) == (str(bad_vnnlib), 1, 1)
