"""Optimised lower slopes (alpha-CROWN) for the objective bound of the graph engine.

The lower line of an unstable ReLU-family element (a convex PiecewiseLinear with one
breakpoint at 0 and no intercepts: Relu, LeakyRelu with slope <= 1, PRelu likewise) may be
s*x for ANY s between its two pieces' slopes: f(x) - s*x >= 0 on both sides of 0 in exact
arithmetic, whatever float64 s is. Each such element gets one s per objective row, chosen by
projected gradient ascent (Adam) on the bound, which back-substitution computes soundly for
every choice (the slack covers rounding with these very numbers): the optimiser's floats
are only a proposal, and each row keeps the largest sound bound computed.

The gradient is reverse mode by hand over the back-substitution. The bound is
  V = sum_x c_input . x* + const,
and walking the back-substitution backwards (forwards through the DAG), the derivative of V
in the coefficients met at a tensor t is A_t, the value at t of the linear network in which
every op is replaced by the line back-substitution took for it (the lower line where the
coefficient is positive, the upper one where negative), evaluated at the minimising corner
x* = A_input, one evaluation per objective row. The derivative in the slope s_j of element
j of a relaxed ReLU is then  max(C_j, 0) * A_z[j]  (C the coefficient met at its output,
z its input).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from verifiers.bounds.graph.backsub import GraphBounds, back_substitute
from verifiers.bounds.graph.network import GraphNetwork
from verifiers.bounds.graph.ops.base import Back, Lines
from verifiers.bounds.graph.ops.linear import Alias, LinearRelaxed
from verifiers.bounds.graph.ops.maxes import MaxRelaxed
from verifiers.bounds.graph.ops.piecewise import PiecewiseLinear
from verifiers.bounds.graph.ops.sshaped import SShaped
from verifiers.bounds.rounding import UNIT_ROUNDOFF, gamma

STEPS = 16
LEARNING_RATE = 0.25
BETAS = (0.9, 0.999)


def relu_like(op) -> bool:
    """Convex, one breakpoint at 0, both pieces through the origin."""
    if not isinstance(op, PiecewiseLinear) or op.breakpoints.tolist() != [0.0]:
        return False
    return bool(np.all(op.icpts == 0.0) and np.all(op.slopes[0] <= op.slopes[1]))


@dataclass(frozen=True, eq=False)
class SlopedLines:
    """Lines with their own slopes and intercepts per objective row, all (batch, m, n):
    lower_slope * x + lower_icpt <= f(x) <= upper_slope * x + upper_icpt on the input box."""

    lower_slope: np.ndarray
    lower_icpt: np.ndarray
    upper_slope: np.ndarray
    upper_icpt: np.ndarray
    magnitude: np.ndarray  # (batch, n)

    def back(self, coeffs: np.ndarray) -> Back:
        pos, neg = np.maximum(coeffs, 0.0), np.minimum(coeffs, 0.0)
        new = pos * self.lower_slope + neg * self.upper_slope
        const = (pos * self.lower_icpt).sum(axis=-1) + (neg * self.upper_icpt).sum(axis=-1)
        # As Lines.back: each product rounds once, the intercepts' sums within gamma(n).
        steep = np.maximum(np.abs(self.lower_slope), np.abs(self.upper_slope))
        icpt = np.maximum(np.abs(self.lower_icpt), np.abs(self.upper_icpt))
        per_unit = 2.0 * UNIT_ROUNDOFF * steep * self.magnitude[:, None, :]
        per_unit = per_unit + gamma(coeffs.shape[-1] + 1) * icpt
        slack = (np.abs(coeffs) * per_unit).sum(axis=-1)
        return [new], const, slack


@dataclass
class Slopes:
    """The free parameters, keyed (tensor, kind), each (batch, m, n) with its range:
    kind "slope" is a ReLU-family lower slope, "low"/"high" an S-shaped op's lower/upper
    tangent point. A range of one value (low == high) keeps an element's line fixed."""

    values: dict[tuple[str, str], np.ndarray]
    low: dict[tuple[str, str], np.ndarray]  # (batch, 1, n)
    high: dict[tuple[str, str], np.ndarray]


