"""Issue 12's confirmed defects, one regression test each: non-finite values, strict input
bounds, invalid options, nondeterministic nodes, and crashes that exited 1 (violated).

The generated classes behind them are in test_edge_soundness.py (Hypothesis)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from onnx import helper
from typer.testing import CliRunner

from service.cli import app
from tests.onnx_builders import dense_relu_model, make_model, single_op_model, to_bytes
from verifiers.bounds.combine import combination_lower_bound
from verifiers.bounds.rounding import proves, widen_down, widen_up
from verifiers.certify.replay import float32_inside
from verifiers.components import OnnxComponent
from verifiers.errors import OptionsError, UnsupportedError
from verifiers.model import load_model
from verifiers.options import Options
from verifiers.result import Verdict
from verifiers.search.falsification import Falsifier
from verifiers.spec.property import HalfSpace, round_down, round_up
from verifiers.spec.vnnlib import parse_vnnlib, to_vnnlib
from verifiers.verify import verify

HEADER = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"


def _write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
    return path


def _ramp(tmp_path: Path) -> Path:
    """y = relu(x - 0.5)."""
    model = dense_relu_model([np.array([[1.0]]), np.array([[1.0]])], [[-0.5], [0.0]])
    return _write(tmp_path, "ramp.onnx", to_bytes(model))


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["verify", *args])
    return result.exit_code, result.stdout


# --- 1. non-finite values never prove anything ----------------------------------------------


def test_overflowed_bounds_are_no_bounds() -> None:
    values = np.array([np.inf, -np.inf, np.nan, 1.0])
    assert np.array_equal(widen_down(values, np.zeros(4))[:3], [-np.inf] * 3)
    assert np.array_equal(widen_up(values, np.zeros(4))[:3], [np.inf] * 3)
    assert not np.any(proves(np.array([np.nan, np.inf, -np.inf, 0.0])))
    assert proves(1e-300)


def test_combination_ignores_rows_whose_bound_overflowed() -> None:
    """0 * -inf was NaN, and NaN passed the old `<= 0.0` rejection as a proof."""
    coeffs = np.array([[1.0], [-1.0]])
    lower, upper = np.array([0.0]), np.array([1.0])
    value = combination_lower_bound(coeffs, np.array([-np.inf, -0.5]), lower, upper)
    assert not np.isnan(value) and not proves(value)
    value = combination_lower_bound(coeffs, np.array([np.nan, np.nan]), lower, upper)
    assert value == -np.inf


def test_overflowing_network_is_never_proved_without_falsification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bias near -float32 max and property coefficients near 2**900 overflow every bound,
    on an instance whose truth is `sat`. With counterexample search switched off only the
    proof side runs: it must not say holds. (This instance did not reach the NaN path on the
    old code, which crashed or said unknown here; the combination test above pins NaN.)"""
    weights = [np.array([[1.0, 1.0], [1.0, -1.0]]), np.array([[1.0, 1.0], [1.0, -1.0]])]
    biases = [np.array([-3e38, 3e38]), np.array([-3e38, 3e38])]
    path = _write(tmp_path, "huge.onnx", to_bytes(dense_relu_model(weights, biases)))
    c = 2**900
    text = (
        "(declare-const X_0 Real)\n(declare-const X_1 Real)\n"
        "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
        "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= X_1 1))\n"
        f"(assert (<= (* {c} Y_0) (* {c} Y_1)))\n(assert (<= (* {c} Y_1) (* {c} 1e38)))\n"
    )
    prop = parse_vnnlib(text)
    for name in ("try_points", "falsify", "polish", "polish_best", "deep"):
        monkeypatch.setattr(Falsifier, name, lambda *a, **k: False)
    result = verify(OnnxComponent(path), prop, Options(timeout_s=3))
    assert result.verdict is Verdict.UNKNOWN


