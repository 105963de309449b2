"""Random DAGs (tests/graph_dags.py) against the graph engine, with an oracle that shares no
code with it (the DAG's own float64 reference, onnxruntime):

- the bound ops evaluate as the IR does (what the bounds bound is what the model computes);
- every bound encloses the values at sampled inputs: each tensor's box, the objective's
  lower bound and its linear form, with optimised intermediate bounds and slopes, after
  element splits (with split multipliers) and Max case splits; domain cuts never prove
  rows that a sample violates;
- verify's verdicts with the threshold just around the sampled minimum (found by sampling,
  corners and a gradient descent): `holds` is wrong if a point violates, `violated` if its
  counterexample does not replay in onnxruntime inside the box. Element and case splits,
  slopes and multipliers only run above 8-16 inputs: the "element" mode lowers those
  thresholds to 0 so that the search takes those paths on these small networks.

Then the regressions this fuzzing found: Clip with min > max, a margin under a Softmax.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

from tests.graph_dags import Dag, logits, random_dag, shift_logit
from tests.onnx_builders import make_model, to_bytes
from verifiers.bounds.graph import GraphNetwork, alpha
from verifiers.bounds.graph.backsub import graph_bounds
from verifiers.bounds.graph.ops.maxes import MaxOf
from verifiers.bounds.graph.ops.piecewise import PiecewiseLinear, clip
from verifiers.bounds.graph.ops.sshaped import SShaped
from verifiers.certify.checker import check_model, graph_lines, graph_net
from verifiers.components import OnnxComponent
from verifiers.model import load_model, ops_graph
from verifiers.model.evaluate import run_nodes
from verifiers.options import Options
from verifiers.result import Verdict
from verifiers.search import graph_bab
from verifiers.search.graph_beta import tighten
from verifiers.search.graph_cuts import prove_by_cuts
from verifiers.spec.property import Case, Conjunction, HalfSpace, Property
from verifiers.verify import verify

TOL = 1e-9  # relative: IR and bound evaluations differ by float64 rounding only


@pytest.fixture(autouse=True)
def _quiet_numpy():
    """As verify runs the engine: overflow is handled where it matters (it fails closed)."""
    with np.errstate(all="ignore"):
        yield


def random_box(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Thin, wide, degenerate (lo == hi), offset from 0 or far out, per dimension."""
    centre = np.where(rng.random(n) < 0.4, 0.0, rng.uniform(-3, 3, n))
    centre = np.where(
        rng.random(n) < 0.1, rng.choice([-1, 1], n) * 10 ** rng.uniform(2, 4, n), centre
    )
    width = rng.choice([0.0, 1e-10, 1e-6, 1e-3, 0.05, 1.0, 2.0, 6.0], n)
    if not np.any(width > 0):
        width[0] = 1.0
    return centre - width / 2, centre + width / 2


def samples(rng, lower, upper, n: int = 1500) -> np.ndarray:
    corners = rng.integers(0, 2, size=(64, len(lower)))
    inside = rng.random((n, len(lower)))
    return lower + (upper - lower) * np.concatenate([inside, corners, [np.full(len(lower), 0.5)]])


