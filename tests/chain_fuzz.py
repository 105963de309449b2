"""Differential fuzzing of the chain engine and of the certificate checker on chain proofs.

A random chain (tests/chain_models.py) gets a random VNN-LIB property: a base input box and
a disjunction of terms, each an optional sub-box (input atoms: a case of its own) with a
conjunction of unsafe output half-spaces. Their thresholds are all moved by one shift, put
just either side of the least "margin" an attack finds (samples, corners, a grid for 1-2
free dimensions, sign-gradient descent on the float64 reference). `check_verdict` then runs
verify and judges it against an oracle that shares no code with the engine or the parser:

- `holds` is wrong if an attacked point inside some term's box (exactly) has a reference
  output in the term's unsafe set widened by the margin;
- `violated` is wrong unless its input lies in a term's box exactly and onnxruntime's output
  lies in that term's unsafe set;
- a `holds` certificate must pass the checker, and the same certificate claiming a property
  the attacked points refute (a threshold moved past them, or a larger margin) must not.

MODES lower the engine's thresholds so that its search paths (ReLU splitting with optimised
slopes and strong branching, phase LPs, z3, the process pool) run on small models.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

import numpy as np
import onnxruntime as ort

from tests.chain_models import random_chain
from tests.graph_dags import Dag
from tests.onnx_builders import to_bytes
from verifiers import verify as verify_module
from verifiers.certify.checker import check_model
from verifiers.components import OnnxComponent
from verifiers.model import load_model
from verifiers.options import Options
from verifiers.result import Verdict
from verifiers.search import bab
from verifiers.spec.vnnlib import parse_vnnlib

COEFFS = ["1", "-1", "0.5", "2", "-0.3", "(/ 1 3)", "1e-3", "-250"]
TOL = 1e-9  # relative to the magnitude of a row's terms: float64 rounding of the reference

MODES: dict[str, dict[tuple[object, str], object]] = {
    "default": {},
    "relus": {(bab, "INPUT_SPLIT_MAX_DIMS"): 0},
    "strong": {
        (bab, "INPUT_SPLIT_MAX_DIMS"): 0,
        (bab, "MANY_UNSTABLE"): 0,
        (bab, "STRONG_CANDIDATES_MANY"): 3,
        (bab, "TRIAL_PARTS"): 4,
    },
    "phase": {(bab, "PHASE_LP_UNSTABLE"): 10_000, (bab, "RELU_SPLIT_AT"): 0},
    "smt": {(bab, "PHASE_LP_UNSTABLE"): 0, (bab, "SMT_UNSTABLE_LIMIT"): 10_000},
    "relus-smt": {
        (bab, "INPUT_SPLIT_MAX_DIMS"): 0,
        (bab, "PHASE_LP_UNSTABLE"): 0,
        (bab, "SMT_UNSTABLE_LIMIT"): 10_000,
    },
    "parallel": {(verify_module, "SERIAL_SECONDS"): 0.0},
}


@contextlib.contextmanager
def patched(mode: str):
    saved = {key: getattr(*key) for key in MODES[mode]}
    try:
        for (module, name), value in MODES[mode].items():
            setattr(module, name, value)
        yield
    finally:
        for (module, name), value in saved.items():
            setattr(module, name, value)


@dataclass
class Term:
    """One disjunct: inputs in [lower, upper] (within the base box) and rows . y <= rhs."""

    lower: np.ndarray
    upper: np.ndarray
    coeffs: list[list[str]]  # VNN-LIB numbers, per row per output ("" where absent)
    rhs: np.ndarray
    inputs: list[int] = field(default_factory=list)  # dimensions with atoms of their own

    @property
    def rows(self) -> np.ndarray:
        return np.array([[_value(c) for c in row] for row in self.coeffs])


def _value(text: str) -> float:
    if not text:
        return 0.0
    if text.startswith("(/"):
        p, q = text[3:-1].split()
        return float(Fraction(int(p), int(q)))
    return float(Fraction(text))


def _exact(text: str) -> Fraction:
    if text.startswith("(/"):
        p, q = text[3:-1].split()
        return Fraction(int(p), int(q))
    return Fraction(text)


@dataclass
class Spec:
    lower: np.ndarray
    upper: np.ndarray
    terms: list[Term]
    n_out: int
    exact: np.ndarray  # per input, whether its bounds are written as exact decimals

    def bound(self, i: int, value: float) -> str:
        return _number(value, bool(self.exact[i]))


def random_box(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Thin, wide, huge, degenerate (lo == hi), offset from 0 or far out, per dimension."""
    centre = np.where(rng.random(n) < 0.4, 0.0, rng.uniform(-3, 3, n))
    far = rng.choice([-1, 1], n) * 10 ** rng.uniform(2, 4, n)
    centre = np.where(rng.random(n) < 0.08, far, centre)
    width = rng.choice(
        [0.0, 1e-10, 1e-6, 1e-3, 0.05, 1.0, 2.0, 6.0, 1e3],
        n,
        p=[0.05, 0.03, 0.05, 0.07, 0.2, 0.3, 0.15, 0.1, 0.05],
    )
    if not np.any(width > 0):
        width[0] = 1.0
    return centre - width / 2, centre + width / 2