def test_huge_and_tiny_property_numbers_do_not_overflow(tmp_path: Path) -> None:
    """(<= Y_0 -1e400) raised OverflowError; y = relu(...) >= 0 never reaches it."""
    ramp = _ramp(tmp_path)
    box = "(assert (>= X_0 0))\n(assert (<= X_0 1))\n"
    spec = _write(tmp_path, "p.vnnlib", HEADER + box + "(assert (<= Y_0 -1e400))\n")
    assert _cli(str(ramp), str(spec))[0] == 0
    spec = _write(tmp_path, "q.vnnlib", HEADER + box + "(assert (<= (* 1e400 Y_0) 1e-400))\n")
    code, out = _cli(str(ramp), str(spec), "--json")
    assert code == 1 and json.loads(out)["counterexample"]["inputs"][0] <= 0.5


def test_rounding_saturates_beyond_the_float_range() -> None:
    big = Fraction(10) ** 400
    assert round_up(big) == np.inf and round_down(big) == np.finfo(float).max
    assert round_down(-big) == -np.inf and round_up(-big) == -np.finfo(float).max
    h = HalfSpace((big, Fraction(1, 3)), -big)
    assert np.all(np.isfinite(h.coeffs_f64)) and np.isfinite(h.rhs_f64)


# --- 2. strict input bounds are kept ---------------------------------------------------------


def test_strict_input_bounds_survive_parsing_and_printing() -> None:
    text = HEADER + "(assert (> X_0 0))\n(assert (< X_0 1))\n(assert (<= Y_0 0))\n"
    case = parse_vnnlib(text).cases[0]
    assert case.strict_at(0) == (True, True)
    assert not case.contains_exactly([0.0]) and not case.contains_exactly([1.0])
    assert case.contains_exactly([0.5])
    assert parse_vnnlib(to_vnnlib(parse_vnnlib(text))).cases == (case,)


def test_replay_never_uses_a_point_on_a_strict_bound() -> None:
    case = parse_vnnlib(HEADER + "(assert (> X_0 0))\n(assert (< X_0 1))\n(assert (<= Y_0 0))\n")
    inside = float32_inside(np.array([0.0]), case.cases[0])
    assert inside is not None and 0.0 < inside[0] < 1.0
    tiny = parse_vnnlib(HEADER + "(assert (> X_0 0))\n(assert (< X_0 1e-50))\n(assert (<= Y_0 0))")
    assert float32_inside(np.array([0.0]), tiny.cases[0]) is None


def test_violated_needs_an_input_strictly_inside(tmp_path: Path) -> None:
    """y = relu(x - 0.5) <= 0 only at x <= 0.5: outside (0.5, 1), so no counterexample."""
    spec = _write(
        tmp_path,
        "p.vnnlib",
        HEADER + "(assert (> X_0 0.5))\n(assert (< X_0 1))\n(assert (<= Y_0 0))",
    )
    code, out = _cli(str(_ramp(tmp_path)), str(spec), "--json")
    assert code in (0, 2), out


def test_strict_bounds_in_a_symbolic_vnnlib_property() -> None:
    """z3 found x = 0 on the closed box and reported `violated` for x in (0, 1)."""
    from verifiers.symbolic.parser import parse_module
    from verifiers.symbolic.vnnlib_module import verify_vnnlib

    module = parse_module("def f(x: Real) -> Real:\n    return x\n", filename="m.py")
    text = HEADER + "(assert (> X_0 0))\n(assert (< X_0 1))\n(assert (<= Y_0 0))\n"
    result = verify_vnnlib(module, {"function": "f", "vnnlib": text}, Options(timeout_s=10))
    assert result.verdict is Verdict.HOLDS


# --- 3. invalid options ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"margin": -0.01},
        {"margin": float("nan")},
        {"margin": float("inf")},
        {"timeout_s": float("nan")},
        {"timeout_s": -1.0},
        {"workers": 0},
        {"seed": -1},
        {"seed": 2**63},
        {"seed": 1.5},
    ],
)
def test_invalid_options_are_rejected(changes: dict) -> None:
    with pytest.raises(OptionsError) as error:
        Options(**changes)
    assert error.value.field == next(iter(changes))


