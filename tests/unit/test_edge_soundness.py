"""Generated edge cases: never a definite verdict the oracle refutes, never an exception.

Hypothesis builds tiny networks with extreme float32 weights (up to float32 max, subnormals,
zeros), properties with huge, tiny and non-binary rational numbers, strict and closed input
and output bounds, disjuncts that mix input and output atoms, and random options. The oracle
is independent of the engine:

- `holds` is refuted by a rational grid point of an input set (strict bounds strictly) whose
  exactly evaluated output (Fractions of the float32 weights) lies in the unsafe set widened
  by the margin;
- `violated` is refuted unless its input lies in some case's input set exactly and the
  output onnxruntime computes for it lies in that case's unsafe set exactly.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from onnx import helper

from tests.onnx_builders import dense_relu_model, make_model, to_bytes
from verifiers.components import OnnxComponent
from verifiers.model import load_model
from verifiers.options import Options
from verifiers.result import Verdict
from verifiers.spec.property import Case, Property
from verifiers.spec.vnnlib import parse_vnnlib
from verifiers.verify import verify

F32_MAX = float(np.finfo(np.float32).max)
WEIGHTS = [0.0, 1.0, -1.0, 0.5, -2.0, 1e-45, -1e-45, 1e-38, 1e-20, 1e20, -1e20, F32_MAX, -F32_MAX]
# VNN-LIB literals: decimals, huge and tiny scientific numbers, exact quotients.
NUMBERS = [
    "0",
    "1",
    "-1",
    "0.5",
    "0.1",
    "-0.3",
    "2",
    "(/ 355 113)",
    "(/ -1 3)",
    "1e-300",
    "-1e-400",
    "1e30",
    "-1e30",
    "1e400",
    "-1e400",
    str(2**900),
    str(-(2**900)),
    "3.4028235e38",
]
COEFFS = ["1", "-1", "0.5", "(/ 1 3)", "(/ -355 113)", "1e-300", "1e30", str(2**900), "1e400"]
GRID = 6


def exact(text: str) -> Fraction:
    if text.startswith("(/"):
        p, q = text[3:-1].split()
        return Fraction(int(p), int(q))
    return Fraction(text)


@dataclass(frozen=True)
class Network:
    weights: list[np.ndarray]
    biases: list[np.ndarray]

    def evaluate_exactly(self, x: list[Fraction]) -> list[Fraction]:
        values = x
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            values = [
                sum(
                    (Fraction(float(wij)) * v for wij, v in zip(row, values, strict=True)),
                    start=Fraction(float(bi)),
                )
                for row, bi in zip(w, b, strict=True)
            ]
            if k < len(self.weights) - 1:
                values = [max(v, Fraction(0)) for v in values]
        return values


@st.composite
def networks(draw) -> Network:
    number = st.one_of(st.sampled_from(WEIGHTS), st.floats(-4, 4, width=32))
    sizes = [draw(st.integers(1, 2)), *draw(st.lists(st.integers(1, 3), max_size=1))]
    sizes.append(draw(st.integers(1, 2)))
    weights, biases = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        weights.append(
            np.array(
                draw(
                    st.lists(
                        st.lists(number, min_size=n_in, max_size=n_in),
                        min_size=n_out,
                        max_size=n_out,
                    )
                ),
                dtype=np.float32,
            )
        )
        biases.append(
            np.array(draw(st.lists(number, min_size=n_out, max_size=n_out)), dtype=np.float32)
        )
    return Network(weights, biases)


@st.composite
def properties(draw, n_in: int, n_out: int) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(n_in)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    for i in range(n_in):
        low = draw(st.sampled_from(["0", "-1", "0.5", "(/ 1 3)", "-1e-30", "0.1"]))
        width = draw(st.sampled_from(["1", "0.25", "1e-6", "0", "2"]))
        high = f"(+ {low} {width})"
        lines.append(f"(assert ({draw(st.sampled_from(['>=', '>']))} X_{i} {low}))")
        lines.append(f"(assert ({draw(st.sampled_from(['<=', '<']))} X_{i} {high}))")
    terms = []
    for _ in range(draw(st.integers(1, 2))):
        atoms = []
        for _ in range(draw(st.integers(0, 2))):
            j = draw(st.integers(0, n_out - 1))
            coeff, rhs = draw(st.sampled_from(COEFFS)), draw(st.sampled_from(NUMBERS))
            relation = draw(st.sampled_from(["<=", "<", ">=", ">"]))
            atoms.append(f"({relation} (* {coeff} Y_{j}) {rhs})")
        if not atoms or draw(st.booleans()):
            i = draw(st.integers(0, n_in - 1))
            atoms.append(f"(<= X_{i} {draw(st.sampled_from(NUMBERS))})")
        terms.append(f"(and {' '.join(atoms)})")
    lines.append(f"(assert (or {' '.join(terms)}))")
    return "\n".join(lines)


def grid(case: Case) -> list[list[Fraction]]:
    """Rational points of the case's input set (strict bounds respected)."""
    axes = []
    for i, (lo, hi) in enumerate(zip(case.lower_exact, case.upper_exact, strict=True)):
        points = {lo + (hi - lo) * Fraction(k, GRID) for k in range(GRID + 1)}
        strict_lo, strict_hi = case.strict_at(i)
        points -= {lo} if strict_lo else set()
        points -= {hi} if strict_hi else set()
        axes.append(sorted(points))
    result: list[list[Fraction]] = [[]]
    for axis in axes:
        result = [point + [v] for point in result for v in axis]
    return result