def ir_values(model, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor of the IR at x, flat (batch, n): the loader's semantics, not the engine's."""
    start = {model.graph.input_name: x.reshape(len(x), *model.graph.input_shape)}
    return {k: v.reshape(len(x), -1) for k, v in run_nodes(model.graph.nodes, start).items()}


def build(seed: int):
    d = random_dag(seed)
    data = to_bytes(d.model())
    model = load_model(data)
    return d, data, model, GraphNetwork.of(model.graph)


# --- the bound ops compute the model ---------------------------------------------------------


@pytest.mark.parametrize("seed", range(0, 400, 8))
def test_bound_ops_evaluate_as_the_ir_and_the_reference(seed: int) -> None:
    d, _, model, net = build(seed)
    x = samples(np.random.default_rng(seed), *random_box(np.random.default_rng(seed), net.n_inputs))
    ir = ir_values(model, x)
    for name, value in net.values(x).items():
        scale = 1.0 + np.abs(ir[name]).max(initial=0.0)
        assert np.abs(value - ir[name]).max(initial=0.0) <= TOL * scale, (seed, name)
    reference = d.reference(x)
    assert np.abs(net.evaluate(x) - reference).max() <= TOL * (1 + np.abs(reference).max())


# --- bounds enclose sampled values -----------------------------------------------------------


class Enclosure:
    """Sampled values of one network on one box, and the checks of bounds against them."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed + 77)
        _, _, model, self.net = build(seed)
        self.lower, self.upper = random_box(self.rng, self.net.n_inputs)
        self.x = samples(self.rng, self.lower, self.upper)
        self.values = ir_values(model, self.x)
        self.y = self.values[self.net.bound_output]
        self.rows = self.rng.normal(size=(3, self.y.shape[1]))
        self.box = (self.lower[None], self.upper[None])

    def boxes(self, bounds, where: np.ndarray, what: str) -> None:
        for name, (low, high) in bounds.boxes.items():
            v = self.values[name][where]
            tol = TOL * (1.0 + np.abs(v))
            assert np.all(v >= low[0] - tol) and np.all(v <= high[0] + tol), (what, name)

    def objective(self, lower: np.ndarray, where: np.ndarray, what: str) -> None:
        sampled = self.y[where] @ self.rows.T
        if len(sampled):
            tol = TOL * (1.0 + np.abs(sampled).max())
            assert np.all(lower[0] <= sampled.min(axis=0) + tol), what

    def everything(self, bounds, where: np.ndarray, what: str, splits=()) -> None:
        self.boxes(bounds, where, what)
        self.objective(bounds.objective_lower, where, what)
        best, _ = alpha.optimise(self.net, bounds, self.rows, None, None, 6, True)
        self.objective(best, where, what + " with slopes")
        if splits:
            best, _ = tighten(self.net, bounds, self.rows, [splits])
            self.objective(best, where, what + " with multipliers")


@pytest.mark.parametrize("seed", range(100))
def test_bounds_enclose_sampled_values(seed: int) -> None:
    e = Enclosure(seed)
    everywhere = np.ones(len(e.x), dtype=bool)
    plain = graph_bounds(e.net, *e.box, e.rows)
    e.everything(plain, everywhere, "plain")
    form = e.x @ plain.objective_coeffs[0].T + plain.objective_offset[0]
    objective = e.y @ e.rows.T
    assert np.all(objective >= form - TOL * (1 + np.abs(objective))), "the cut form"
    optimised = graph_bounds(e.net, *e.box, e.rows, tighten=alpha.intermediate(6))
    e.everything(optimised, everywhere, "optimised intermediate bounds")
    _element_splits(e, plain)
    _case_splits(e, plain)
    rhs = objective.min(axis=0) + np.abs(objective).max() * e.rng.choice([1e-2, 1e-7])
    known = {k: v for k, v in optimised.boxes.items() if k != e.net.input_name}
    groups, strict = np.arange(len(rhs)), np.zeros(len(rhs), dtype=bool)
    cut = (e.lower, e.upper)
    assert not prove_by_cuts(e.net, cut, e.rows, rhs, strict, groups, known), "cuts"


def _element_splits(e: Enclosure, bounds) -> None:
    """Two nested splits of elements of non-linear ops' inputs (at a breakpoint or any point)."""
    nodes = [n for n in e.net.nodes if isinstance(n.op, PiecewiseLinear | SShaped)]
    known, where, splits = dict(bounds.boxes), np.ones(len(e.x), dtype=bool), ()
    for depth in range(2 if nodes else 0):
        node = nodes[int(e.rng.integers(len(nodes)))]
        name = node.inputs[0]
        low, high = (b.copy() for b in known[name])
        j = int(e.rng.integers(low.shape[1]))
        if not low[0, j] < high[0, j]:
            return
        at = float(low[0, j] + (high[0, j] - low[0, j]) * e.rng.random())
        inside = [p for p in getattr(node.op, "breakpoints", []) if low[0, j] < p < high[0, j]]
        at = float(inside[0]) if inside and e.rng.random() < 0.7 else at
        upper = bool(e.rng.random() < 0.5)
        if upper:
            low[0, j] = max(low[0, j], at)
        else:
            high[0, j] = min(high[0, j], at)
        z = e.values[name][:, j]
        where = where & ((z >= at) if upper else (z <= at))
        splits = (*splits, (name, j, at, upper))
        reuse = e.net.producer_index.get(name, -1) + 1
        split = graph_bounds(e.net, *e.box, e.rows, {**known, name: (low, high)}, reuse=reuse)
        if split.empty[0]:
            assert not where.any(), f"split {depth}: empty with samples inside"
            return
        e.everything(split, where, f"split {depth}", splits)
        known = dict(split.boxes)


def _case_splits(e: Enclosure, bounds) -> None:
    """The two parts of a Max/MaxPool/Min output's case split: candidate b is the max there,
    and the max is over the others."""
    nodes = [n for n in e.net.nodes if isinstance(n.op, MaxOf)]
    if not nodes:
        return
    node = nodes[int(e.rng.integers(len(nodes)))]
    op = node.op
    signed = [-e.values[n] if op.negate else e.values[n] for n in node.inputs]
    candidates = op._candidates(signed, -np.inf)  # (batch, n_out, K)
    j, b = int(e.rng.integers(candidates.shape[1])), int(e.rng.integers(candidates.shape[2]))
    top = candidates[:, j].max(axis=-1)
    others = np.delete(candidates[:, j], b, axis=-1).max(axis=-1, initial=-np.inf)
    only = np.ones((1, *candidates.shape[1:]), dtype=bool)
    without = only.copy()
    only[0, j], only[0, j, b], without[0, j, b] = False, True, False
    parts = [(only, candidates[:, j, b] >= top), (without, others >= top)]
    for allowed, where in parts:
        reuse = e.net.producer_index[node.output]
        split = graph_bounds(
            e.net, *e.box, e.rows, dict(bounds.boxes), {node.output: allowed}, reuse=reuse
        )
        if split.empty[0]:
            assert not where.any(), "case split: empty with samples inside"
            continue
        e.everything(split, where, "case split")


# --- verdicts near the decision boundary -----------------------------------------------------

SPLIT_THRESHOLDS = (
    "INPUT_SPLIT_MAX_DIMS", "MAXES_INPUT_DIMS", "SSHAPED_INPUT_DIMS", "SSHAPED_PLAIN_INPUT_DIMS"
)  # fmt: skip
COEFFS = [Fraction(1), Fraction(-1), Fraction(1, 2), Fraction(2), Fraction(-3, 10), Fraction(1, 3)]
# (seed, mode): graph models (residual joins, Max/MaxPool, S-shaped, Clip/PRelu, Softmax)
# where the search decides some sides within the timeout.
BOUNDARY_CASES = [
    (0, "element"),
    (1, "element"),
    (6, "element"),
    (8, "box"),
    (11, "box"),
    (22, "element"),
    (35, "element"),
    (15, "box"),
]


def unsafe_rows(rng, d: Dag, n_out: int):
    """Unsafe rows (Fractions), their conjunction per row and the shifted logit (Softmax
    models: pairwise rows c*y_win - c*y_j <= 0, moved by the bias of y_win; else random
    rows in 1-3 conjunctions, moved by their thresholds)."""
    if d.softmax:
        win = int(rng.integers(n_out))
        rows = []
        for j in (j for j in range(n_out) if j != win):
            row = [Fraction(0)] * n_out
            row[win], row[j] = Fraction(1), Fraction(-1)
            rows.append(row)
        groups = list(range(len(rows))) if rng.random() < 0.5 else [0] * len(rows)
        return rows, groups, win
    rows, groups = [], []
    for g in range(int(rng.integers(1, 4))):
        for _ in range(int(rng.integers(1, 3))):
            row = [Fraction(0)] * n_out
            for j in rng.choice(n_out, size=int(rng.integers(1, n_out + 1)), replace=False):
                row[int(j)] = COEFFS[int(rng.integers(len(COEFFS)))]
            rows.append(row)
            groups.append(g)
    return rows, groups, None


def margin_of(d: Dag, x, rows_f, rhs, groups) -> np.ndarray:
    """min over conjunctions of max over rows of row.y - rhs: the unsafe set is <= 0."""
    v = logits(d, x) @ rows_f.T - rhs
    groups = np.array(groups)
    return np.min([v[:, groups == g].max(axis=1) for g in np.unique(groups)], axis=0)


def attack(rng, d: Dag, net, lower, upper, rows_f, rhs, groups) -> np.ndarray:
    """Points of the box where the margin is small: samples, corners, a grid for 1-2 free
    dimensions, then sign-gradient descent (the engine's gradient only steers; the margin
    is the reference's)."""
    free = upper > lower
    points = [samples(rng, lower, upper, 2000)]
    if 0 < free.sum() <= 2:
        axes = [
            np.linspace(lower[i], upper[i], 401 if free.sum() == 1 else 61)
            for i in np.flatnonzero(free)
        ]
        grid = np.tile(lower, (np.prod([len(a) for a in axes]), 1))
        grid[:, free] = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, free.sum())
        points.append(grid)
    x = np.concatenate(points)
    best = x[np.argsort(margin_of(d, x, rows_f, rhs, groups))[:8]]
    for step in np.geomspace(0.2, 1e-7, 40):
        v = logits(d, best) @ rows_f.T - rhs
        group_of = np.array(groups)
        per = np.stack([np.where(group_of == g, v, -np.inf).max(1) for g in np.unique(group_of)], 1)
        g = np.unique(group_of)[per.argmin(1)]
        active = np.argmax(np.where(group_of[None] == g[:, None], v, -np.inf), axis=1)
        grad = net.gradient(best, rows_f[active])
        trial = np.clip(best - step * (upper - lower) * np.sign(grad), lower, upper)
        better = margin_of(d, trial, rows_f, rhs, groups) < margin_of(d, best, rows_f, rhs, groups)
        best = np.where(better[:, None], trial, best)
        x = np.concatenate([x, trial])
    return x


