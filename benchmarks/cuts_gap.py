"""Domain cuts from the bound itself, cut after cut: a diagnosis, not a verdict.

    python benchmarks/cuts_gap.py --net resnet2 --image 8 [--epsilon 0.05] [--cuts 30]
                                  [--aim min|centre|corner]
    python benchmarks/cuts_gap.py --net 784-256-256-256-256-10 --image 9 --epsilon 0.02

Per open row a.y - b of a digits(_graph) instance (run that benchmark once first), what
search/graph_cuts.py does at the root: CROWN's bound L(x) = c.x + d of the row proves it
where L > 0, so only P1 = box n {L <= 0} is left; bounded again over P1 (every
concretisation over the box and the cuts, bounds/graph/cuts.py; the box shrunk to P1's
bounding box), a new L2 valid on P1 gives P2 = P1 n {L2 <= 0}, and so on (plain CROWN, no
intermediate bounds optimised). Printed per cut k: each row's sound bound over P_k (inf:
proved), the unstable ReLUs, the box's mean width, the next cut's form at the box centre
+- its half-range over the box (negative at the centre: the cut removes less than a
corner), the share of uniform samples of the box left in P_k, CPU seconds. `--aim`: the
next cut's form from slopes optimised (20 steps) for L at the box centre or at the dual's
minimising corner instead of the bound's own form.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from verifiers.bounds.graph import backsub  # noqa: E402
from verifiers.bounds.graph.cuts import Cuts, cut_offset  # noqa: E402
from verifiers.search.graph_cuts import bounding_box  # noqa: E402

_READ_OFF = backsub._read_off


class Aim:
    """With a point set, the read-off returns each row's form at the point (and the point
    as the corner, so the slope optimiser maximises L(point)), keeping the best form: a cut
    aimed at that point, valid whatever the slopes; not a bound."""

    point: np.ndarray | None = None
    best: tuple | None = None  # value, c, offset


def _aimed_read_off(c, const, slack, box):
    if Aim.point is None:
        return _READ_OFF(c, const, slack, box)
    offset = const - slack - 4.0 * 2.0**-53 * (np.abs(const) + slack) - 1e-300
    value = np.einsum("bmn,bn->bm", c, Aim.point) + offset
    if Aim.best is None:
        Aim.best = (value, c.copy(), offset)
    else:
        better = np.nan_to_num(value, nan=-np.inf) > Aim.best[0]
        Aim.best = (
            np.where(better, value, Aim.best[0]),
            np.where(better[..., None], c, Aim.best[1]),
            np.where(better, offset, Aim.best[2]),
        )
    return value, c, np.broadcast_to(Aim.point[:, None, :], c.shape)


backsub._read_off = _aimed_read_off


def load(net_name: str, image: int, epsilon: float):
    from verifiers.model import load_model
    from verifiers.spec.vnnlib import parse_vnnlib

    results = Path(__file__).resolve().parent / "results"
    folder = results / ("digits" if net_name.startswith("784") else "digits_graph")
    prop = folder / f"{net_name}_img{image}_eps{epsilon}.vnnlib"
    if not prop.exists():
        raise SystemExit(f"{prop} is missing: run benchmarks/digits(_graph).py first")
    model = load_model(str(folder / f"{net_name}.onnx"))
    return model, parse_vnnlib(prop.read_text()).cases[0]


def unstable_count(net, bounds) -> np.ndarray:
    from verifiers.bounds.graph.ops.piecewise import PiecewiseLinear

    total = np.zeros(bounds.boxes[net.input_name][0].shape[0], dtype=int)
    for node in net.nodes:
        if isinstance(node.op, PiecewiseLinear):
            total = total + node.op.unstable(bounds.boxes[node.inputs[0]]).sum(axis=1)
    return total


def bound(net, lower, upper, objective, cuts: Cuts, aim: str):
    """Plain CROWN over box n cuts: the bounds, each domain's sound bound of its row, and
    the next cut's form (c, offset): the bound's own (aim "min"), or one of slopes
    optimised for L at the box centre ("centre") or at the dual's minimising corner
    ("corner"), on the same intermediate bounds."""
    from dataclasses import replace

    from verifiers.bounds.graph import alpha

    bounds = backsub.graph_bounds(net, lower, upper, objective, cuts=cuts)
    value = bounds.objective_lower[:, 0]
    form = bounds.objective_coeffs[:, 0], bounds.objective_offset[:, 0]
    if aim != "min":
        Aim.best = None
        Aim.point = 0.5 * (lower + upper) if aim == "centre" else bounds.objective_minimizer[:, 0]
        plain = replace(bounds, cuts=None)
        start, _, _ = backsub.back_substitute(net, plain, net.bound_output, objective)
        alpha.optimise(net, plain, objective, None, None, 20, True, plain=start)
        Aim.point = None
        form = Aim.best[1][:, 0], Aim.best[2][:, 0]
    return bounds, value, form


def run(net, case, n_cuts: int, samples: int, aim: str) -> None:
    from fractions import Fraction

    polytopes = [p.outward_matrix(Fraction(0), None) for p in case.unsafe]
    rows = np.concatenate([a for a, _ in polytopes])
    rhs = np.concatenate([b for _, b in polytopes])
    lower, upper = case.lower[None], case.upper[None]
    rng = np.random.default_rng(0)
    points = lower + (upper - lower) * rng.random((samples, lower.size))
    scores = backsub.graph_bounds(net, lower, upper, rows).objective_lower[0] - rhs
    open_rows = np.flatnonzero(scores <= 0)
    print(f"root: rows {' '.join(f'{s:.2f}' for s in scores)}; open {list(open_rows)}")
    if len(open_rows) == 0:
        return
    batch, n = len(open_rows), lower.size
    objective = rows[open_rows][:, None, :]
    lo, hi = np.repeat(lower, batch, 0), np.repeat(upper, batch, 0)
    cuts = Cuts.none(batch, n)
    proved = np.zeros(batch, dtype=bool)
    started = time.process_time()
    for k in range(n_cuts + 1):
        if k > 0:
            lo, hi = bounding_box(lo, hi, cuts)
            proved |= np.any(lo > hi, axis=1)
        bounds, value, (c, offset) = bound(net, lo, hi, objective, cuts, aim)
        score = np.where(proved, np.inf, value - rhs[open_rows])
        proved |= score > 0
        live = ~proved
        d = cut_offset(offset, 0.0, rhs[open_rows])
        centre = 0.5 * (lower + upper)[0]
        span = np.abs(c) @ (upper - lower)[0] / 2
        inside = np.all(
            points @ cuts.normals.transpose(0, 2, 1) + cuts.offsets[:, None, :] <= 0, axis=2
        )
        print(
            f"cut {k:2d}: rows {' '.join(f'{s:7.3f}' for s in score)}  unstable "
            f"{' '.join(str(u) for u in unstable_count(net, bounds)[live])}  "
            f"box width {np.mean((hi - lo)[live]) if live.any() else 0:.4f}  next cut at centre "
            f"{' '.join(f'{v:.2f}' for v in (c @ centre + d)[live])} +- "
            f"{' '.join(f'{v:.2f}' for v in span[live])}  left (sampled) "
            f"{' '.join(f'{f:.3f}' for f in inside.mean(axis=1)[live])}  "
            f"{time.process_time() - started:.1f} s",
            flush=True,
        )
        if proved.all():
            print("all open rows proved")
            return
        cuts = cuts.add(np.where(live[:, None], c, 0.0), np.where(live, d, -1.0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="resnet2")
    parser.add_argument("--image", type=int, default=8)
    parser.add_argument("--epsilon", type=float, default=0.05)
    parser.add_argument("--cuts", type=int, default=30)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--aim", choices=("min", "centre", "corner"), default="min")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    model, case = load(args.net, args.image, args.epsilon)
    with threadpool_limits(limits=1, user_api="blas"), np.errstate(all="ignore"):
        run(model.graph_network, case, args.cuts, args.samples, args.aim)
    return 0


if __name__ == "__main__":
    sys.exit(main())