def unsafe_widened(case: Case, y: list[Fraction], margin: Fraction) -> bool:
    """y lies in the case's unsafe set with every right-hand side raised by the margin."""

    def inside(h) -> bool:
        lhs = sum((c * v for c, v in zip(h.coeffs, y, strict=True)), Fraction(0))
        return lhs < h.rhs + margin if h.strict else lhs <= h.rhs + margin

    return any(all(inside(h) for h in c.halfspaces) for c in case.unsafe)


def refutes_holds(net: Network, prop: Property, margin: Fraction) -> bool:
    return any(
        unsafe_widened(case, net.evaluate_exactly(x), margin)
        for case in prop.cases
        if not case.is_empty()
        for x in grid(case)
    )


def confirms_violation(model, prop: Property, inputs: list[float]) -> bool:
    y = model.run_onnxruntime(np.array([inputs], dtype=np.float64))[0]
    return any(
        case.contains_exactly(inputs) and any(c.holds_exactly(y) for c in case.unsafe)
        for case in prop.cases
    )


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    net=networks(),
    data=st.data(),
    margin=st.sampled_from([0.0, 1e-9, 0.5, 1e300]),
    seed=st.integers(0, 2**63 - 1),
)
def test_no_verdict_the_oracle_refutes(tmp_path_factory, net, data, margin, seed) -> None:
    n_in, n_out = net.weights[0].shape[1], net.weights[-1].shape[0]
    text = data.draw(properties(n_in, n_out))
    prop = parse_vnnlib(text)
    path = tmp_path_factory.mktemp("net") / "net.onnx"
    path.write_bytes(to_bytes(dense_relu_model(net.weights, net.biases)))
    options = Options(timeout_s=0.5, seed=seed, margin=margin)
    result = verify(OnnxComponent(path), prop, options)
    event(result.verdict.value)
    assert result.verdict is not Verdict.ERROR, result.reason
    if result.verdict is Verdict.HOLDS:
        assert not refutes_holds(net, prop, Fraction(margin)), text
    if result.verdict is Verdict.VIOLATED:
        model = load_model(path)
        assert confirms_violation(model, prop, result.counterexample.inputs), text


# --- graph networks: S-shaped and clipped activations behind a residual join ---------------

ACTIVATIONS = ["Sigmoid", "Tanh", "Clip", "LeakyRelu", "Relu"]
DIGITS = decimal.Context(prec=90)