def boundary_property(lower, upper, rows, rhs, groups) -> Property:
    conjunctions: dict[int, list[HalfSpace]] = {}
    for row, g, b in zip(rows, groups, rhs, strict=True):
        conjunctions.setdefault(g, []).append(HalfSpace(tuple(row), Fraction(float(b))))
    box = [tuple(Fraction(float(v)) for v in bound) for bound in (lower, upper)]
    unsafe = tuple(Conjunction(tuple(h)) for h in conjunctions.values())
    return Property(len(lower), len(rows[0]), (Case(box[0], box[1], unsafe),))


def replays(data: bytes, shape, prop: Property, inputs) -> bool:
    """The counterexample lies in the box and onnxruntime's output in the unsafe set."""
    case = prop.cases[0]
    x = np.asarray(inputs, dtype=np.float32)
    if not case.contains_exactly(inputs) or not np.array_equal(x.astype(np.float64), inputs):
        return False
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": x.reshape(shape)})[0].ravel()
    return any(c.holds_exactly(y) for c in case.unsafe)


@pytest.mark.parametrize(("seed", "mode"), BOUNDARY_CASES)
def test_verdicts_near_the_boundary(seed: int, mode: str, monkeypatch) -> None:
    if mode == "element":
        for name in SPLIT_THRESHOLDS:
            monkeypatch.setattr(graph_bab, name, 0)
    rng = np.random.default_rng(seed + 10_000)
    d, data, model, net = build(seed)
    lower, upper = random_box(rng, net.n_inputs)
    rows, groups, win = unsafe_rows(rng, d, net.sizes[net.bound_output])
    rows_f = np.array([[float(c) for c in row] for row in rows])
    start = lower + (upper - lower) * rng.random(len(lower))
    rhs = np.zeros(len(rows)) if win is not None else (logits(d, start[None]) @ rows_f.T)[0]
    x = attack(rng, d, net, lower, upper, rows_f, rhs, groups)
    lowest = margin_of(d, x, rows_f, rhs, groups)
    least, scale, moved = float(lowest.min()), max(float(lowest.std()), 1e-6), 0.0
    combos = itertools.product([True, False], repeat=2)
    for run, (side, (bounds, intermediate)) in enumerate(zip((1, -1, 1, -1), combos, strict=True)):
        target = least + side * scale * 1e-4  # the unsafe set: margin <= target
        if win is not None:  # the logits move instead (rows against 0)
            moved += shift_logit(d, win, -target - moved)
            data = to_bytes(d.model())
        shifted = rhs if win is not None else rhs + target
        # Once, the same set as rows below lower thresholds widened by the option's margin.
        widen = scale * 1e-3 if run == 2 and win is None else 0.0
        prop = boundary_property(lower, upper, rows, shifted - widen, groups)
        shifted = shifted - widen + widen  # the widened thresholds (to a rounding)
        options = Options(
            timeout_s=0.4, optimise_bounds=bounds, optimise_intermediate=intermediate, margin=widen
        )
        result = verify(OnnxComponent(data), prop, options)
        assert result.verdict is not Verdict.ERROR, result.reason
        margins = margin_of(d, x, rows_f, shifted, groups)
        if result.verdict is Verdict.HOLDS:
            assert margins.min() > -TOL * (1 + np.abs(margins).max()), (side, options)
        if result.verdict is Verdict.VIOLATED:
            assert replays(data, d.input_shape, prop, result.counterexample.inputs)


