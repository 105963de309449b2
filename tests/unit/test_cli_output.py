"""What `proofwell` prints for people: version, help, named values, margins and traces."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from service import traces
from service.cli import app
from service.names import labels_of, names_for

ROOT = Path(__file__).resolve().parents[2]
QUICK = ROOT / "examples" / "quickstart"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_version() -> None:
    code, out, _ = run("--version")
    assert code == 0 and out.startswith("proofwell 0.") and "engine" in out


@pytest.mark.parametrize("command", ["verify", "submit", "gate", "serve", "worker"])
def test_help_has_no_bool_or_python_type_metavars(command: str) -> None:
    code, out, _ = run(command, "--help")
    assert code == 0 and "--help" in out
    assert "<bool>" not in out and "list[str]" not in out


def test_a_violation_names_inputs_and_outputs_after_the_onnx_graph() -> None:
    code, out, _ = run(
        "verify", str(QUICK / "advisory.onnx"), str(QUICK / "clear_always_top.vnnlib")
    )
    assert code == 1
    assert "X_0 (input[0]) = " in out and "Y_2 (scores[2]) = " in out
    assert "margin: " in out and "inside the unsafe set" in out


def test_a_label_map_in_the_property_names_the_values(tmp_path: Path) -> None:
    spec = tmp_path / "labelled.vnnlib"
    text = (QUICK / "clear_always_top.vnnlib").read_text()
    spec.write_text("; label X_0 = intruder distance\n; label Y_2 = turn right\n" + text)
    code, out, _ = run("verify", str(QUICK / "advisory.onnx"), str(spec))
    assert code == 1
    assert "X_0 (intruder distance) = " in out and "Y_2 (turn right) = " in out
    assert "X_1 (input[1])" in out  # unlabelled: the tensor's name


def test_a_failing_closed_loop_says_which_invariant_failed_at_which_step() -> None:
    code, out, _ = run("verify", str(ROOT / "examples" / "closed_loop" / "SYSTEM_fails.json"))
    assert code == 1
    assert 'invariant "dist >= 18.5" failed at step 2' in out
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 3 and rows[-1].endswith("<- fails")
    assert "dist" in out and "speed" in out and "bounds of dist: [18.5, -]" in out


def test_labels_from_vnnlib_and_presets() -> None:
    assert labels_of("; label X_0 = rho\n;label Y_1: weak left\n(assert (<= X_0 1))") == {
        "X_0": "rho",
        "Y_1": "weak left",
    }
    assert labels_of({"preset": {"labels": {"Y_0": "clear", "bad": "x"}}}) == {"Y_0": "clear"}
    names = names_for(2, 1, {"X_1": "speed"}, ["in[0]", "in[1]"], ["out"])
    assert names.inputs == ("X_0 (in[0])", "X_1 (speed)") and names.outputs == ("Y_0 (out)",)


def test_step_trace_reads_rationals_and_finds_the_failing_step() -> None:
    trace = [
        {"step": 0, "state": {"x": 1, "v": "1/2"}, "inputs": {"u": 0.5}},
        {"step": 1, "state": {"x": "3/2", "v": 1.0}, "inputs": {"u": -1}},
        {"step": 2, "state": {"x": "5/2", "v": 0}, "failed": ["x <= 2"]},
    ]
    view = traces.step_trace(trace, ["x <= 2", "v >= -1"])
    assert (view.steps, view.failed_step, view.failed) == (2, 2, ("x <= 2",))
    x, v = view.signals
    assert x.values == (1.0, 1.5, 2.5) and (x.lower, x.upper) == (None, 2.0)
    assert v.lower == -1.0 and view.inputs[0].values == (0.5, -1.0, None)
    # x rises to its bound (2.0) and past it: the last bar is the highest, marked failing.
    assert traces.sparkline(x, view.failed_step).startswith("▁▃█!")
    assert traces.sparkline(view.inputs[0], None).startswith("█▁·")


def test_equivalence_lines_show_reference_deviation_and_epsilon() -> None:
    entry = {"inputs": [7, 0], "network": [0.99], "reference": ["1"], "deviation": "0.01"}
    system = {"kind": "equivalence", "box": {"speed": [0, 20], "dist": [0, 50]}, "epsilon": 0.005}
    lines = traces.text_lines([entry], system)
    assert lines[0] == "deviation 0.01 > epsilon 0.005"
    assert "speed=7" in lines[1] and "dist=0" in lines[1] and lines[3] == "reference: 1"


def test_progress_lines_give_elapsed_rate_and_estimate() -> None:
    import io

    from service.progress_text import ProgressLines, estimate_left
    from verifiers.result import Progress

    stream = io.StringIO()
    lines = ProgressLines(timeout=60.0, every_s=0.0, stream=stream)
    lines(Progress(subproblems_done=200, subproblems_open=8, proved_fraction=0.25, seconds=10.0))
    (line,) = stream.getvalue().splitlines()
    assert line.startswith("verifying: 10 s elapsed, 200 regions (20/s), 8 open")
    assert "25.0% proved" in line and "~30 s left" in line
    assert estimate_left(50.0, 0.1, timeout=60.0) == 10.0  # capped by the timeout
    assert estimate_left(5.0, 0.0, timeout=None) is None


def test_progress_lines_are_rate_limited() -> None:
    import io

    from service.progress_text import ProgressLines, describe
    from verifiers.result import Progress

    stream = io.StringIO()
    lines = ProgressLines(timeout=None, every_s=3600.0, stream=stream)
    for k in range(100):
        lines(Progress(k, 1, 0.0, float(k)))
    assert stream.getvalue() == ""  # nothing before the first interval has passed
    assert "open" not in describe(Progress(5, 0, 0.5, 2.0))  # no open count: not claimed 0


def test_a_wrong_tensor_name_lists_the_valid_ones() -> None:
    model, spec = QUICK / "advisory.onnx", QUICK / "clear_always_top.vnnlib"
    code, _, err = run("verify", str(model), str(spec), "--output", "nope")
    assert code == 3
    assert str(model) in err and "nope" in err and "valid names: input, " in err
    assert "scores" in err


@pytest.mark.parametrize("kind", ["system", "module spec", "model"])
def test_every_error_names_the_users_file(tmp_path: Path, kind: str) -> None:
    bad = tmp_path / ("broken.json" if kind != "model" else "broken.onnx")
    bad.write_text("{\n  oops" if kind != "model" else "not a model")
    args = {
        "system": [str(bad)],
        "module spec": [str(ROOT / "examples" / "controller" / "controller.py"), str(bad)],
        "model": [str(bad), str(QUICK / "clear_always_top.vnnlib")],
    }[kind]
    code, out, err = run("verify", *args)
    assert code == 3 and "Traceback" not in out + err
    assert err.startswith(f"error: {bad}")
    if kind != "model":
        assert f"{bad}:2:3: invalid JSON" in err
