"""How far a MIP solver gets on a digits instance that stays `unknown`: a diagnosis, not a verdict.

    python benchmarks/mip_gap.py [--net 784-256-256-256-256-10] [--epsilon 0.02] [--image 0]
                                 [--row 3] [--seconds 900]

The instance (benchmarks/digits.py's; `--image` is a test image index) is written as the usual
big-M mixed-integer program: one binary per ReLU the engine's optimised bounds leave unstable,
those bounds as the big-M constants. SCIP (`pip install pyscipopt`, not a dependency of
proofwell) minimises y_label - y_row and prints its log; a final dual bound above 0 means SCIP
found the row safe, in floating point with its tolerances, which is why proofwell does not
take such an answer as a proof. Its root log shows what cutting planes buy over the
triangle relaxation the engine bounds with, and its tree how far branching must go.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from digits import NETS, instances  # noqa: E402


def big_m_model(network, lower, upper, bounds, objective):
    """SCIP model of min objective . y over the box, ReLU j as y >= p, y <= p - L(1 - d),
    y <= U d with d binary where L < 0 < U; stable ReLUs are fixed to 0 or p."""
    import pyscipopt

    model = pyscipopt.Model()
    values = [model.addVar(lb=lo, ub=hi) for lo, hi in zip(lower, upper, strict=True)]
    layers = network.affine_layers
    for k, layer in enumerate(layers):
        pre = [
            pyscipopt.quicksum(float(w) * values[i] for i, w in enumerate(row) if w) + float(b)
            for row, b in zip(layer.weight, layer.bias, strict=True)
        ]
        if k == len(layers) - 1:
            return model, pyscipopt.quicksum(
                float(c) * p for c, p in zip(objective, pre, strict=True) if c
            )
        low, high = bounds.layers[k][0][0], bounds.layers[k][1][0]
        values = [_relu(model, p, lo, hi) for p, lo, hi in zip(pre, low, high, strict=True)]
    raise ValueError("a network ends with an affine layer")


def _relu(model, pre, low: float, high: float):
    if high <= 0:
        return 0.0
    post = model.addVar(lb=None)
    if low >= 0:
        model.addCons(post == pre)
        return post
    phase = model.addVar(vtype="B")
    model.addCons(post >= pre)
    model.addCons(post >= 0)
    model.addCons(post <= pre - float(low) * (1 - phase))
    model.addCons(post <= float(high) * phase)
    return post


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="784-256-256-256-256-10", choices=list(NETS))
    parser.add_argument("--epsilon", type=float, default=0.02)
    parser.add_argument("--image", type=int, default=0)
    parser.add_argument("--row", type=int, help="the other class (default: the worst row)")
    parser.add_argument("--seconds", type=float, default=900.0)
    args = parser.parse_args()

    from verifiers.bounds.alpha import SlopeSearch
    from verifiers.bounds.linear import linear_bounds
    from verifiers.model import load_model
    from verifiers.spec.vnnlib import parse_vnnlib

    found = [r for r in instances([args.net], [args.epsilon], 50) if r["image"] == args.image]
    if not found:
        parser.error(f"image {args.image} is not among the first 50 correctly classified")
    row = found[0]
    network = load_model(row["_net"]).network
    case = parse_vnnlib(row["_prop"].read_text()).cases[0]
    label, classes = row["label"], network.n_outputs
    others = [j for j in range(classes) if j != label]
    rows = np.zeros((len(others), classes))
    rows[np.arange(len(others)), label] = 1.0
    rows[np.arange(len(others)), others] = -1.0
    box = (case.lower[None], case.upper[None])
    start = time.monotonic()
    bounds = linear_bounds(
        network, *box, rows, None, SlopeSearch(20, True, 10, target=np.zeros(len(others)))
    )
    margins = bounds.objective_lower[0]
    for j, margin in zip(others, margins, strict=True):
        print(f"Y_{label} - Y_{j}: optimised CROWN lower bound {margin:.3f}")
    other = args.row if args.row is not None else others[int(np.argmin(margins))]
    print(f"bounds in {time.monotonic() - start:.1f} s; SCIP on Y_{label} - Y_{other}")
    model, objective = big_m_model(
        network, case.lower, case.upper, bounds, rows[others.index(other)]
    )
    model.setObjective(objective, "minimize")
    model.setParam("limits/time", args.seconds)
    model.setParam("display/freq", 100)
    start = time.monotonic()
    model.optimize()
    dual = model.getDualbound()
    print(
        f"SCIP {model.getStatus()} after {time.monotonic() - start:.0f} s, "
        f"{model.getNNodes()} nodes: dual bound {dual:.3f}, primal {model.getPrimalbound():.3f}"
        f" ({'safe' if dual > 0 else 'open'} by SCIP's floating-point answer)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