# --- regressions -----------------------------------------------------------------------------

CLIP_BOUNDS = [(-1.0, 1.0), (1.0, -1.0), (0.5, 0.5), (None, 0.5), (-0.5, None), (2.0, 0.0)]


@pytest.mark.parametrize(("low", "high"), CLIP_BOUNDS)
def test_clip_is_bounded_in_onnx_order(low, high) -> None:
    """Clip is min(max(x, low), high): with low > high the constant high. The engine's op and
    the checker's node once took the bounds as breakpoints out of order (neither function)."""
    ir = ops_graph.Clip(low=low, high=high)
    engine = clip(low, high)
    checker = graph_net._clip(("x",), "y", low, high)
    rng = np.random.default_rng(0)
    for lo, hi in [(-3.0, 3.0), (-2.0, -0.5), (0.2, 0.7), (1.5, 4.0), (-0.5, 0.5)]:
        x = np.concatenate([np.linspace(lo, hi, 101), rng.uniform(lo, hi, 100)])
        f = ir.evaluate(x)
        assert np.array_equal(engine.evaluate(x[None])[0], f)
        box = (np.array([[lo]]), np.array([[hi]]))
        (low_box, high_box), lines = engine.interval([box]), engine.relax([box])
        assert np.all(low_box[0] <= f) and np.all(f <= high_box[0]), (lo, hi)
        assert np.all(lines.lower_slope[0] * x + lines.lower_icpt[0] <= f + 1e-12)
        assert np.all(f <= lines.upper_slope[0] * x + lines.upper_icpt[0] + 1e-12)
        (c_low, c_high), relax = graph_lines.piecewise(checker, (np.array([lo]), np.array([hi])))
        assert np.all(c_low[0] <= f) and np.all(f <= c_high[0]), (lo, hi)
        assert np.all(relax.lower[0][0] * x + relax.lower_icpt[0] <= f + 1e-12)
        assert np.all(f <= relax.upper[0][0] * x + relax.upper_icpt[0] + 1e-12)


