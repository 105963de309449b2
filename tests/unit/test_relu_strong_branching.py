"""Filtered strong branching where the search splits ReLUs (CaseSearch.split_relus).

The split kept must be, of the ranked candidates, the one of best merit (worse part's score
plus the better's, best_bisections), each part bounded here on its own rather than in the
search's batch (whose pairing of parts to candidates is what could go wrong). Soundness
does not rest on the choice (the two parts cover the region), but it does rest on each part
keeping its own bounds: verdicts against exhaustive enumeration are in
tests/unit/test_search_oracle.py and test_alpha_bounds.py (ReLU splitting forced), and the
certificate of a tree of such splits is re-checked here by the independent checker.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest

from tests.onnx_builders import dense_relu_model, to_bytes
from verifiers.certify.checker import check
from verifiers.components import OnnxComponent
from verifiers.model import load_model
from verifiers.options import Options
from verifiers.search import bab
from verifiers.search.context import SearchContext
from verifiers.search.region import ParentBounds
from verifiers.spec import parse_vnnlib
from verifiers.verify import verify


@functools.cache
def robustness(seed: int, eps: float):
    """A 40-input ReLU classifier and L-inf robustness around a point it classifies:
    (model bytes, property text)."""
    rng = np.random.default_rng(seed)
    sizes = [40, 24, 24, 4]
    weights = [
        (rng.normal(size=(b, a)) / np.sqrt(a)).astype(np.float32)
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    biases = [(rng.normal(size=b) * 0.1).astype(np.float32) for b in sizes[1:]]
    source = to_bytes(dense_relu_model(weights, biases))
    x0 = rng.uniform(0.0, 1.0, sizes[0])
    label = int(np.argmax(load_model(source).network.evaluate(x0[None, :])[0]))
    lines = [f"(declare-const X_{i} Real)" for i in range(sizes[0])]
    lines += [f"(declare-const Y_{j} Real)" for j in range(sizes[-1])]
    for i, x in enumerate(x0):
        lines += [
            f"(assert (>= X_{i} {float(x - eps)!r}))",
            f"(assert (<= X_{i} {float(x + eps)!r}))",
        ]
    others = " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(sizes[-1]) if j != label)
    lines.append(f"(assert (or {others}))")
    return source, "\n".join(lines) + "\n"


def open_root(seed: int, eps: float):
    """The search on robustness(seed, eps), its root region and the root's bounds."""
    source, text = robustness(seed, eps)
    model = load_model(source)
    case = parse_vnnlib(text).cases[0]
    ctx = SearchContext(model.network, case, model.run_onnxruntime, time.monotonic() + 60)
    search = bab.CaseSearch(ctx)
    root = search.stack.pop()
    bounds, proved = search.bound([root])
    return search, root, ParentBounds.of(bounds, 0), bool(proved[0])


@pytest.mark.parametrize("seed", range(3))
def test_the_split_kept_has_the_best_merit(seed: int) -> None:
    search, root, parent, proved = open_root(seed, 0.15)
    assert not proved
    choices = search.branching.relu_choices(parent, bab.STRONG_CANDIDATES)
    assert len(choices) > 2
    score = search.score_of(parent)
    merit = []
    for layer, neuron in choices:
        parts = list(root.split_relu(layer, neuron, parent.layers, score, parent.warm))
        scores = [
            np.inf if empty[0] else s[0]
            for s, empty in (search.bound_only([part], trial=True)[1:] for part in parts)
        ]
        merit.append(min(scores) + max(scores))
    assert np.ptp(merit) > 0.0  # the choice matters
    search.split_relus([(root, parent, choices)])
    made = [r.phases for r in search.stack] + [leaf.phases for leaf in search.outcome.leaves]
    split = {(k, j) for (k, j, _) in (phases[-1] for phases in made)}
    assert len(split) == 1 and len(made) == 2
    assert merit[choices.index(split.pop())] == pytest.approx(max(merit), rel=1e-6)


def test_a_strong_branching_tree_certificate_checks(monkeypatch) -> None:
    """A robustness property decided by ReLU splits chosen on trial (72 of them, no phase
    LP), the regions' bounds re-tightened after each: the checker, which re-derives every
    bound from the weights down the tree's path, accepts the certificate."""
    monkeypatch.setattr(bab, "PHASE_LP_UNSTABLE", -1)
    source, text = robustness(3, 0.11)
    options = Options(timeout_s=60, workers=1, optimise_intermediate=False)
    result = verify(OnnxComponent(source), parse_vnnlib(text), options)
    assert result.verdict.value == "holds", result.reason
    stack, splits = [result.certificate["cases"][0]["tree"]], 0
    while stack:
        node = stack.pop()
        splits += node.get("split") == "relu"
        stack += node.get("children", [])
    assert splits >= 20
    model = load_model(source)
    report = check(result.certificate, model.network, parse_vnnlib(text), model.sha256)
    assert report.valid, report.message


def test_trial_groups_bound_the_parts_bounded_at_once() -> None:
    """Every region is split on trial once, in order, and no group bounds more than
    TRIAL_PARTS parts at once unless one region alone has more (a 784-256x4 net's 64 x 128
    x 2 trial parts at once ran a job out of its 2 GB)."""
    from verifiers.search import bab

    rng = np.random.default_rng(3)
    counts = [int(c) for c in rng.integers(1, 700, size=60)]
    regions = [(i, None, [None] * c) for i, c in enumerate(counts)]
    groups = list(bab._trial_groups(regions))
    assert [entry[0] for group in groups for entry in group] == list(range(60))
    for group in groups:
        parts = sum(2 * len(entry[2]) for entry in group)
        assert parts <= bab.TRIAL_PARTS or len(group) == 1
    assert len(groups) < 60  # regions are grouped, not split one by one
