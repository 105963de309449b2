"""Where the bounds stand on a digits instance that stays `unknown`: a diagnosis, not a verdict.

    python benchmarks/deep_gap.py [--net 784-256-256-256-256-10] [--epsilon 0.02] [--images 0,9]
                                  [--restarts 2] [--lp-refine 120]

For each instance (the digits benchmark's, benchmarks/digits.py; `--images` are test image
indices), per unsafe row still open at the root (a.y - b whose lower bound is not > 0):
  - the sound lower bound of a.y - b with plain CROWN and with optimised slopes (the root's
    alpha-CROWN, intermediate bounds optimised too), and the unstable ReLUs per layer;
  - the smallest a.y - b a gradient search found (`--restarts` x 512 starts, 300 steps):
    an upper bound on the true minimum, so the truth lies between the two;
  - what the optimised bound would be if the hidden layers' unstable neurons had the
    pre-activation ranges gradient search reaches (an inner estimate of their exact ranges):
    how much of the gap the intermediate bounds' looseness accounts for. NOT a sound bound.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from digits import NETS, instances  # noqa: E402


def pre_activation_ranges(network, lower, upper, k, neurons, rng, starts=8, steps=60):
    """Per neuron of affine layer k, the (min, max) of its pre-activation that sign gradient
    steps from random starts reach: an inner estimate of its exact range."""
    from verifiers.model.network import PiecewiseLinearNetwork

    sub = PiecewiseLinearNetwork(network.layers[: 2 * k + 1])
    picks = np.repeat(np.concatenate([neurons, neurons]), starts)
    sign = np.repeat(np.r_[np.ones(len(neurons)), -np.ones(len(neurons))], starts)
    x = lower + (upper - lower) * np.random.default_rng(rng).random((len(picks), lower.size))
    best, step = np.full(len(picks), -np.inf), (upper - lower) / 4
    rows = np.arange(len(picks))
    for _ in range(steps):
        direction = np.zeros((len(picks), sub.n_outputs))
        direction[rows, picks] = sign
        best = np.maximum(best, sign * sub.evaluate(x)[rows, picks])
        x = np.clip(x + step * np.sign(_gradient(sub, x, direction)), lower, upper)
        step = step * 0.93
    reached = best.reshape(2, len(neurons), starts).max(axis=2)
    return -reached[1], reached[0]


def _gradient(network, x, direction):
    from verifiers.falsify.pgd import _gradient as gradient

    return gradient(network, x, direction)


def diagnose(net: Path, prop: Path, restarts: int, lp_seconds: float) -> None:
    from verifiers.bounds.alpha import SlopeSearch
    from verifiers.bounds.linear import linear_bounds
    from verifiers.falsify.pgd import search as pgd_search
    from verifiers.model import load_model
    from verifiers.spec.vnnlib import parse_vnnlib

    network = load_model(net).network
    case = parse_vnnlib(prop.read_text()).cases[0]
    lower, upper = case.lower, case.upper
    polytopes = [c.matrix() for c in case.unsafe]
    rows = np.concatenate([a for a, _ in polytopes])
    rhs = np.concatenate([b for _, b in polytopes])
    box = (lower[None], upper[None])
    plain = linear_bounds(network, *box, rows)
    tuned = linear_bounds(network, *box, rows, None, SlopeSearch(20, True, 10, target=rhs))
    for name, bounds in (("plain", plain), ("optimised", tuned)):
        unstable = [int(np.sum((lo < 0) & (hi > 0))) for lo, hi in bounds.layers[:-1]]
        print(f"  {name:9} unstable ReLUs per layer {unstable}")
    rng = np.random.default_rng(0)
    found = np.full(len(rows), np.inf)
    for _ in range(restarts):
        for r in np.flatnonzero(tuned.objective_lower[0] <= rhs):
            points, _ = pgd_search(
                network,
                lower,
                upper,
                [(rows[r : r + 1], rhs[r : r + 1])],
                rng,
                samples=512,
                steps=300,
            )
            value = network.evaluate(points[:1])[0] @ rows[r] - rhs[r]
            found[r] = min(found[r], value)
    hidden = range(1, len(tuned.layers) - 1)
    reached = {}
    for k in hidden:
        lo, hi = tuned.layers[k][0][0], tuned.layers[k][1][0]
        neurons = np.flatnonzero((lo < 0) & (hi > 0))
        reached[k] = (neurons, *pre_activation_ranges(network, lower, upper, k, neurons, k))
    open_rows = np.flatnonzero(tuned.objective_lower[0] <= rhs)
    for r in open_rows:
        print(
            f"  row {r} ({_formula(rows[r])} - {rhs[r]:g}): lower bound plain {plain.objective_lower[0, r] - rhs[r]:.3f}, "
            f"optimised {tuned.objective_lower[0, r] - rhs[r]:.3f}; found {found[r]:.3f}"
        )
    for layers in [[k] for k in hidden] + [list(hidden)]:
        known = [(lo.copy(), hi.copy()) for lo, hi in tuned.layers]
        for k in layers:
            neurons, low, high = reached[k]
            known[k][0][0, neurons], known[k][1][0, neurons] = low, high
        what_if = linear_bounds(
            network, *box, rows, known, SlopeSearch(20, target=rhs), None, refine=False
        )
        worst = np.min(what_if.objective_lower[0, open_rows] - rhs[open_rows])
        print(f"  with reached ranges of hidden layers {layers} (not sound): worst {worst:.3f}")
    if lp_seconds > 0:
        _lp_refined(network, lower, upper, rows, rhs, tuned, list(hidden), lp_seconds)


def _formula(row: np.ndarray) -> str:
    """A row's linear form over the outputs, e.g. "Y_7 - Y_9": row indices are not classes."""
    terms = []
    for j in np.flatnonzero(row):
        size = "" if abs(row[j]) == 1 else f"{abs(row[j]):g}*"
        terms.append(f"{'-' if row[j] < 0 else '+'} {size}Y_{j}")
    return " ".join(terms).removeprefix("+ ")