def free_slopes(
    net: GraphNetwork,
    bounds: GraphBounds,
    m: int,
    warm: list[dict] | None = None,
    tangents: bool = True,
) -> Slopes:
    """Start: CROWN's lines, or a parent region's parameters where it has them.
    `tangents`: S-shaped ops' tangent points are free too (else their lines stay CROWN's)."""
    slopes = Slopes({}, {}, {})
    for node in net.nodes:
        relaxed = bounds.relaxed.get(node.output)
        if not isinstance(relaxed, Lines):
            continue
        if relu_like(node.op):
            unstable = node.op.unstable(bounds.boxes[node.inputs[0]])
            s0 = np.broadcast_to(node.op.slopes[0], unstable.shape)
            s1 = np.broadcast_to(node.op.slopes[1], unstable.shape)
            # Stable elements keep their exact line: a range of one slope.
            ranges = {"slope": (unstable, s0, s1, relaxed.lower_slope)}
        elif isinstance(node.op, SShaped) and tangents:
            ranges = _tangent_ranges(node.op, bounds.boxes[node.inputs[0]])
        else:
            continue
        for kind, (free, low, high, start) in ranges.items():
            if free.any():
                key = (node.output, kind)
                slopes.low[key] = np.where(free, low, start)[:, None, :]
                slopes.high[key] = np.where(free, high, start)[:, None, :]
                slopes.values[key] = _start(start, m, key, warm, slopes)
    return slopes


def _tangent_ranges(op: SShaped, box) -> dict:
    """Lower tangent points in [l, min(u, 0)] where l < 0, upper in [max(l, 0), u] where
    u > 0 (SShaped.tangent_lines); starts: the midpoint (convex or concave) or the point
    CROWN's pinned line uses (mixed)."""
    lo, hi = box
    middle = 0.5 * lo + 0.5 * hi
    with np.errstate(all="ignore"):
        low_start = op._bisect(np.minimum(lo, 0.0), np.zeros_like(lo), hi, lower=True)
        high_start = op._bisect(np.zeros_like(hi), np.maximum(hi, 0.0), lo, lower=False)
    low_start = np.where(hi <= 0.0, middle, low_start)
    high_start = np.where(lo >= 0.0, middle, high_start)
    finite = np.isfinite(lo) & np.isfinite(hi) & (lo < hi)
    return {
        "low": (finite & (lo < 0.0), lo, np.minimum(hi, 0.0), np.nan_to_num(low_start)),
        "high": (finite & (hi > 0.0), np.maximum(lo, 0.0), hi, np.nan_to_num(high_start)),
    }


def _start(start, m: int, key, warm: list[dict] | None, slopes: Slopes) -> np.ndarray:
    values = np.repeat(start[:, None, :], m, axis=1)
    for i, parent in enumerate(warm or []):
        previous = (parent or {}).get(key)
        if previous is not None and previous.shape == values.shape[1:]:
            values[i] = previous
    return np.clip(np.nan_to_num(values), slopes.low[key], slopes.high[key])


def sloped(net: GraphNetwork, bounds: GraphBounds, slopes: Slopes) -> GraphBounds:
    """The bounds with the optimised ops' relaxations replaced by the parameters' lines."""
    relaxed = dict(bounds.relaxed)
    for node in net.nodes:
        if (node.output, "slope") in slopes.values:
            relaxed[node.output] = _relu_lines(bounds, node, slopes)
        elif (node.output, "low") in slopes.values or (node.output, "high") in slopes.values:
            relaxed[node.output] = _tangent_lines(bounds, node, slopes)
    return replace(bounds, relaxed=relaxed, node_coeffs={})


def _relu_lines(bounds: GraphBounds, node, slopes: Slopes) -> SlopedLines:
    lines = bounds.relaxed[node.output]
    s = slopes.values[(node.output, "slope")]
    upper = [np.broadcast_to(a[:, None, :], s.shape) for a in (lines.upper_slope, lines.upper_icpt)]
    return SlopedLines(s, np.zeros_like(s), *upper, lines.magnitude)


