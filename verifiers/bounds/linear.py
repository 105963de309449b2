"""Linear bound propagation (CROWN / DeepPoly back-substitution) on many boxes at once.

Each ReLU is replaced by two linear functions that enclose it on its pre-activation interval;
a linear objective is substituted backwards through the layers down to the input box, where
its minimum is read off the box corners. Intermediate pre-activation bounds come from the
same procedure, layer by layer, intersected with interval bounds.

Soundness in floating point: every backward step adds to a running `slack` a bound on what
float64 rounding (and the layers' own composition error) may have changed; the returned
lower bounds subtract it, so they are never above the exact real minimum.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from verifiers.bounds.alpha import Lines, SlopeSearch, optimise_slopes, times
from verifiers.bounds.interval import affine_interval, relu_interval
from verifiers.bounds.optimised import objective_bounds
from verifiers.bounds.rounding import UNIT_ROUNDOFF, gamma, widen_down
from verifiers.deadline import check
from verifiers.model.network import AffineLayer, PiecewiseLinearNetwork, ReluLayer


@dataclass
class _Backward:
    """A linear lower bound  objective >= coeffs . z + const - slack  for a layer's values z."""

    coeffs: np.ndarray  # (batch, m, n)
    const: np.ndarray  # (batch, m)
    slack: np.ndarray  # (batch, m)
    const_magnitude: np.ndarray  # (batch, m): sum of |terms| added into const

    def add_const(self, term: np.ndarray) -> None:
        self.const = self.const + term
        self.const_magnitude = self.const_magnitude + np.abs(term)


@dataclass(frozen=True)
class LinearBounds:
    """Pre-activation bounds of every affine layer, and the objective's input-level form."""

    layers: list[tuple[np.ndarray, np.ndarray]]
    objective_lower: np.ndarray | None  # (batch, m)
    objective_coeffs: np.ndarray | None  # (batch, m, n_inputs)
    objective_minimizer: np.ndarray | None  # (batch, m, n_inputs): box corner of the minimum
    # Per ReLU layer, the objective's coefficients on its outputs (batch, m, n): how much
    # each ReLU's relaxation weighs in the objective bound (for choosing ReLUs to split).
    relu_coeffs: list[np.ndarray] | None = None
    relaxations: list[_Relaxation] | None = None
    magnitudes: list[np.ndarray] | None = None
    # The objective rows' lower slopes per ReLU layer (batch, m, n), when optimised: a warm
    # start for the sub-regions in branch and bound.
    slopes: list[np.ndarray] | None = None
    betas: list[np.ndarray] | None = None  # and their split multipliers (beta-CROWN)


# A back-substitution runs over this many elements of (boxes, rows, neurons) at a time: over
# a whole batch of large arrays it spent more time allocating and streaming fresh memory than
# computing (ACAS Xu: ~40% less time than over batches of 150-370 boxes x 100 rows x 50).
CHUNK_ELEMENTS = 2**18


def _magnitude(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(lower), np.abs(upper))