@pytest.mark.parametrize("flag", [["--margin", "-0.01"], ["--margin", "nan"], ["--seed", "-3"]])
def test_invalid_options_exit_3_on_the_command_line(tmp_path: Path, flag: list[str]) -> None:
    spec = _write(tmp_path, "p.vnnlib", HEADER + "(assert (>= X_0 0))(assert (<= X_0 1))")
    code, out = _cli(str(_ramp(tmp_path)), str(spec), "--json", *flag)
    assert code == 3
    assert json.loads(out)["reason"].startswith(flag[0])


# --- 4. nondeterministic nodes ---------------------------------------------------------------


@pytest.mark.parametrize(
    "node",
    [
        helper.make_node("RandomUniform", [], ["r"], name="draw", shape=[1, 2]),
        helper.make_node("RandomNormal", [], ["r"], name="draw", shape=[1, 2]),
        helper.make_node("RandomUniformLike", ["x"], ["r"], name="draw"),
        helper.make_node("RandomNormalLike", ["x"], ["r"], name="draw"),
        helper.make_node("Bernoulli", ["half"], ["r"], name="draw"),
    ],
)
def test_random_nodes_are_rejected_not_folded(node) -> None:
    nodes = [node, helper.make_node("Add", ["x", "r"], ["y"], name="add")]
    model = make_model(nodes, input_shape=[1, 2], initializers={"half": [[0.5, 0.5]]})
    with pytest.raises(UnsupportedError, match="'draw'.*nondeterministic"):
        load_model(to_bytes(model))


def test_dropout_is_identity_in_inference_and_rejected_in_training() -> None:
    model = load_model(to_bytes(single_op_model("Dropout", [1, 3])))
    assert np.array_equal(model.evaluate(np.array([[1.0, -2.0, 3.0]])), [[1.0, -2.0, 3.0]])
    training = single_op_model(
        "Dropout", [1, 3], inputs=("x", "", "mode"), initializers={"mode": np.array(True)}
    )
    with pytest.raises(UnsupportedError, match="nondeterministic"):
        load_model(to_bytes(training))


def test_non_finite_weights_are_rejected() -> None:
    model = dense_relu_model([np.array([[np.inf]]), np.array([[1.0]])], [[0.0], [0.0]])
    with pytest.raises(UnsupportedError, match="inf or NaN"):
        load_model(to_bytes(model))


# --- 5. crashes are errors (exit 3), and these inputs have real answers ---------------------


def test_disjunct_without_output_atom_is_violated(tmp_path: Path) -> None:
    text = HEADER + "(assert (>= X_0 0))(assert (<= X_0 1))(assert (or (<= Y_0 -100) (<= X_0 0.2)))"
    code, out = _cli(str(_ramp(tmp_path)), str(_write(tmp_path, "p.vnnlib", text)), "--json")
    assert code == 1
    assert 0.0 <= json.loads(out)["counterexample"]["inputs"][0] <= 0.2


def test_unexpected_exception_is_an_error_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("verifiers.verify.CaseSearch", broken)
    spec = _write(
        tmp_path, "p.vnnlib", HEADER + "(assert (>= X_0 0))(assert (<= X_0 1))(assert (<= Y_0 -1))"
    )
    code, out = _cli(str(_ramp(tmp_path)), str(spec), "--json")
    assert code == 3
    assert "ZeroDivisionError" in json.loads(out)["reason"]
    monkeypatch.setattr("service.cli_verify.verify_files", broken)
    assert _cli(str(_ramp(tmp_path)), str(spec), "--json")[0] == 3


@pytest.mark.parametrize(
    ("options", "pointer"),
    [({"seed": -1}, "/options/seed"), ({"margin": -0.5}, "/options/margin")],
)
def test_invalid_options_are_422_over_http(client, options: dict, pointer: str) -> None:
    """The API shares Options' rule: a 422 naming the field, never a queued job."""
    model = dense_relu_model([np.array([[1.0]]), np.array([[1.0]])], [[-0.5], [0.0]])
    r = client.post("/v1/artefacts", files={"file": ("ramp.onnx", to_bytes(model))})
    text = HEADER + "(assert (>= X_0 0))(assert (<= X_0 1))(assert (<= Y_0 -1))"
    body = {"artefact": r.json()["id"], "property": {"vnnlib": text}, "options": options}
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    assert pointer in r.text
