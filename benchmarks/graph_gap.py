"""Where the graph engine's bounds stand on one digits_graph instance: a diagnosis, not a verdict.

    python benchmarks/graph_gap.py [--net resnet2] [--image 1] [--epsilon 0.05]
                                   [--search 10] [--samples 8000] [--splits 12]

For an instance of benchmarks/digits_graph.py (run it once first: it writes the networks
and properties), with one BLAS thread as `verify` uses:
  - the time of one root bound (graph_bounds) per batch size, and of the optimised slopes;
  - per unsafe row, the sound lower bound minus its right-hand side (plain and optimised),
    the smallest value over sampled points and the smallest a gradient attack on that row
    alone finds (both upper bounds on the true minimum; in 64 dimensions uniform samples
    overestimate it badly: tanh image 4 row 6, sampled 3.59, attacked 0.37);
  - per tensor, the width of its bounds against the range the samples reach (an inner
    estimate): where the intermediate bounds lose, and how many ReLUs are unstable;
  - on networks with Max/MaxPool, per row the bound on the part of the box where every
    max is taken by the candidate that is the max at the box centre (one case split per
    output, as the search makes them): what the max relaxations cost, not a bound over
    the box; and per window alone, what the worst two rows gain (how spread the cost is);
  - `--splits` best-merit splits of the root as the search bounds it (optimised slopes and
    intermediate bounds): the score of each split's worse and better part against the
    root's, i.e. how much one level of branch and bound gains;
  - `--search` seconds of the graph search: regions bounded, proved share, which tensors
    it splits and where its time goes (cProfile, top entries by cumulative time).
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

CACHE = Path(__file__).resolve().parent / "results" / "digits_graph"


def load(net_name: str, image: int, epsilon: float):
    from verifiers.model import load_model
    from verifiers.spec.vnnlib import parse_vnnlib

    prop = CACHE / f"{net_name}_img{image}_eps{epsilon}.vnnlib"
    if not prop.exists():
        raise SystemExit(f"{prop} is missing: run benchmarks/digits_graph.py first")
    model = load_model(str(CACHE / f"{net_name}.onnx"))
    return model, parse_vnnlib(prop.read_text()).cases[0]


def root_report(net, case, samples: int) -> None:
    from verifiers.bounds.graph import alpha
    from verifiers.bounds.graph.backsub import graph_bounds, is_nonlinear

    polytopes = [c.outward_matrix(Fraction(0), None) for c in case.unsafe]
    rows = np.concatenate([a for a, _ in polytopes])
    rhs = np.concatenate([b for _, b in polytopes])
    lower, upper = case.lower[None], case.upper[None]
    for batch in (1, 8):
        start = time.process_time()
        graph_bounds(net, np.repeat(lower, batch, 0), np.repeat(upper, batch, 0), rows)
        print(f"root bound, batch {batch}: {time.process_time() - start:.3f} s CPU")
    bounds = graph_bounds(net, lower, upper, rows)
    start = time.process_time()
    optimised, _ = alpha.optimise(net, bounds, rows, None, [None], alpha.STEPS, False)
    print(f"optimised slopes: {time.process_time() - start:.3f} s CPU")
    rng = np.random.default_rng(0)
    x = lower + (upper - lower) * rng.random((samples // 2, lower.size))
    corners = np.where(rng.random((samples // 2, lower.size)) < 0.5, lower, upper)
    values = net.values(np.concatenate([x, corners]))
    sampled = (values[net.bound_output] @ rows.T - rhs).min(axis=0)
    attacked = attacked_minima(net, case.lower, case.upper, rows, rhs, rng)
    print("per row   plain    optimised  sampled min  attacked min")
    for r in range(len(rhs)):
        print(f"{r:7d} {bounds.objective_lower[0, r] - rhs[r]:8.3f} "
              f"{optimised[0, r] - rhs[r]:10.3f} {sampled[r]:12.3f} {attacked[r]:13.3f}")  # fmt: skip
    max_cases_report(net, case, rows, rhs)
    print("tensor       op          n   bound width  sampled width  median ratio  unstable")
    for node in net.nodes:
        low, high = bounds.boxes[node.output]
        width, reached = (high - low)[0], np.ptp(values[node.output], axis=0)
        ratio = np.median(width / np.maximum(reached, 1e-12))
        unstable = ""
        if node.op_type == "Relu":
            z_low, z_high = bounds.boxes[node.inputs[0]]
            unstable = str(int(((z_low < 0) & (z_high > 0)).sum()))
        mark = "*" if is_nonlinear(node.op) else " "
        print(f"{mark}{node.output:11s} {node.op_type:8s} {low.shape[1]:5d} {width.mean():12.4f} "
              f"{reached.mean():14.4f} {ratio:13.2f}  {unstable}")  # fmt: skip


def attacked_minima(net, lower, upper, rows, rhs, rng, starts: int = 512) -> np.ndarray:
    """Per row, the smallest row . y - rhs that signed-gradient descent on that row alone
    reaches (the falsifier's search, verifiers/falsify/pgd.py, one half-space at a time)."""
    from verifiers.falsify.pgd import search as pgd_search
    from verifiers.search.graph_falsify import _Logits

    out = np.empty(len(rhs))
    for r in range(len(rhs)):
        unsafe = [(rows[r : r + 1], rhs[r : r + 1])]
        _, margins = pgd_search(_Logits(net), lower, upper, unsafe, rng, samples=starts, steps=60)
        out[r] = -margins[0]  # margin = rhs - row . y at the best point
    return out


def max_cases_report(net, case, rows: np.ndarray, rhs: np.ndarray) -> None:
    from verifiers.bounds.graph.backsub import graph_bounds
    from verifiers.bounds.graph.ops.maxes import MaxOf

    lower, upper = case.lower[None], case.upper[None]
    values = net.values(0.5 * (lower + upper))
    cases = {}
    for node in net.nodes:
        if isinstance(node.op, MaxOf):
            candidates = node.op._candidates([values[n] for n in node.inputs], -np.inf)[0]
            only = np.zeros(candidates.shape, dtype=bool)
            only[np.arange(len(only)), candidates.argmax(axis=-1)] = True
            cases[node.output] = only[None]
    if not cases:
        return
    fixed = graph_bounds(net, lower, upper, rows, cases=cases).objective_lower[0] - rhs
    print("per row, every max taken by its candidate at the centre (not a bound over the box):")
    print("  " + " ".join(f"{v:.3f}" for v in fixed))
    window_gains_report(net, lower, upper, rows, rhs, cases)


def window_gains_report(net, lower, upper, rows, rhs, centre: dict) -> None:
    """Per max output (window) alone taken by its centre candidate, what the worst two rows
    gain: whether the max relaxations' cost sits in a few windows or is spread."""
    from verifiers.bounds.graph.backsub import graph_bounds

    base = graph_bounds(net, lower, upper, rows).objective_lower[0] - rhs
    for name, only in centre.items():
        n_out = only.shape[1]
        allowed = np.ones((n_out, *only.shape[1:]), dtype=bool)
        allowed[np.arange(n_out), np.arange(n_out)] = only[0]
        many = np.repeat(lower, n_out, 0), np.repeat(upper, n_out, 0)
        gain = graph_bounds(net, *many, rows, cases={name: allowed}).objective_lower - rhs - base
        for r in np.argsort(base)[:2]:
            top = np.sort(gain[:, r])[::-1]
            print(f"{name} row {r} (plain {base[r]:.2f}), one window at its centre candidate: "
                  f"top gains {' '.join(f'{g:.2f}' for g in top[:6])}, "
                  f"{int((top > 0.05).sum())} windows above 0.05, sum {top.sum():.2f}")  # fmt: skip


def split_report(model, case, count: int) -> None:
    from dataclasses import replace

    from verifiers.search import graph_bab
    from verifiers.search.context import SearchContext

    ctx = SearchContext(model.graph_network, case, model.run_onnxruntime, time.monotonic() + 600)
    search = graph_bab.GraphCaseSearch(ctx)
    root = search.stack.pop()
    bounds, score, _, _ = search.bound([root], intermediate=search.slopes)
    print(f"root score as the search bounds it: {score[0]:.3f}")
    known = {name: (lo[0], hi[0]) for name, (lo, hi) in bounds.boxes.items()}
    child = replace(root, depth=1, known=known)
    open_rows = bounds.objective_lower[0] <= search.rhs
    ranked = search.element_choices(bounds, 0, open_rows, count)
    if not ranked:
        return
    parts = [p for choice in ranked for p in search.split_element(child, *choice)]
    _, scores, _, _ = search.bound(parts)
    worse, better = np.minimum(scores[0::2], scores[1::2]), np.maximum(scores[0::2], scores[1::2])
    print("split                       worse part  better part")
    for k in np.argsort(-worse):
        kind, name, j = ranked[k][:3]
        print(f"{kind:8s} {name:10s} {j:5d}  {worse[k]:12.3f} {better[k]:12.3f}")


def search_report(model, case, seconds: float) -> None:
    from verifiers.search import graph_bab
    from verifiers.search.context import SearchContext

    splits: collections.Counter = collections.Counter()
    original = graph_bab.GraphCaseSearch.split_element

    def counted(self, child, kind, name, j, at):
        splits[(kind, name)] += 1
        return original(self, child, kind, name, j, at)

    graph_bab.GraphCaseSearch.split_element = counted
    ctx = SearchContext(model.graph_network, case, model.run_onnxruntime,
                        time.monotonic() + seconds)  # fmt: skip
    profile = cProfile.Profile()
    profile.enable()
    outcome = graph_bab.search_graph_case(ctx)
    profile.disable()
    graph_bab.GraphCaseSearch.split_element = original
    print(f"search {seconds:.0f} s: {outcome.subproblems} regions bounded, proved "
          f"{outcome.proved_share:.5f}, open {outcome.open_regions}, decided {outcome.decided}, "
          f"counterexample {outcome.counterexample is not None}")  # fmt: skip
    print("splits:", ", ".join(f"{k} {n}: {c}" for (k, n), c in splits.most_common(8)))
    pstats.Stats(profile).sort_stats("cumulative").print_stats(18)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="resnet2")
    parser.add_argument("--image", type=int, default=1)
    parser.add_argument("--epsilon", type=float, default=0.05)
    parser.add_argument("--search", type=float, default=10.0)
    parser.add_argument("--samples", type=int, default=8000)
    parser.add_argument("--splits", type=int, default=0)
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    model, case = load(args.net, args.image, args.epsilon)
    with threadpool_limits(limits=1, user_api="blas"), np.errstate(all="ignore"):
        root_report(model.graph_network, case, args.samples)
        if args.splits > 0:
            split_report(model, case, args.splits)
        if args.search > 0:
            search_report(model, case, args.search)
    return 0


if __name__ == "__main__":
    sys.exit(main())
