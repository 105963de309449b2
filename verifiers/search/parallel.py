"""Branch and bound on a pool of processes.

The parent hands out slices of work: a few open regions and a short time budget. A worker
searches them with the same `CaseSearch` and returns what it proved, what it found and the
regions still open, which go back into the common pool. Short slices keep the cores evenly
busy and let the first counterexample stop the search within a slice. A process that dies
takes no region with it: what it held is searched again, in the parent.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from verifiers.components import OnnxComponent
from verifiers.search.bab import BATCH, CaseSearch
from verifiers.search.context import CaseOutcome, SearchContext
from verifiers.search.region import Region
from verifiers.spec.property import Case

log = logging.getLogger(__name__)

SLICE_S = 0.5
_worker_model = None


@dataclass(frozen=True)
class SliceTask:
    case: Case
    regions: list[Region]
    deadline: float  # time.monotonic() is one clock for all processes of the machine
    margin: float
    seed: int
    record_tree: bool
    optimise_bounds: bool = True
    optimise_intermediate: bool = True


@dataclass
class SliceResult:
    outcome: CaseOutcome
    open_regions: list[Region]


def _load_worker_model(component: OnnxComponent) -> None:
    global _worker_model
    from verifiers.model import load_model

    _worker_model = load_model(component.source, inputs=component.inputs, outputs=component.outputs)


def _search_slice(task: SliceTask) -> SliceResult:
    from threadpoolctl import threadpool_limits

    model = _worker_model
    ctx = SearchContext(
        network=model.network,
        case=task.case,
        run=model.run_onnxruntime,
        deadline=task.deadline,
        margin=task.margin,
        seed=task.seed,
        record_tree=task.record_tree,
        optimise_bounds=task.optimise_bounds,
        optimise_intermediate=task.optimise_intermediate,
    )
    search = CaseSearch(ctx)
    search.stack = list(task.regions)
    # Overflow is handled explicitly (bounds/rounding.py): numpy's warnings are noise here.
    with threadpool_limits(limits=1, user_api="blas"), np.errstate(all="ignore"):
        outcome = search.run(until=time.monotonic() + SLICE_S, falsify_root=False)
    return SliceResult(outcome, search.stack)


def search_in_parallel(
    component: OnnxComponent,
    search: CaseSearch,
    workers: int,
    on_step=None,
) -> CaseOutcome:
    """Continue `search` (its stack of open regions) on `workers` processes.

    A process that dies (killed, out of memory) breaks the pool: the regions it and the
    others held go back to the stack and the search goes on in this process, so no region
    is lost and a `holds` stays possible."""
    ctx, outcome = search.ctx, search.outcome
    pending: list[Region] = list(search.stack)
    search.stack = []
    mp_context = multiprocessing.get_context("forkserver")
    mp_context.set_forkserver_preload(["verifiers.search.parallel", "verifiers.model"])
    running: dict[Future, list[Region]] = {}
    seed = ctx.seed
    broken = False
    with ProcessPoolExecutor(workers, mp_context, _load_worker_model, (component,)) as pool:
        while (pending or running) and outcome.counterexample is None and not broken:
            if ctx.remaining() <= 0 or ctx.cancelled():
                break
            while pending and len(running) < workers and not broken:
                share = max(1, min(2 * BATCH, len(pending) // workers + 1))
                chunk, pending = pending[-share:], pending[:-share]
                seed += 1
                task = SliceTask(
                    ctx.case,
                    chunk,
                    ctx.deadline,
                    ctx.margin,
                    seed,
                    ctx.record_tree,
                    ctx.optimise_bounds,
                    ctx.optimise_intermediate,
                )
                try:
                    running[pool.submit(_search_slice, task)] = chunk
                except BrokenProcessPool:
                    pending.extend(chunk)
                    broken = True
            if search.falsifier.deep_due() and search.falsifier.deep(pending):
                break
            done, _ = wait(running, timeout=SLICE_S, return_when=FIRST_COMPLETED)
            for future in done:
                broken |= not _collect(future, running.pop(future), outcome, pending)
            if on_step:
                outcome.open_regions = len(pending)
                on_step(outcome)
        broken |= _settle_unfinished(running, outcome, pending)
    search.stack = pending
    if broken and outcome.counterexample is None:
        log.warning("a search process died: the search goes on in this process")
        return search.run(falsify_root=False)
    outcome.open_regions = len(pending)
    return outcome


def _settle_unfinished(
    running: dict[Future, list[Region]], outcome: CaseOutcome, pending: list[Region]
) -> bool:
    """When the search stops: a slice finished meanwhile counts; the regions of one still
    running (or whose process died) go back to `pending`, once. True if a process died."""
    broken = False
    for future, chunk in running.items():
        if future.done():
            broken |= not _collect(future, chunk, outcome, pending)
        else:
            future.cancel()
            pending.extend(chunk)
    return broken


def _collect(
    future: Future, chunk: list[Region], outcome: CaseOutcome, pending: list[Region]
) -> bool:
    """Take a finished slice's work into the outcome; False when its process died (its
    regions go back to `pending`). A slice that raised loses its regions: no `holds`."""
    try:
        result = future.result()
    except BrokenProcessPool:
        pending.extend(chunk)
        return False
    except Exception as exc:
        outcome.unknown_reasons.append(f"a search process failed: {exc!r}")
        return True
    outcome.absorb(result.outcome)
    pending.extend(result.open_regions)
    return True
