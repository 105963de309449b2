"""Branch and bound on a pool of processes: the same verdicts as exhaustive enumeration, and
no region lost when a search process dies."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest

from tests.onnx_builders import dense_relu_model, to_bytes
from tests.oracle import exact_maximum, random_network
from tests.unit.test_search_oracle import at_least_case
from verifiers import verify as verify_module
from verifiers.components import OnnxComponent
from verifiers.model import load_model
from verifiers.options import Options
from verifiers.result import Verdict
from verifiers.search import parallel
from verifiers.search.bab import CaseSearch
from verifiers.search.context import CaseOutcome, SearchContext
from verifiers.search.parallel import SliceResult, _settle_unfinished, search_in_parallel
from verifiers.search.region import Region
from verifiers.spec.property import Property


def instance(seed: int, sizes: list[int], tmp_path):
    """An ONNX file of a random ReLU network, a box, an output direction and the exact
    maximum of c . y over the box (enumeration of activation patterns)."""
    rng = np.random.default_rng(seed)
    weights, biases = random_network(rng, sizes)
    c = rng.choice([-1.0, 1.0], size=sizes[-1])
    lower = rng.uniform(-1.0, 0.0, size=sizes[0])
    upper = lower + rng.uniform(0.5, 1.5, size=sizes[0])
    best, _ = exact_maximum(weights, biases, c, lower, upper)
    path = tmp_path / f"net{seed}.onnx"
    path.write_bytes(to_bytes(dense_relu_model(weights, biases)))
    return path, c, lower, upper, best


def split_root(search: CaseSearch, times: int) -> None:
    """Bisect the root box `times` times along the widest side: 2**times open regions."""
    regions = [search.root]
    for _ in range(times):
        regions = [half for r in regions for half in r.split(int(np.argmax(r.upper - r.lower)))]
    search.stack = regions


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pool_verdicts_match_enumeration(seed: int, tmp_path, monkeypatch) -> None:
    """verify() with two search processes from the start: `holds` just above the exact
    maximum, `violated` just below, with a counterexample that is really unsafe."""
    monkeypatch.setattr(verify_module, "SERIAL_SECONDS", 0.0)
    pools = []
    monkeypatch.setattr(
        parallel,
        "search_in_parallel",
        lambda *args, **kwargs: pools.append(1) or search_in_parallel(*args, **kwargs),
    )
    path, c, lower, upper, best = instance(seed, [3, 4, 4, 2], tmp_path)
    delta = 1e-3 * (1.0 + abs(best))
    options = Options(timeout_s=60, workers=2)
    case = at_least_case(c, best + delta, lower, upper)
    result = verify_module.verify(OnnxComponent(path), Property(3, 2, (case,)), options)
    assert result.verdict is Verdict.HOLDS
    assert pools, "the search never reached the process pool"
    case = at_least_case(c, best - delta, lower, upper)
    result = verify_module.verify(OnnxComponent(path), Property(3, 2, (case,)), options)
    assert result.verdict is Verdict.VIOLATED
    assert float(c @ np.array(result.counterexample.outputs)) >= best - delta - 1e-6


def test_pool_finds_a_counterexample_in_a_slice(tmp_path) -> None:
    """The root is pre-split and never falsified in this process: the slices find the
    counterexample, and it replays."""
    path, c, lower, upper, best = instance(4, [3, 4, 4, 2], tmp_path)
    model = load_model(path)
    case = at_least_case(c, best - 1e-3 * (1.0 + abs(best)), lower, upper)
    ctx = SearchContext(model.network, case, model.run_onnxruntime, time.monotonic() + 60)
    search = CaseSearch(ctx)
    split_root(search, 4)
    outcome = search_in_parallel(OnnxComponent(path), search, 2)
    assert outcome.counterexample is not None
    assert case.contains_exactly(outcome.counterexample.inputs)
    assert any(u.holds_exactly(outcome.counterexample.onnxruntime_outputs) for u in case.unsafe)


def test_a_dead_search_process_loses_no_region(tmp_path, caplog) -> None:
    """Every search process dies at start-up (its model file is gone): the regions they
    held are searched in this process instead, and the verdict is still decided right."""
    path, c, lower, upper, best = instance(5, [3, 4, 4, 2], tmp_path)
    model = load_model(path)
    path.unlink()
    case = at_least_case(c, best + 1e-3 * (1.0 + abs(best)), lower, upper)
    ctx = SearchContext(model.network, case, model.run_onnxruntime, time.monotonic() + 60)
    search = CaseSearch(ctx)
    split_root(search, 6)
    with caplog.at_level(logging.WARNING, logger="verifiers.search.parallel"):
        outcome = search_in_parallel(OnnxComponent(path), search, 2)
    assert "a search process died" in caplog.text
    assert outcome.decided and outcome.counterexample is None
    assert not outcome.unknown_reasons
    assert outcome.proved_share == pytest.approx(1.0)


def test_slices_left_when_the_search_stops_return_their_regions_once() -> None:
    """A slice whose process died and one still running: each region goes back exactly
    once (a region listed twice would be proved twice and over-count the proved volume)."""
    dead, unfinished, finished = Future(), Future(), Future()
    dead.set_exception(BrokenProcessPool("killed"))
    outcome, pending = CaseOutcome(), []
    regions = [Region(np.zeros(1), np.ones(1)) for _ in range(3)]
    finished.set_result(SliceResult(CaseOutcome(proved_share=0.25), [regions[2]]))
    running = {dead: [regions[0]], unfinished: [regions[1]], finished: []}
    assert _settle_unfinished(running, outcome, pending) is True
    assert sorted(map(id, pending)) == sorted(map(id, regions))
    assert outcome.proved_share == 0.25