def random_spec(rng: np.random.Generator, n_in: int, n_out: int) -> Spec:
    lower, upper = random_box(rng, n_in)
    terms = []
    for _ in range(int(rng.choice([1, 1, 2, 3]))):
        lo, hi, dims = lower.copy(), upper.copy(), []
        if rng.random() < 0.35:  # a sub-box: a case of its own
            for i in rng.choice(n_in, size=int(rng.integers(1, min(n_in, 3) + 1)), replace=False):
                at = lower[i] + (upper[i] - lower[i]) * rng.random()
                if rng.random() < 0.5:
                    hi[i] = at
                else:
                    lo[i] = at
                dims.append(int(i))
        coeffs = []
        for _ in range(int(rng.integers(1, 4))):
            row = [""] * n_out
            for j in rng.choice(n_out, size=int(rng.integers(1, n_out + 1)), replace=False):
                row[int(j)] = str(rng.choice(COEFFS))
            coeffs.append(row)
        terms.append(Term(lo, hi, coeffs, np.zeros(len(coeffs)), dims))
    # Degenerate and thin boxes are written exactly: a decimal between two floats would
    # leave no float input to sample (or to replay).
    exact = (rng.random(n_in) < 0.6) | (upper - lower < 1e-9 * (1 + np.abs(lower)))
    return Spec(lower, upper, terms, n_out, exact)


def inside(term: Term, spec: Spec, x: np.ndarray) -> np.ndarray:
    """Points inside the term's box and the base box, exactly (their bounds as written)."""
    lo = np.array([_inward(spec, i, v, +1) for i, v in enumerate(term.lower)])
    hi = np.array([_inward(spec, i, v, -1) for i, v in enumerate(term.upper)])
    lo, hi = np.maximum(lo, clip_inside(spec, lo)), np.minimum(hi, clip_inside(spec, hi))
    return np.all((x >= lo) & (x <= hi), axis=1)


def margins(d: Dag, spec: Spec, x: np.ndarray, shift: float, margin: float = 0.0) -> np.ndarray:
    """Per point, min over the terms containing it of max over rows of a.y - rhs - shift -
    margin (<= 0: unsafe), less the rounding tolerance of the reference; inf where no term's
    box contains it."""
    y = d.reference(x)
    best = np.full(len(x), np.inf)
    for term in spec.terms:
        rows = term.rows
        value = y @ rows.T - term.rhs - shift - margin
        tol = TOL * (1.0 + np.abs(y) @ np.abs(rows).T + np.abs(term.rhs + shift))
        per = np.max(value + tol, axis=1)
        best = np.where(inside(term, spec, x), np.minimum(best, per), best)
    return best


def _term_margin(d: Dag, term: Term, x: np.ndarray) -> np.ndarray:
    return np.max(d.reference(x) @ term.rows.T - term.rhs, axis=1)


