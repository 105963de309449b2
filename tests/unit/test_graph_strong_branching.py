"""Filtered strong branching in the graph search (GraphCaseSearch.strong_choice).

The choice must be, of the ranked candidates, the one whose two parts' worse score is
the best, each part bounded here on its own (not in the search's batch, whose pairing of
parts to candidates is what could go wrong). Soundness does not rest on the choice (the
parts cover the region whatever is split); verdicts against sampling on networks where
the search splits elements: tests/unit/test_graph_beta.py (Relu) and below (Max).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.unit.test_graph_beta import wide_instance
from tests.unit.test_graph_verify import at_least, sampled_range
from verifiers.components import OnnxComponent
from verifiers.options import Options
from verifiers.result import Verdict
from verifiers.search import graph_bab
from verifiers.search.context import SearchContext
from verifiers.verify import verify


def open_root(seed: int):
    """A search on a 24-input ReLU MLP whose root is open (a reachable threshold), with
    the root's bounds."""
    _, model, lower, _, _ = wide_instance(seed, "Relu")
    upper = (lower + 0.8).astype(np.float32).astype(np.float64)  # wide: ReLUs unstable
    low, high = sampled_range(model, lower, upper, np.random.default_rng(seed))
    case = at_least(0.5 * low + 0.5 * high, lower, upper).cases[0]
    ctx = SearchContext(model.graph_network, case, model.run_onnxruntime, time.monotonic() + 60)
    search = graph_bab.GraphCaseSearch(ctx)
    root = search.stack.pop()
    bounds, score, _, slopes = search.bound([root])
    return search, root, bounds, float(score[0]), slopes


@pytest.mark.parametrize("seed", range(3))
def test_strong_choice_has_the_best_worse_part(seed: int) -> None:
    search, root, bounds, score, slopes = open_root(seed)
    assert score <= 0.0
    known = {name: (lo[0], hi[0]) for name, (lo, hi) in bounds.boxes.items()}
    child = graph_bab.replace(root, depth=1, known=known, slopes=slopes[0])
    open_rows = bounds.objective_lower[0] <= search.rhs
    ranked = search.element_choices(bounds, 0, open_rows, graph_bab.STRONG_CANDIDATES)
    assert len(ranked) > 2
    worse = []
    for choice in ranked:
        parts = search.split_element(child, *choice)
        scores = [search.bound([part], graph_bab.STRONG_SLOPES)[1][0] for part in parts]
        worse.append(np.nan_to_num(min(scores), nan=-np.inf))
    chosen = search.strong_choice(child, bounds, 0, open_rows)
    assert worse[ranked.index(chosen)] == pytest.approx(max(worse), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", range(2))
def test_strong_branching_verdicts_agree_with_sampling(seed: int, monkeypatch) -> None:
    """As many candidates as the search finds or only one: the same verdicts."""
    data, model, lower, upper, (low, high) = wide_instance(10 + seed, "Relu")
    spread = max(high - low, 1e-3)
    for candidates in (1, graph_bab.STRONG_CANDIDATES):
        monkeypatch.setattr(graph_bab, "STRONG_CANDIDATES", candidates)
        above = at_least(high + 0.05 * spread, lower, upper)
        result = verify(OnnxComponent(data), above, Options(timeout_s=30))
        assert result.verdict is Verdict.HOLDS, result.reason
        below = at_least(high - 0.1 * spread, lower, upper)
        assert verify(OnnxComponent(data), below, Options(timeout_s=30)).verdict is Verdict.VIOLATED