def _lp_refined(network, lower, upper, rows, rhs, tuned, layers, seconds) -> None:
    """The sound optimised bound with per-neuron LP-tightened hidden bounds."""
    import time

    from verifiers.bounds import lp_refine
    from verifiers.bounds.alpha import SlopeSearch
    from verifiers.bounds.linear import linear_bounds

    start = time.monotonic()
    known = [(lo[0], hi[0]) for lo, hi in tuned.layers]
    tight = lp_refine.refine(network, lower, upper, known, layers, start + seconds)
    spent = time.monotonic() - start
    for k in layers:
        (lo, hi), (new_lo, new_hi) = known[k], tight[k]
        unstable = (lo < 0) & (hi > 0)
        print(
            f"  LP layer {k}: mean unstable width {np.mean((hi - lo)[unstable]):.3f} -> "
            f"{np.mean((new_hi - new_lo)[unstable]):.3f}, "
            f"unstable {int(unstable.sum())} -> {int(np.sum((new_lo < 0) & (new_hi > 0)))}"
        )
    again = linear_bounds(
        network,
        lower[None],
        upper[None],
        rows,
        [(lo[None], hi[None]) for lo, hi in tight],
        SlopeSearch(20, True, 10, target=rhs),
    )
    worst = np.min(again.objective_lower[0] - rhs)
    print(f"  with LP-tightened hidden bounds ({spent:.0f} s): sound worst {worst:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="784-256-256-256-256-10", choices=list(NETS))
    parser.add_argument("--epsilon", type=float, default=0.02)
    parser.add_argument("--images", default="0,9", help="test image indices")
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--lp-refine", type=float, default=0.0, help="seconds of LP tightening")
    args = parser.parse_args()
    wanted = {int(i) for i in args.images.split(",")}
    last = max(wanted) + 1
    with np.errstate(all="ignore"):
        for inst in instances([args.net], [args.epsilon], last):
            if inst["image"] in wanted:
                print(inst["instance"], "label", inst["label"])
                diagnose(inst["_net"], inst["_prop"], args.restarts, args.lp_refine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