def attack(rng: np.random.Generator, d: Dag, spec: Spec) -> np.ndarray:
    """Points of every term's box where its margin is small."""
    found = []
    for term in spec.terms:
        lo, hi = np.maximum(term.lower, spec.lower), np.minimum(term.upper, spec.upper)
        if np.any(lo > hi):
            continue
        n = len(lo)
        corners = rng.integers(0, 2, size=(64, n))
        pts = [lo + (hi - lo) * np.concatenate([rng.random((1500, n)), corners, [np.full(n, 0.5)]])]
        free = np.flatnonzero(hi > lo)
        if 0 < len(free) <= 2:
            axes = [np.linspace(lo[i], hi[i], 801 if len(free) == 1 else 81) for i in free]
            grid = np.tile(lo, (int(np.prod([len(a) for a in axes])), 1))
            grid[:, free] = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(free))
            pts.append(grid)
        x = np.concatenate(pts)
        best = x[np.argsort(_term_margin(d, term, x))[:8]]
        width = hi - lo
        for step in np.geomspace(0.3, 1e-7, 50):
            grad = np.zeros_like(best)
            h = np.maximum(1e-7 * width, 1e-12)
            for i in free:
                up, down = best.copy(), best.copy()
                up[:, i] = np.minimum(up[:, i] + h[i], hi[i])
                down[:, i] = np.maximum(down[:, i] - h[i], lo[i])
                grad[:, i] = _term_margin(d, term, up) - _term_margin(d, term, down)
            trial = np.clip(best - step * width * np.sign(grad), lo, hi)
            better = _term_margin(d, term, trial) < _term_margin(d, term, best)
            best = np.where(better[:, None], trial, best)
            x = np.concatenate([x, trial])
        found.append(x)
    return np.concatenate(found) if found else np.zeros((0, len(spec.lower)))


def _number(v: float, exact: bool = False) -> str:
    """The shortest decimal that reads back as v, or v's exact decimal expansion."""
    return str(Decimal(float(v))) if exact else repr(float(v))


def vnnlib(spec: Spec, n_in: int, shift: float, factor: Fraction = Fraction(1)) -> str:
    """The property, each output row (coefficients and threshold) times `factor` (the same
    set: a test of the scaling a proof's numbers must survive)."""
    lines = [f"(declare-const X_{i} Real)" for i in range(n_in)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(spec.n_out)]
    for i in range(n_in):
        lines.append(f"(assert (>= X_{i} {spec.bound(i, spec.lower[i])}))")
        lines.append(f"(assert (<= X_{i} {spec.bound(i, spec.upper[i])}))")
    terms = []
    for term in spec.terms:
        atoms = []
        for i in term.inputs:
            atoms.append(f"(>= X_{i} {spec.bound(i, term.lower[i])})")
            atoms.append(f"(<= X_{i} {spec.bound(i, term.upper[i])})")
        for row, b in zip(term.coeffs, term.rhs + shift, strict=True):
            scaled = [_scaled(c, factor) if c else "" for c in row]
            products = [f"(* {c} Y_{j})" for j, c in enumerate(scaled) if c]
            lhs = products[0] if len(products) == 1 else f"(+ {' '.join(products)})"
            rhs = _number(b) if factor == 1 else _fraction(Fraction(_number(b)) * factor)
            atoms.append(f"(<= {lhs} {rhs})")
        terms.append(f"(and {' '.join(atoms)})")
    lines.append(f"(assert (or {' '.join(terms)}))")
    return "\n".join(lines) + "\n"


def _scaled(text: str, factor: Fraction) -> str:
    return text if factor == 1 else _fraction(_exact(text) * factor)


def _fraction(value: Fraction) -> str:
    return f"(/ {value.numerator} {value.denominator})" if value.denominator != 1 else str(value)


def clip_inside(spec: Spec, x: np.ndarray) -> np.ndarray:
    """The points moved inside the exact base box (its decimal bounds may lie inside the
    floats written for them by half an ulp)."""
    lo = np.array([_inward(spec, i, v, +1) for i, v in enumerate(spec.lower)])
    hi = np.array([_inward(spec, i, v, -1) for i, v in enumerate(spec.upper)])
    return np.clip(x, lo, hi)


def _inward(spec: Spec, i: int, v: float, direction: int) -> float:
    exact = Fraction(spec.bound(i, v))
    if (Fraction(v) >= exact) if direction > 0 else (Fraction(v) <= exact):
        return v
    return float(np.nextafter(v, direction * np.inf))


@dataclass
class Instance:
    seed: int
    d: Dag
    data: bytes
    model: object
    spec: Spec
    x: np.ndarray
    least: float
    eps: float


def instance(seed: int) -> Instance | None:
    return fuzz_instance(seed, random_chain(seed), np.random.default_rng(seed + 555), 1e-4)


