"""`proofwell verify` end to end: verdicts on known instances, exit codes, JSON, result files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from service.cli import app
from tests.fixtures import VNNCOMP_TEST
from tests.fixtures.make_fixtures import BOX5, SUB5, onnx_network, random_layers

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
EXIT = {"holds": 0, "violated": 1, "unknown": 2, "error": 3}


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["verify", *args])
    return result.exit_code, result.stdout


def run_cli_command(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout


def vnncomp_instances() -> list[tuple[str, str, str]]:
    with open(VNNCOMP_TEST / "expected.csv") as f:
        return [(r["onnx"], r["vnnlib"], r["expected"]) for r in csv.DictReader(f)]


@pytest.mark.parametrize(("onnx_name", "spec", "expected"), vnncomp_instances())
def test_vnncomp_test_instances(tmp_path: Path, onnx_name: str, spec: str, expected: str) -> None:
    result_file = tmp_path / "out.txt"
    code, out = run_cli(
        str(VNNCOMP_TEST / onnx_name),
        str(VNNCOMP_TEST / spec),
        "--json",
        "--vnncomp-result",
        str(result_file),
        "--timeout",
        "60",
    )
    data = json.loads(out)
    assert data["verdict"] == expected and code == EXIT[expected]
    first = result_file.read_text().splitlines()[0]
    assert first == {"holds": "unsat", "violated": "sat"}[expected]


def interval_upper_bound(weights, biases, lower, upper) -> float:
    """A sound upper bound on Y_0 by plain interval arithmetic (independent of the engine)."""
    lo, hi = np.asarray(lower), np.asarray(upper)
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        pos, neg = np.maximum(w, 0), np.minimum(w, 0)
        lo, hi = pos @ lo + neg @ hi + b, pos @ hi + neg @ lo + b
        if i < len(weights) - 1:
            lo, hi = np.maximum(lo, 0), np.maximum(hi, 0)
    return float(hi[0])


def y0_vnnlib(threshold: float) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(5)]
    lines += [f"(declare-const Y_{i} Real)" for i in range(5)]
    for i, (lo, hi) in enumerate(BOX5):
        lines += [f"(assert (>= X_{i} {lo!r}))", f"(assert (<= X_{i} {hi!r}))"]
    return "\n".join([*lines, f"(assert (>= Y_0 {threshold!r}))"])


def test_acasxu_shaped_network_end_to_end(tmp_path: Path) -> None:
    """ACAS Xu's shape (Sub, Flatten, six MatMul+Add+Relu layers of 50): a bound interval
    arithmetic proves holds; a threshold below a sampled output is violated, replayed here."""
    weights, biases = random_layers(11, [5, 50, 50, 50, 50, 50, 50, 5])
    weights = [w / np.sqrt(w.shape[1]) for w in weights]
    model = tmp_path / "acas_shaped.onnx"
    model.write_bytes(onnx_network(weights, biases, SUB5).SerializeToString())
    lower = [lo - s for (lo, _), s in zip(BOX5, SUB5, strict=True)]
    upper = [hi - s for (_, hi), s in zip(BOX5, SUB5, strict=True)]
    bound = interval_upper_bound(weights, biases, lower, upper)
    safe, unsafe = tmp_path / "safe.vnnlib", tmp_path / "unsafe.vnnlib"
    safe.write_text(y0_vnnlib(round(bound + 1e-3, 6)))
    code, out = run_cli(str(model), str(safe), "--json", "--timeout", "60")
    assert (json.loads(out)["verdict"], code) == ("holds", 0)
    points = np.random.default_rng(0).uniform(lower, upper, size=(2000, 5))
    sampled = points.copy()
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        sampled = sampled @ w.T + b
        if i < len(weights) - 1:
            sampled = np.maximum(sampled, 0)
    unsafe.write_text(y0_vnnlib(round(float(sampled[:, 0].max()) - 1e-3, 6)))
    code, out = run_cli(str(model), str(unsafe), "--json", "--timeout", "60")
    data = json.loads(out)
    assert (data["verdict"], code) == ("violated", 1)
    import onnxruntime as ort

    x = np.asarray(data["counterexample"]["inputs"], dtype=np.float32).reshape(1, 1, 1, 5)
    session = ort.InferenceSession(model.read_bytes(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"input": x})
    assert y[0, 0] >= round(float(sampled[:, 0].max()) - 1e-3, 6)


def test_json_shape_of_a_violation_and_its_replay(tmp_path: Path) -> None:
    result_file = tmp_path / "result.txt"
    code, out = run_cli(
        str(EXAMPLES / "advisory.onnx"),
        str(EXAMPLES / "clear_always_top.vnnlib"),
        "--json",
        "--vnncomp-result",
        str(result_file),
    )
    data = json.loads(out)
    assert code == 1 and data["verdict"] == "violated"
    assert set(data) >= {"verdict", "counterexample", "stats", "certificate"}
    assert set(data["stats"]) == {"seconds", "method", "subproblems", "proved_fraction"}
    cex = data["counterexample"]
    assert set(cex) >= {"inputs", "outputs", "onnxruntime_outputs", "margin"}
    # The property: unsafe when Y_2 > Y_0; onnxruntime's own outputs must show it.
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(EXAMPLES / "advisory.onnx"))
    y = session.run(None, {"input": np.array([cex["inputs"]], dtype=np.float32)})[0][0]
    assert y[2] > y[0] and all(0.0 <= v <= 1.0 for v in cex["inputs"])
    lines = result_file.read_text().splitlines()
    assert lines[0] == "sat" and lines[1].startswith("((X_0 ") and "(Y_2 " in lines[-1]


def test_holds_has_a_certificate() -> None:
    code, out = run_cli(
        str(EXAMPLES / "advisory.onnx"), str(EXAMPLES / "clear_beats_left.vnnlib"), "--json"
    )
    data = json.loads(out)
    assert code == 0 and data["verdict"] == "holds" and data["counterexample"] is None
    certificate = data["certificate"]
    assert certificate["format"] == "proofwell-certificate" and certificate["cases"][0]["tree"]
    assert certificate["leaves"] and set(certificate["leaves"]) <= {
        "linear-bound",
        "linear-combination",
        "smt-unsat",
        "lp-phases",
        "empty-split",
    }
    assert data["stats"]["proved_fraction"] == 1.0


def test_check_certificate_accepts_it_and_rejects_another_property(tmp_path: Path) -> None:
    cert = tmp_path / "cert.json"
    model, spec = EXAMPLES / "advisory.onnx", EXAMPLES / "clear_beats_left.vnnlib"
    code, _ = run_cli(str(model), str(spec), "--certificate", str(cert))
    assert code == 0 and cert.stat().st_size > 0
    code, out = run_cli_command(
        "check-certificate", str(cert), "--model", str(model), "--spec", str(spec), "--json"
    )
    report = json.loads(out)
    assert code == 0 and report["valid"] is True and report["checker"].startswith("proofwell")
    other = EXAMPLES / "clear_always_top.vnnlib"
    code, out = run_cli_command(
        "check-certificate", str(cert), "--model", str(model), "--spec", str(other)
    )
    assert code == 1 and "another property" in out


def test_timeout_gives_unknown_and_timeout_result(tmp_path: Path) -> None:
    result_file = tmp_path / "r.txt"
    code, out = run_cli(
        str(EXAMPLES / "advisory.onnx"),
        str(EXAMPLES / "clear_beats_left.vnnlib"),
        "--json",
        "--timeout",
        "0",
        "--vnncomp-result",
        str(result_file),
    )
    assert code == 2 and json.loads(out)["verdict"] == "unknown"
    assert result_file.read_text().splitlines()[0] == "timeout"


@pytest.mark.parametrize(
    ("model_text", "spec_text", "needle"),
    [
        (None, "(declare-const X_0 Real)\n(assert (<= X_0 1)\n", "2:"),
        (b"not an onnx file", None, "ONNX"),
        (None, "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= Y_0 1))\n", "X_0"),
    ],
)
def test_bad_input_is_exit_3_with_a_one_line_message(tmp_path, model_text, spec_text, needle):
    model = EXAMPLES / "advisory.onnx"
    spec = EXAMPLES / "clear_beats_left.vnnlib"
    if model_text is not None:
        model = tmp_path / "bad.onnx"
        model.write_bytes(model_text)
    if spec_text is not None:
        spec = tmp_path / "bad.vnnlib"
        spec.write_text(spec_text)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from service.cli import app; app()",
            "verify",
            str(model),
            str(spec),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr + proc.stdout
    message = proc.stderr.strip()
    assert message.startswith("error:") and needle in message and "\n" not in message


def test_missing_file_is_exit_3(tmp_path: Path) -> None:
    code, _ = run_cli(str(tmp_path / "nope.onnx"), str(EXAMPLES / "clear_beats_left.vnnlib"))
    assert code == 3


def test_subnetwork_ending_in_relu_is_never_negative(tmp_path: Path) -> None:
    """A boundary-tight property: ReLU outputs are >= 0 exactly, so `some unit < 0` holds."""
    lines = [f"(declare-const X_{i} Real)" for i in range(3)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(16)]
    lines += [f"(assert (>= X_{i} 0.0))\n(assert (<= X_{i} 1.0))" for i in range(3)]
    lines.append("(assert (or " + " ".join(f"(< Y_{j} 0.0)" for j in range(16)) + "))")
    spec = tmp_path / "nonneg.vnnlib"
    spec.write_text("\n".join(lines))
    code, out = run_cli(
        str(EXAMPLES / "advisory.onnx"),
        str(spec),
        "--json",
        "--input",
        "input",
        "--output",
        "h0",
        "--timeout",
        "300",  # decided in seconds when idle; room for a loaded machine
    )
    assert json.loads(out)["verdict"] == "holds" and code == 0


def test_check_certificate_of_a_graph_network(tmp_path: Path) -> None:
    """A residual network (graph engine): verify writes a certificate with its split tree,
    check-certificate accepts it and names the first failing region of a tampered one."""
    from tests.onnx_builders import to_bytes
    from tests.unit.test_graph_verify import residual

    model = tmp_path / "residual.onnx"
    model.write_bytes(to_bytes(residual(np.random.default_rng(0))))
    spec = tmp_path / "p.vnnlib"
    spec.write_text(
        "\n".join(f"(declare-const X_{i} Real)" for i in range(3))
        + "\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
        + "\n".join(f"(assert (>= X_{i} -0.2))\n(assert (<= X_{i} 0.3))" for i in range(3))
        + "\n(assert (>= Y_0 (+ Y_1 50.0)))\n"
    )
    cert = tmp_path / "cert.json"
    code, _ = run_cli(str(model), str(spec), "--certificate", str(cert))
    assert code == 0
    document = json.loads(cert.read_text())
    assert document["engine"] == "graph" and "tree" in document["cases"][0]
    code, out = run_cli_command(
        "check-certificate", str(cert), "--model", str(model), "--spec", str(spec), "--json"
    )
    assert code == 0 and json.loads(out)["valid"] is True, out
    document["cases"][0]["tree"] = {"split": "input", "dim": 0, "at": 0.0, "children": [{}, {}]}
    cert.write_text(json.dumps(document))
    code, out = run_cli_command(
        "check-certificate", str(cert), "--model", str(model), "--spec", str(spec)
    )
    assert code == 1 and "case 0 / 1" in out and "missing a case" in out