def _s_shaped(name: str, x: Fraction) -> Fraction:
    """sigmoid or tanh to ~1e-85 (60 digits beyond any tie the grid could hit)."""
    z = x if name == "Tanh" else x / 2
    if abs(z) > 200:  # within 1e-170 of +-1
        t = Fraction(1 if z > 0 else -1)
    else:
        e = DIGITS.exp(
            DIGITS.multiply(decimal.Decimal(2), DIGITS.divide(z.numerator, z.denominator))
        )
        t = Fraction(DIGITS.divide(DIGITS.subtract(e, 1), DIGITS.add(e, 1)))
    return t if name == "Tanh" else (1 + t) / 2


@dataclass(frozen=True)
class ResidualNetwork:
    """y = W2 (act(W1 x + b1) + x) + b2, with two inputs and two hidden units."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    activation: str
    slope: float  # LeakyRelu's alpha; Clip's bounds are [-slope, slope]

    def act(self, v: Fraction) -> Fraction:
        s = Fraction(float(np.float32(self.slope)))
        if self.activation in ("Sigmoid", "Tanh"):
            return _s_shaped(self.activation, v)
        if self.activation == "Clip":
            return min(max(v, -s), s)
        if self.activation == "LeakyRelu":
            return v if v >= 0 else s * v
        return max(v, Fraction(0))

    def evaluate_exactly(self, x: list[Fraction]) -> list[Fraction]:
        def affine(w, b, v):
            return [
                sum(
                    (Fraction(float(a)) * c for a, c in zip(row, v, strict=True)),
                    Fraction(float(bi)),
                )
                for row, bi in zip(w, b, strict=True)
            ]

        hidden = [self.act(h) + xi for h, xi in zip(affine(self.w1, self.b1, x), x, strict=True)]
        return affine(self.w2, self.b2, hidden)

    def onnx(self):
        extra = {"alpha": self.slope} if self.activation == "LeakyRelu" else {}
        inputs = ["h", "lo", "hi"] if self.activation == "Clip" else ["h"]
        nodes = [
            helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1),
            helper.make_node(self.activation, inputs, ["a"], **extra),
            helper.make_node("Add", ["a", "x"], ["r"]),
            helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1),
        ]
        init = {"W1": self.w1, "b1": self.b1, "W2": self.w2, "b2": self.b2}
        if self.activation == "Clip":
            init |= {"lo": np.float32(-self.slope), "hi": np.float32(self.slope)}
        return make_model(nodes, input_shape=[1, 2], initializers=init, opset=13)


@st.composite
def residual_networks(draw) -> ResidualNetwork:
    number = st.one_of(st.sampled_from(WEIGHTS), st.floats(-4, 4, width=32))

    def matrix(rows: int, cols: int) -> np.ndarray:
        cells = st.lists(
            st.lists(number, min_size=cols, max_size=cols), min_size=rows, max_size=rows
        )
        return np.array(draw(cells), dtype=np.float32)

    n_out = draw(st.integers(1, 2))
    return ResidualNetwork(
        matrix(2, 2),
        matrix(1, 2)[0],
        matrix(n_out, 2),
        matrix(1, n_out)[0],
        draw(st.sampled_from(ACTIVATIONS)),
        draw(st.sampled_from([0.1, 0.5, 2.0, 1e-30, 1e30])),
    )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(net=residual_networks(), data=st.data(), margin=st.sampled_from([0.0, 1e-9, 0.5]))
def test_graph_engine_never_refuted(tmp_path_factory, net, data, margin) -> None:
    """The graph engine (a residual join makes the model a DAG) under the same oracle."""
    text = data.draw(properties(2, net.w2.shape[0]))
    prop = parse_vnnlib(text)
    path = tmp_path_factory.mktemp("net") / "net.onnx"
    path.write_bytes(to_bytes(net.onnx()))
    result = verify(OnnxComponent(path), prop, Options(timeout_s=0.5, margin=margin))
    event(f"{net.activation}: {result.verdict.value}")
    assert result.verdict is not Verdict.ERROR, result.reason
    if result.verdict is Verdict.HOLDS:
        assert not refutes_holds(net, prop, Fraction(margin)), text
    if result.verdict is Verdict.VIOLATED:
        assert confirms_violation(load_model(path), prop, result.counterexample.inputs), text