def _clip_plus_x():
    """y = Clip(x, 1, 0) + x = x (the clip is the constant 0)."""
    nodes = [
        helper.make_node("Clip", ["x", "lo", "hi"], ["c"]),
        helper.make_node("Add", ["c", "x"], ["y"]),
    ]
    init = {"lo": np.float32(1.0), "hi": np.float32(0.0)}
    return to_bytes(make_model(nodes, input_shape=[1, 1], initializers=init, opset=13))


def _below(threshold: Fraction, lower=Fraction(-2), upper=Fraction(-1, 2)) -> Property:
    """Unsafe: y <= threshold, on x in [lower, upper]."""
    unsafe = (Conjunction((HalfSpace((Fraction(1),), threshold),)),)
    return Property(1, 1, (Case((lower,), (upper,), unsafe),))


def test_clip_with_min_above_max_neither_holds_nor_certifies() -> None:
    data = _clip_plus_x()
    false = _below(Fraction(-3, 2))  # met at x = -2: y = -2
    for intermediate in (True, False):
        result = verify(
            OnnxComponent(data), false, Options(timeout_s=5, optimise_intermediate=intermediate)
        )
        assert result.verdict is Verdict.VIOLATED
    # The certificate the old engine gave (one leaf proved by the root's bound), re-checked.
    true = _below(Fraction(-5, 2))
    proof = verify(OnnxComponent(data), true, Options(timeout_s=5, optimise_intermediate=False))
    assert proof.verdict is Verdict.HOLDS
    model = load_model(data)
    assert check_model(proof.certificate, model, true).valid
    forged = {**proof.certificate, "property_sha256": false.sha256()}
    assert not check_model(forged, model, false).valid


def _softmax_of_gap():
    """Logits (x + 0.6, 0): on x in [0, 0.1] class 0 wins, its outputs 0.29-0.34 ahead."""
    nodes = [
        helper.make_node("Gemm", ["x", "W", "b"], ["z"], transB=1),
        helper.make_node("Softmax", ["z"], ["y"], axis=-1),
    ]
    init = {"W": np.array([[1.0], [0.0]]), "b": np.array([0.6, 0.0])}
    return to_bytes(make_model(nodes, input_shape=[1, 1], initializers=init))


@pytest.mark.parametrize("margin", [0.0, 1e-9, 0.5])
def test_softmax_is_stripped_only_without_a_margin(margin: float) -> None:
    """A margin widens y_0 - y_1 <= 0 to y_0 - y_1 <= margin, which the logits' order does
    not decide: with margin 0.5 every output is unsafe here, and it once "held"."""
    data = _softmax_of_gap()
    unsafe = (Conjunction((HalfSpace((Fraction(1), Fraction(-1)), Fraction(0)),)),)
    prop = Property(1, 2, (Case((Fraction(0),), (Fraction(1, 10),), unsafe),))
    options = Options(timeout_s=5, margin=margin, optimise_intermediate=False)
    result = verify(OnnxComponent(data), prop, options)
    if margin == 0.0:
        assert result.verdict is Verdict.HOLDS
        return
    assert result.verdict is Verdict.ERROR and "margin" in result.reason
    # A certificate of the margin-free proof, relabelled with the margin, is rejected.
    proof = verify(OnnxComponent(data), prop, options.overlay(margin=0.0))
    report = check_model({**proof.certificate, "margin": margin}, load_model(data), prop)
    assert not report.valid and "Softmax" in report.message