def _dot_rows(stack: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(batch, m, n) . (batch, n) -> (batch, m): each box's rows times its vector, as one
    matrix-vector product per box (einsum's loops took three times as long). Any order of
    summation is covered by the rounding terms (gamma(n) bounds every order)."""
    return np.matmul(stack, vectors[:, :, None])[:, :, 0]


def _output_error(layer: AffineLayer, magnitude_in: np.ndarray) -> np.ndarray:
    """Per box and output of the layer, per unit |coefficient| on it: the error of
    fl(coeffs @ W) and fl(coeffs @ b), plus the layer's own composition error."""
    per_output = gamma(layer.n_out) * (magnitude_in @ np.abs(layer.weight).T + np.abs(layer.bias))
    return per_output + magnitude_in @ layer.weight_err.T + layer.bias_err


def _affine_back(state: _Backward, layer: AffineLayer, magnitude_in: np.ndarray) -> None:
    if layer.is_identity:
        return
    abs_coeffs = np.abs(state.coeffs)
    state.add_const(state.coeffs @ layer.bias)
    state.slack = state.slack + _dot_rows(abs_coeffs, _output_error(layer, magnitude_in))
    state.coeffs = times(state.coeffs, layer.weight)


@dataclass(frozen=True)
class _UnitRows:
    """Per box, the rows +e_j for some neurons j of a layer, then -e_j for the same: the
    objectives of a layer's bounds, kept as the neurons' indices (batch, count)."""

    neurons: np.ndarray
    width: int  # the layer's size

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.neurons.shape[0], 2 * self.neurons.shape[1], self.width)

    def __getitem__(self, boxes: slice) -> _UnitRows:
        return _UnitRows(self.neurons[boxes], self.width)

    def dense(self) -> np.ndarray:
        batch, count = self.neurons.shape
        rows = np.zeros(self.shape)
        slots, picks = np.arange(count)[None, :], np.arange(batch)[:, None]
        rows[picks, slots, self.neurons] = 1.0
        rows[picks, count + slots, self.neurons] = -1.0
        return rows

    def through(self, layer: AffineLayer, magnitude_in: np.ndarray) -> _Backward:
        """The rows back-substituted through `layer` (its outputs): what _affine_back makes
        of the dense rows, by picking entries instead of multiplying. A product with a unit
        vector rounds nothing: e_j . W is row j of W, e_j . b is b_j, and the slack
        |e_j| . error is error_j (other neurons' errors, even infinite, do not concern row j)."""
        if layer.is_identity:
            return _start(self.dense(), layer, magnitude_in)
        picks = np.arange(self.neurons.shape[0])[:, None]
        weight, bias = layer.weight[self.neurons], layer.bias[self.neurons]
        error = _output_error(layer, magnitude_in)[picks, self.neurons]
        const = np.concatenate([bias, -bias], axis=1)
        return _Backward(
            np.concatenate([weight, -weight], axis=1),
            const,
            np.concatenate([error, error], axis=1),
            np.abs(const),
        )


def relu_relaxation(
    layer: ReluLayer, lower: np.ndarray, upper: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slopes of the lower line (through 0), and slope + intercept of the upper line.

    Lower line: y >= lam * x with lam in [alpha, 1] (valid everywhere). Upper line: the chord
    over [l, u], its intercept pushed up until it is above both endpoints in float64, which
    makes it valid on the whole interval because the ReLU is convex.
    """
    alpha = layer.alpha
    active, inactive = lower >= 0.0, upper <= 0.0
    unstable = ~(active | inactive)
    width = np.where(unstable, upper - lower, 1.0)
    chord = np.where(unstable, (upper - alpha * lower) / width, 0.0)
    intercept = np.where(unstable, alpha * lower - chord * lower, 0.0)
    short_low = alpha * lower - (chord * lower + intercept)
    short_high = upper - (chord * upper + intercept)
    fix = np.maximum(np.maximum(short_low, short_high), 0.0)
    fix = fix + 4.0 * UNIT_ROUNDOFF * (np.abs(intercept) + chord * _magnitude(lower, upper))
    intercept = np.where(unstable, intercept + fix, 0.0)
    adaptive = np.where(upper > -lower, 1.0, alpha)
    lower_slope = np.where(active, 1.0, np.where(inactive, alpha, adaptive))
    upper_slope = np.where(active, 1.0, np.where(inactive, alpha, chord))
    return lower_slope, upper_slope, intercept


@dataclass(frozen=True)
class _Relaxation:
    """A ReLU layer's enclosing lines on its pre-activation bounds, ready for back-substitution.

    The lower slope may differ per objective row (batch, m, n) once optimised (bounds/alpha.py):
    any slope in [alpha, 1] is valid on an unstable ReLU, and `slack` covers the steepest."""

    lower_slope: np.ndarray  # (batch, 1 or m, n)
    slope_gap: np.ndarray  # upper slope - lower slope
    intercept: np.ndarray  # of the upper line
    slack: np.ndarray  # rounding of one backward step, per unit |coefficient|
    upper_slope: np.ndarray  # (batch, 1, n)
    floor: float  # the LeakyRelu slope: the smallest valid lower slope
    slack_any: np.ndarray  # `slack` for any lower slopes in [alpha, 1]

    @classmethod
    def of(cls, layer: ReluLayer, lower: np.ndarray, upper: np.ndarray) -> _Relaxation:
        lower_slope, upper_slope, intercept = relu_relaxation(layer, lower, upper)
        magnitude = _magnitude(lower, upper)
        steepest = np.maximum(np.abs(lower_slope), np.abs(upper_slope)) * magnitude
        # An unstable ReLU's lower slope may be optimised anywhere in [alpha, 1].
        unstable = (lower < 0.0) & (upper > 0.0)
        steepest_any = np.where(
            unstable, np.maximum(np.abs(upper_slope), 1.0) * magnitude, steepest
        )
        return cls(
            lower_slope[:, None, :],
            (upper_slope - lower_slope)[:, None, :],
            intercept,
            _step_slack(steepest, intercept),
            upper_slope[:, None, :],
            float(layer.alpha),
            _step_slack(steepest_any, intercept),
        )

    def with_lower(self, slopes: np.ndarray) -> _Relaxation:
        """The same lines with these lower slopes (batch, m, n), each in [alpha, 1] on the
        unstable ReLUs and equal to the default on the stable ones (alpha.optimise_slopes)."""
        return replace(
            self, lower_slope=slopes, slope_gap=self.upper_slope - slopes, slack=self.slack_any
        )

    def lines(self, sign: np.ndarray | None = None) -> Lines:
        """For the optimiser; `sign` (batch, n): the layer's split constraints, if any."""
        unstable = self.slope_gap != 0.0
        split = None if sign is None else sign[:, None, :]
        return Lines(
            self.lower_slope, self.upper_slope, self.intercept, self.floor, unstable, split
        )

    def take(self, boxes: slice) -> _Relaxation:
        """These boxes of the batch, as a batch."""
        return _Relaxation(
            *(
                getattr(self, f.name)[boxes] if f.name != "floor" else self.floor
                for f in fields(self)
            )
        )


def _step_slack(steepest: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """Rounding of one backward step through a ReLU layer, per unit |coefficient|: the new
    coefficients c*lower + min(c, 0)*gap (the gap, both products and the sum each round by
    one ulp of terms at most 2 * steepest * |c|: 8 ulps, padded to 10), and the intercepts'
    dot product."""
    return 10.0 * UNIT_ROUNDOFF * steepest + gamma(intercept.shape[-1]) * np.abs(intercept)


def _relu_back(state: _Backward, relaxation: _Relaxation) -> None:
    neg = np.minimum(state.coeffs, 0.0)
    state.add_const(_dot_rows(neg, relaxation.intercept))
    state.slack = state.slack + _dot_rows(np.abs(state.coeffs), relaxation.slack)
    # pos * lower + neg * upper == coeffs * lower + neg * (upper - lower), computed in place
    # (the same operations in the same order: fresh arrays only cost allocation).
    coeffs = state.coeffs * relaxation.lower_slope
    np.multiply(neg, relaxation.slope_gap, out=neg)
    state.coeffs = np.add(coeffs, neg, out=coeffs)


def _read_off(
    state: _Backward, lower: np.ndarray, upper: np.ndarray, depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """The minimum over the input box, and the corner attaining it."""
    pos, neg = np.maximum(state.coeffs, 0.0), np.minimum(state.coeffs, 0.0)
    value = _dot_rows(pos, lower) + _dot_rows(neg, upper)
    value = value + state.const
    magnitude = _magnitude(lower, upper)
    slack = state.slack * (1.0 + 1e-6)
    slack = slack + gamma(lower.shape[-1]) * _dot_rows(np.abs(state.coeffs), magnitude)
    slack = slack + gamma(2 * depth + 2) * state.const_magnitude
    corner = np.where(state.coeffs >= 0.0, lower[:, None, :], upper[:, None, :])
    # A bound whose every term vanished exactly (through inactive ReLUs) rounded nothing: it
    # stays exact, so that a strict unsafe half-space at exactly 0 can be refuted.
    exact = (slack == 0.0) & ~np.any(state.coeffs != 0.0, axis=2)
    return np.where(exact, value, widen_down(value, slack)), corner


def _back_substitute(
    network: PiecewiseLinearNetwork,
    coeffs: np.ndarray | _UnitRows,
    last_affine: int,
    relaxations: list[_Relaxation],
    magnitudes: list[np.ndarray],
    box: tuple[np.ndarray, np.ndarray],
    relu_coeffs: list[np.ndarray] | None = None,
    deadline: float | None = None,
    split_terms: list[np.ndarray | None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower bounds of coeffs . (output of affine layer `last_affine`) over the boxes.
    `relu_coeffs`, if given, receives the coefficients met at each ReLU layer, first to last.
    Raises OutOfTime (verifiers/deadline.py) once `deadline` has passed.

    `split_terms` (per ReLU layer, (batch, m, n) or None): beta-CROWN's terms beta * sign
    added to the coefficients on that layer's pre-activations z, where sign * z <= 0 holds on
    the region (its ReLU splits) and beta >= 0. Adding them can only lower the objective on
    the region, so the result bounds the objective there. Rounding the sum cannot spoil it:
    fl(c + beta * sign) - c has the sign of `sign` (rounding is monotone), so it is itself
    a valid multiplier times sign, exactly.

    The batch is taken a few boxes at a time (CHUNK_ELEMENTS). Each box's bounds are
    computed alone either way; only the order in which BLAS sums a dot product may differ
    with the chunk's size, and the slack covers any order."""
    batch, m = coeffs.shape[:2]
    widest = max(layer.n_in for layer in network.affine_layers[: last_affine + 1])
    step = max(1, CHUNK_ELEMENTS // (m * max(widest, coeffs.shape[2])))
    keep = relu_coeffs is not None
    layers = _Layers(network, last_affine, relaxations, magnitudes, split_terms, deadline, keep)
    parts = [
        layers.substitute(coeffs, box, slice(start, start + step))
        for start in range(0, batch, step)
    ]
    if keep:
        relu_coeffs[:0] = [np.concatenate(met) for met in zip(*(p[3] for p in parts), strict=True)]
    if len(parts) == 1:
        return parts[0][:3]
    value, coeffs, corner = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return value, coeffs, corner


@dataclass(frozen=True)
class _Layers:
    """What one back-substitution passes through, from affine layer `last` down."""

    network: PiecewiseLinearNetwork
    last: int
    relaxations: list[_Relaxation]
    magnitudes: list[np.ndarray]
    split_terms: list[np.ndarray | None] | None
    deadline: float | None
    keep_relu_coeffs: bool  # (else not kept: memory freed, and reused, at once)

    def substitute(self, rows: np.ndarray | _UnitRows, box, boxes: slice):
        """(value, coeffs, corner, the coefficients met per ReLU layer) of these boxes."""
        affine_layers = self.network.affine_layers
        relaxations = [r.take(boxes) for r in self.relaxations]
        magnitudes = [magnitude[boxes] for magnitude in self.magnitudes]
        terms = [None if t is None else t[boxes] for t in self.split_terms or []]
        state = _start(rows[boxes], affine_layers[self.last], magnitudes[self.last])
        met: list[np.ndarray] = []
        for k in range(self.last, -1, -1):
            check(self.deadline)
            if not (isinstance(rows, _UnitRows) and k == self.last):  # past their layer
                _affine_back(state, affine_layers[k], magnitudes[k])
            if k > 0:
                if self.keep_relu_coeffs:
                    met.insert(0, state.coeffs)
                _relu_back(state, relaxations[k - 1])
                if terms and terms[k - 1] is not None:
                    state.coeffs = state.coeffs + terms[k - 1]
        value, corner = _read_off(state, box[0][boxes], box[1][boxes], self.last + 1)
        return value, state.coeffs, corner, met


def _start(rows: np.ndarray | _UnitRows, layer: AffineLayer, magnitude_in) -> _Backward:
    """The back-substitution's state before its first layer (past it, for unit rows)."""
    if isinstance(rows, _UnitRows):
        return rows.through(layer, magnitude_in)
    shape = rows.shape[:2]
    return _Backward(rows, np.zeros(shape), np.zeros(shape), np.zeros(shape))


def linear_bounds(
    network: PiecewiseLinearNetwork,
    lower: np.ndarray,
    upper: np.ndarray,
    objective: np.ndarray | None = None,
    known: list[tuple[np.ndarray, np.ndarray]] | None = None,
    slopes: SlopeSearch | None = None,
    deadline: float | None = None,
    refine: bool = True,
) -> LinearBounds:
    """Bounds over boxes (batch, n_inputs); `objective` (m, n_outputs) rows are minimised.

    `known`: pre-activation bounds (batch, n) per affine layer already valid on each box, e.g.
    those of an enclosing box in branch and bound. They are intersected in, and a neuron they
    show stable needs no back-substitution of its own: only unstable ones can tighten.
    `slopes`: optimise the unstable ReLUs' lower slopes (bounds/alpha.py) for the objective
    rows (and the intermediate bounds); each row keeps the better of the sound CROWN bound and
    the sound bound of its optimised slopes. Raises OutOfTime once `deadline` has passed.
    `refine=False` keeps the `known` bounds of the hidden and output layers (intersected with
    interval bounds) instead of back-substituting for them: beta-CROWN's branch and bound,
    where a split's constraint reaches the objective through its multiplier."""
    affine_layers, relu_layers = network.affine_layers, network.relu_layers
    pre_bounds: list[tuple[np.ndarray, np.ndarray]] = []
    relaxations: list[_Relaxation] = []
    magnitudes = [_magnitude(lower, upper)]
    post = (lower, upper)
    context = _Context(network, relaxations, magnitudes, (lower, upper), deadline)
    inner = slopes if slopes is not None and slopes.intermediate else None
    for k, layer in enumerate(affine_layers):
        low, high = affine_interval(layer, *post)
        if known is not None:
            low, high = np.maximum(low, known[k][0]), np.minimum(high, known[k][1])
        if k > 0 and (refine or known is None):
            last = k == len(affine_layers) - 1
            low, high = _refine(context, k, low, high, last, inner)
        pre_bounds.append((low, high))
        if k < len(relu_layers):
            relaxations.append(_Relaxation.of(relu_layers[k], low, high))
            post = relu_interval(relu_layers[k], low, high)
            magnitudes.append(_magnitude(*post))
    if objective is None:
        return LinearBounds(pre_bounds, None, None, None, None, relaxations, magnitudes)
    rows = (
        np.broadcast_to(objective, (lower.shape[0], *objective.shape[-2:]))
        if objective.ndim == 2
        else objective
    )
    rows = np.array(rows, dtype=np.float64)
    value, coeffs, corner, relu_coeffs, chosen, betas = objective_bounds(context, rows, slopes)
    return LinearBounds(
        pre_bounds, value, coeffs, corner, relu_coeffs, relaxations, magnitudes, chosen, betas
    )


@dataclass(frozen=True)
class _Context:
    """What back-substitutions over one batch share."""

    network: PiecewiseLinearNetwork
    relaxations: list[_Relaxation]
    magnitudes: list[np.ndarray]
    box: tuple[np.ndarray, np.ndarray]
    deadline: float | None

    def bound(self, rows, last, slopes=None, relu_coeffs=None, terms=None):
        """The sound back-substitution of rows (batch, m, n) from affine layer `last`, with
        CROWN's lower slopes or the given per-row ones, and split terms (beta * sign)."""
        relaxations = self.relaxations[:last]
        if slopes is not None:
            relaxations = [r.with_lower(s) for r, s in zip(relaxations, slopes, strict=True)]
        return _back_substitute(
            self.network,
            rows,
            last,
            relaxations,
            self.magnitudes,
            self.box,
            relu_coeffs,
            self.deadline,
            terms,
        )

    def optimise(self, rows, last, iterations: int, search: SlopeSearch | None = None):
        """(slopes, betas) per ReLU layer below `last`; betas only with `search.signs`."""
        signs = search.signs if search is not None and search.signs is not None else None
        relaxations = self.relaxations[:last]
        lines = [r.lines(None if signs is None else signs[k]) for k, r in enumerate(relaxations)]
        return optimise_slopes(
            self.network,
            rows,
            last,
            lines,
            self.box,
            iterations,
            None if search is None else search.start,
            self.deadline,
            None if search is None else search.start_betas,
        )


def layer_row_bounds(
    network: PiecewiseLinearNetwork,
    bounds: LinearBounds,
    i: int,
    box: tuple[np.ndarray, np.ndarray],
    layer: int,
    rows: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Lower bounds over box i of the batch of rows (m, n) . (output of affine layer
    `layer`), reusing that batch's relaxations: (lower bounds (m,), input coefficients (m, n))."""
    relaxations = [r.take(slice(i, i + 1)) for r in bounds.relaxations]
    magnitudes = [m[i : i + 1] for m in bounds.magnitudes]
    value, coeffs, _ = _back_substitute(
        network, rows[None, :, :], layer, relaxations, magnitudes, (box[0][None], box[1][None])
    )
    return value[0], coeffs[0]


def _refine(context: _Context, k, low, high, every_neuron: bool, search: SlopeSearch | None):
    """Tighten layer k's bounds by back-substitution, for the neurons that are unstable on
    some box (every neuron for the output layer). Each box gets as many rows as the box with
    the most; the padding rows are other neurons of the layer, whose bounds stay valid.
    With `search`, each row's slopes are optimised too and the better sound bound kept."""
    n = low.shape[1]
    targets = np.ones_like(low, dtype=bool) if every_neuron else (low < 0.0) & (high > 0.0)
    count = int(targets.sum(axis=1).max())
    if count == 0:
        return low, high
    # Per box, the target neurons first (a stable sort keeps index order within each group).
    neurons = np.argsort(~targets, axis=1, kind="stable")[:, :count]
    rows = _UnitRows(neurons, n)
    value, _, _ = context.bound(rows, k)
    if search is not None and search.intermediate_iterations > 0:
        slopes, _ = context.optimise(rows.dense(), k, search.intermediate_iterations)
        tuned, _, _ = context.bound(rows, k, slopes)
        value = np.where(np.isfinite(tuned), np.maximum(value, tuned), value)
    refined_low = np.take_along_axis(low, neurons, axis=1)
    refined_high = np.take_along_axis(high, neurons, axis=1)
    low, high = low.copy(), high.copy()
    np.put_along_axis(low, neurons, np.maximum(refined_low, value[:, :count]), axis=1)
    np.put_along_axis(high, neurons, np.minimum(refined_high, -value[:, count:]), axis=1)
    return low, high