def _tangent_lines(bounds: GraphBounds, node, slopes: Slopes) -> SlopedLines:
    """Tangent lines at the parameters where free, CROWN's lines elsewhere; a non-finite
    line falls back to CROWN's (itself guarded to constant lines)."""
    lines = bounds.relaxed[node.output]
    lo, hi = (b[:, None, :] for b in bounds.boxes[node.inputs[0]])
    crown = [a[:, None, :] for a in (lines.lower_slope, lines.lower_icpt)]
    crown += [a[:, None, :] for a in (lines.upper_slope, lines.upper_icpt)]
    d_low = slopes.values.get((node.output, "low"), lo)
    d_high = slopes.values.get((node.output, "high"), hi)
    with np.errstate(all="ignore"):
        (ls, li), (us, ui) = node.op.tangent_lines(lo, hi, d_low, d_high)
    free_low = (lo < 0.0) & np.isfinite(ls) & np.isfinite(li) & ((node.output, "low") in slopes.low)
    free_high = (hi > 0.0) & np.isfinite(us) & np.isfinite(ui)
    free_high &= (node.output, "high") in slopes.low
    if (node.output, "low") in slopes.low:
        free_low &= slopes.high[(node.output, "low")] > slopes.low[(node.output, "low")]
    if (node.output, "high") in slopes.low:
        free_high &= slopes.high[(node.output, "high")] > slopes.low[(node.output, "high")]
    shape = np.broadcast_shapes(np.shape(d_low), np.shape(d_high), crown[0].shape)
    pick = lambda free, a, b: np.broadcast_to(np.where(free, a, b), shape)  # noqa: E731
    return SlopedLines(
        pick(free_low, ls, crown[0]),
        pick(free_low, li, crown[1]),
        pick(free_high, us, crown[2]),
        pick(free_high, ui, crown[3]),
        lines.magnitude,
    )