def fuzz_instance(seed: int, d: Dag, rng, eps_factor: float) -> Instance | None:
    """A random property of `d` near its least attacked margin; eps, the distance to place
    thresholds from it, is `eps_factor` times the margins' spread (None: no finite margin)."""
    data = to_bytes(d.model())
    model = load_model(data)
    n_in = int(np.prod(d.input_shape))
    n_out = int(d.reference(np.zeros((1, n_in))).shape[1])
    spec = random_spec(rng, n_in, n_out)
    x = clip_inside(spec, attack(rng, d, spec))
    m = margins(d, spec, x, 0.0)
    finite = np.isfinite(m)
    if not finite.any():
        return None
    least = float(m[finite].min())
    scale = max(float(m[finite].std()), 1e-6 * (1 + abs(least)))
    return Instance(seed, d, data, model, spec, x, least, scale * eps_factor)


def replays(inst: Instance, shift: float, inputs) -> bool:
    """The input lies in a term's box exactly, onnxruntime's output in its unsafe set."""
    x = np.asarray(inputs, dtype=np.float64)
    if not np.array_equal(x.astype(np.float32).astype(np.float64), x):
        return False
    session = ort.InferenceSession(inst.data, providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": x.astype(np.float32).reshape(inst.d.input_shape)})[0].ravel()
    xs = [Fraction(float(v)) for v in x]
    ys = [Fraction(float(v)) for v in y]
    base = all(
        Fraction(inst.spec.bound(i, lo)) <= v <= Fraction(inst.spec.bound(i, hi))
        for i, (lo, hi, v) in enumerate(zip(inst.spec.lower, inst.spec.upper, xs, strict=True))
    )
    for term in inst.spec.terms:
        box = all(
            Fraction(inst.spec.bound(i, term.lower[i]))
            <= xs[i]
            <= Fraction(inst.spec.bound(i, term.upper[i]))
            for i in term.inputs
        )
        rows = all(
            sum((_exact(c) * yj for c, yj in zip(row, ys, strict=True) if c), Fraction(0))
            <= Fraction(_number(b))
            for row, b in zip(term.coeffs, term.rhs + shift, strict=True)
        )
        if base and box and rows:
            return True
    return False


def check_verdict(inst: Instance, side: int, options: Options, mode: str = "default") -> list[str]:
    """Problems with verify's verdict at the shift `side` eps from the least margin."""
    shift = inst.least + side * inst.eps
    prop = parse_vnnlib(vnnlib(inst.spec, len(inst.spec.lower), shift))
    with patched(mode):
        result = verify(OnnxComponent(inst.data), prop, options)
    what = f"seed={inst.seed} side={side} mode={mode} {options}"
    if result.verdict is Verdict.ERROR:
        return [f"error {result.reason} {what}"]
    if result.verdict is Verdict.VIOLATED:
        if not replays(inst, shift, result.counterexample.inputs):
            return [f"violated does not replay {what}"]
        return []
    if result.verdict is not Verdict.HOLDS:
        return []
    worst = margins(inst.d, inst.spec, inst.x, shift, options.margin).min()
    if worst < 0:
        return [f"WRONG HOLDS (margin {worst:.3g}) {what}"]
    return check_certificate(inst, prop, result.certificate, shift, options, what)


def check_certificate(
    inst: Instance, prop, cert, shift, options, what, budget_s: float = 20
) -> list[str]:
    """Problems with a `holds` certificate: rejected though valid, or accepted when it
    claims a threshold the attacked points refute or a margin they do not allow."""
    if cert is None or not options.record_tree:
        return []
    problems = []
    report = check_model(cert, inst.model, prop, budget_s=budget_s)
    # Optimised intermediate bounds are not in a certificate (docs/certificate.md): only
    # proofs without them must re-check.
    if report.checked and not report.valid and not options.optimise_intermediate:
        problems.append(f"certificate rejected: {report.message} {what}")
    # The same proof claiming a property the attacked points refute.
    refuted = inst.least + inst.eps - options.margin
    if refuted > shift:
        false = parse_vnnlib(vnnlib(inst.spec, len(inst.spec.lower), refuted))
        forged = {**cert, "property_sha256": false.sha256()}
        if check_model(forged, inst.model, false, budget_s=budget_s).valid:
            problems.append(f"FORGED THRESHOLD ACCEPTED {what}")
    wider = inst.least + inst.eps - shift
    if wider > options.margin:
        forged = {**cert, "margin": wider}
        if check_model(forged, inst.model, prop, budget_s=budget_s).valid:
            problems.append(f"FORGED MARGIN ACCEPTED {what}")
    return problems


verify = verify_module.verify