def optimise(
    net: GraphNetwork,
    bounds: GraphBounds,
    rows: np.ndarray,
    deadline: float | None = None,
    warm: list[dict] | None = None,
    steps: int = STEPS,
    tangents: bool = True,
    target: str | None = None,
    plain: np.ndarray | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Per region and row (batch, m): the best sound lower bound of rows . target (the
    bounded output by default) over the slopes tried (never below `plain`, the plain bound:
    `bounds.objective_lower` by default), and per region the slopes of that bound
    {tensor: (m, n)} (float32: a warm start, only a proposal). The slopes are those of the
    ops upstream of the target that `bounds` has relaxed."""
    batch = bounds.boxes[net.input_name][0].shape[0]
    rows = np.array(np.broadcast_to(rows, (batch, *rows.shape[-2:])), dtype=np.float64)
    m = rows.shape[1]
    target = net.bound_output if target is None else target
    best = (bounds.objective_lower if plain is None else plain).copy()
    slopes = free_slopes(net, bounds, m, warm, tangents)
    if not slopes.values:
        return best, [{} for _ in range(batch)]
    chosen = {name: s.copy() for name, s in slopes.values.items()}
    moments = {name: (np.zeros_like(s), np.zeros_like(s)) for name, s in slopes.values.items()}
    last_step_s = 0.0
    for step in range(1, steps + 1):
        started = time.monotonic()
        # A step on a large batch can take a second: none starts that would end past it.
        if deadline is not None and started + last_step_s > deadline:
            break
        trial = sloped(net, bounds, slopes)
        record: dict[str, np.ndarray] = {}
        with np.errstate(invalid="ignore", over="ignore"):
            value, _, corner = back_substitute(net, trial, target, rows, record)
        better = np.nan_to_num(value, nan=-np.inf) > best
        for name, s in slopes.values.items():
            chosen[name] = np.where(better[:, :, None], s, chosen[name])
        best = np.where(better, value, best)
        if step == steps:
            break
        grads = _gradients(net, trial, record, corner, slopes, target)
        _adam(slopes, grads, moments, step)
        last_step_s = time.monotonic() - started
    found: list[dict] = [{} for _ in range(batch)]
    for name, s in chosen.items():
        for i in range(batch):
            found[i][name] = s[i].astype(np.float32)
    return best, found


def _adam(slopes: Slopes, grads: dict[str, np.ndarray], moments: dict, step: int) -> None:
    """One projected Adam ascent step on every slope."""
    b1, b2 = BETAS
    for name, g in grads.items():
        first, second = moments[name]
        first[...] = b1 * first + (1 - b1) * g
        second[...] = b2 * second + (1 - b2) * g * g
        size = first / (1 - b1**step) / (np.sqrt(second / (1 - b2**step)) + 1e-12)
        scale = slopes.high[name] - slopes.low[name]  # 1 for ReLU: steps across the range
        moved = slopes.values[name] + LEARNING_RATE * scale * size
        slopes.values[name] = np.clip(moved, slopes.low[name], slopes.high[name])


def _gradients(
    net: GraphNetwork,
    trial: GraphBounds,
    record: dict[str, np.ndarray],
    corner: np.ndarray,
    slopes: Slopes,
    target: str | None = None,
) -> dict:
    """dV/dp for every free parameter, from the adjoints A_t (see the module's docstring)."""
    adjoint = adjoints(net, trial, record, corner, target)
    grads = {}
    for node in net.nodes:
        coeffs = record.get(node.output)
        for kind in ("slope", "low", "high"):
            key = (node.output, kind)
            if key not in slopes.values:
                continue
            if coeffs is None:
                grads[key] = np.zeros_like(slopes.values[key])
                continue
            x = adjoint[node.inputs[0]]
            if kind == "slope":
                grad = np.maximum(coeffs, 0.0) * x
            else:
                grad = _tangent_gradient(node.op, trial, node, kind, slopes.values[key], x)
                grad = grad * (
                    np.maximum(coeffs, 0.0) if kind == "low" else np.minimum(coeffs, 0.0)
                )
            grads[key] = np.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
    return grads


def _tangent_gradient(op: SShaped, trial: GraphBounds, node, kind: str, d, x) -> np.ndarray:
    """d/dd of the tangent line's value at x: f''(d) (x - d), or f''(d) (x - far) where the
    line is pinned at the far end (the intercept of SShaped.tangent_lines is the smaller,
    resp. larger, of the two)."""
    lo, hi = (b[:, None, :] for b in trial.boxes[node.inputs[0]])
    far = hi if kind == "low" else lo
    with np.errstate(all="ignore"):
        slope = op.derivative(d)
        tangent = op.evaluate(d) - slope * d
        pinned = op.evaluate(far) - slope * far
        at_far = pinned < tangent if kind == "low" else pinned > tangent
        return op.second_derivative(d) * (x - np.where(at_far, far, d))


def adjoints(
    net: GraphNetwork,
    bounds: GraphBounds,
    record: dict[str, np.ndarray],
    corner: np.ndarray,
    target: str | None = None,
) -> dict[str, np.ndarray]:
    """A_t (batch, m, n_t) for every tensor up to the target (the bounded output by
    default): the chosen lines' network evaluated at the corner, per row. `record`: the
    coefficients met at each non-linear op's output in the back-substitution (their signs
    pick the lines)."""
    values = {net.input_name: corner}
    stop = net.producer_index[net.bound_output if target is None else target]
    for node in net.nodes[: stop + 1]:
        ins = [values[name] for name in node.inputs]
        relaxed = bounds.relaxed[node.output]
        coeffs = record.get(node.output)
        values[node.output] = _line_value(relaxed, ins, coeffs)
    return values


def _line_value(relaxed, ins: list[np.ndarray], coeffs: np.ndarray | None) -> np.ndarray:
    """The value of the line back-substitution used for an op, at its inputs' values."""
    if isinstance(relaxed, Alias):
        return ins[0]
    if isinstance(relaxed, LinearRelaxed):
        return relaxed.op.evaluate(*ins)
    if coeffs is None:  # never reached by the walk: no line was used, any value will do
        coeffs = np.zeros((*ins[0].shape[:2], _out_size(relaxed, ins)))
    if isinstance(relaxed, SlopedLines):
        low = relaxed.lower_slope * ins[0] + relaxed.lower_icpt
        high = relaxed.upper_slope * ins[0] + relaxed.upper_icpt
        return np.where(coeffs > 0.0, low, high)
    if isinstance(relaxed, Lines):
        x = ins[0]
        low = relaxed.lower_slope[:, None, :] * x + relaxed.lower_icpt[:, None, :]
        high = relaxed.upper_slope[:, None, :] * x + relaxed.upper_icpt[:, None, :]
        return np.where(coeffs > 0.0, low, high)
    if isinstance(relaxed, MaxRelaxed):
        return _max_line_value(relaxed, ins, coeffs)
    raise TypeError(f"no line value for {type(relaxed).__name__}")


def _out_size(relaxed, ins: list[np.ndarray]) -> int:
    if isinstance(relaxed, MaxRelaxed):
        return relaxed.a.shape[1]
    return ins[0].shape[-1]


def _max_line_value(relaxed: MaxRelaxed, ins: list[np.ndarray], coeffs: np.ndarray):
    """max: x_a where the coefficient is positive, chord * x_b + icpt where negative (the
    candidates of the lower and upper lines); min(x) = -max(-x) with the signs flipped."""
    op = relaxed.op
    sign = -1.0 if op.negate else 1.0
    xs = [sign * x for x in ins]
    on_a = _candidate_value(op, xs, relaxed.a)
    on_b = _candidate_value(op, xs, relaxed.b)
    low = relaxed.low_slope[:, None, :] * on_a + relaxed.low_icpt[:, None, :]
    high = relaxed.high_slope[:, None, :] * on_b + relaxed.high_icpt[:, None, :]
    return sign * np.where(sign * coeffs > 0.0, low, high)


def _candidate_value(op, xs: list[np.ndarray], j: np.ndarray) -> np.ndarray:
    """(batch, m, n_out): the value of candidate j (batch, n_out) of each output; 0 for the
    constant candidate (its line has slope 0)."""
    batch, m = xs[0].shape[:2]
    out = np.zeros((batch, m, j.shape[1]))
    start = 0
    for x, index in zip(xs, op.index, strict=True):
        k = index.shape[1]
        mine = (j >= start) & (j < start + k)
        column = np.clip(j - start, 0, k - 1)
        position = index[np.arange(j.shape[1])[None, :], column]  # (batch, n_out)
        mine &= position >= 0
        gathered = np.take_along_axis(x, np.maximum(position, 0)[:, None, :], axis=-1)
        out = np.where(mine[:, None, :], gathered, out)
        start += k
    return out


def intermediate(steps: int = STEPS, deadline: float | None = None):
    """A Tightener for graph_bounds (backsub.py): the marked entries of a tensor bounded
    with optimised slopes of the ops upstream of it (alpha-CROWN on intermediate bounds),
    rows +e_j and -e_j per entry; optimise keeps each row's best sound bound, and the
    caller intersects the result with the plain bounds, so nothing gets looser."""

    def tighten(net: GraphNetwork, bounds: GraphBounds, name: str, marked: np.ndarray):
        low, high = bounds.boxes[name]
        count = int(marked.sum(axis=1).max(initial=0))
        batch, n = low.shape
        entries = np.argsort(~marked, axis=1, kind="stable")[:, :count]
        valid = np.take_along_axis(marked, entries, axis=1)
        picks, slots = np.arange(batch)[:, None], np.arange(count)[None, :]
        rows = np.zeros((batch, 2 * count, n))
        rows[picks, slots, entries] = np.where(valid, 1.0, 0.0)
        rows[picks, count + slots, entries] = np.where(valid, -1.0, 0.0)
        plain = np.concatenate(
            [np.take_along_axis(low, entries, 1), -np.take_along_axis(high, entries, 1)], axis=1
        )
        with np.errstate(invalid="ignore", over="ignore"):
            value, _ = optimise(
                net, bounds, rows, deadline, None, steps, False, target=name, plain=plain
            )
        new_low, new_high = low.copy(), high.copy()
        np.put_along_axis(new_low, entries, np.where(valid, value[:, :count], -np.inf), axis=1)
        np.put_along_axis(new_high, entries, np.where(valid, -value[:, count:], np.inf), axis=1)
        return new_low, new_high

    return tighten
