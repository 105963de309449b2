"""The one entry point: verify(component, property, options) -> Result."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from verifiers.components import OnnxComponent
from verifiers.errors import SpecError, UnsupportedError, VerifierError
from verifiers.model.network import PiecewiseLinearNetwork
from verifiers.options import Options
from verifiers.result import Progress, Result, Stats, Verdict, internal_error, percent
from verifiers.search.bab import CaseSearch
from verifiers.search.context import CaseOutcome, SearchContext
from verifiers.search.unconstrained import search_unconstrained
from verifiers.spec.property import Property

if TYPE_CHECKING:
    from verifiers.bounds.graph.network import GraphNetwork

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], None]
# Seconds of serial search before a process pool is started for an instance.
SERIAL_SECONDS = 1.0
GRAPH_CERTIFICATE_VERSION = 2  # graph certificates: input, interval and max splits;
# 2: row proofs may carry split multipliers (`gammas`)


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


def verify(
    component: OnnxComponent,
    prop: Property,
    options: Options = Options(),
    on_progress: ProgressCallback | None = None,
    cancel: CancelFlag | None = None,
    started: float | None = None,
) -> Result:
    """Decide `prop` on `component`. Invalid input gives an `error` result, never a raise;
    so does an internal failure (a bug), logged with its stack trace.

    The timeout counts from `started` (a time.monotonic() value; default now): a command
    line run passes its process's start, so that start-up and parsing count too."""
    started = time.monotonic() if started is None else started
    try:
        model = _load(component, prop)
        # Reports unsupported ops as errors.
        network = engine_network(model, prop, options.margin)
        # Small matrices: a multi-threaded BLAS only contends for the cores; parallelism
        # comes from whole search processes instead. Overflow is handled explicitly where it
        # matters (bounds/rounding.py: it fails closed), so numpy's warnings are noise.
        with threadpool_limits(limits=1, user_api="blas"), np.errstate(all="ignore"):
            return _search(component, model, network, prop, options, on_progress, cancel, started)
    except VerifierError as exc:
        return Result(Verdict.ERROR, Stats(seconds=time.monotonic() - started), reason=str(exc))
    except MemoryError:
        # A resource limit, not a bug: nothing was decided.
        return Result(
            Verdict.UNKNOWN, Stats(seconds=time.monotonic() - started), reason="out of memory"
        )
    except Exception as exc:
        log.exception("verification failed with an internal error")
        return internal_error(exc, time.monotonic() - started)


def engine_network(
    model, prop: Property, margin: float = 0.0
) -> PiecewiseLinearNetwork | GraphNetwork:
    """The Affine/ReLU chain normal form when the model has one (the fast path), else the
    graph engine's DAG (residual joins, pooling, S-shaped activations, ...)."""
    try:
        return model.network
    except UnsupportedError as chain_error:
        try:
            network = model.graph_network
        except UnsupportedError as graph_error:
            raise graph_error from chain_error
    if not all(network.strip_softmax_ok(case, margin) for case in prop.cases):
        raise UnsupportedError(
            "the model ends in a Softmax and the property is not a pairwise comparison of "
            "its outputs (c*Y_i - c*Y_j against 0, without a margin); Softmax itself is not "
            "bounded: state the property over the logits (a subnetwork ending before the "
            "Softmax) instead"
        )
    return network


def _search(component, model, network, prop, options, on_progress, cancel, started) -> Result:
    deadline = started + options.timeout_s
    outcomes: list[CaseOutcome] = []
    indices: list[int] = []
    for index, case in enumerate(prop.cases):
        if case.is_empty():
            continue
        indices.append(index)
        ctx = SearchContext(
            network=network,
            case=case,
            run=model.run_onnxruntime,
            deadline=deadline,
            margin=options.margin,
            seed=options.seed + index,
            record_tree=options.record_tree,
            optimise_bounds=options.optimise_bounds,
            optimise_intermediate=options.optimise_intermediate,
            on_step=_progress_reporter(on_progress, outcomes, started),
            cancelled=(cancel.is_set if cancel is not None else lambda: False),
        )
        graph = not isinstance(network, PiecewiseLinearNetwork)
        if graph and case.constrains_outputs:
            # Imported here: a chain (the fast path) never pays for the graph engine's import.
            from verifiers.search.graph_bab import search_graph_case

            outcome = search_graph_case(ctx)  # serial: the pool runs chain searches only
        else:
            outcome = _search_case(component, ctx, options.workers)
        outcomes.append(outcome)
        if outcome.counterexample is not None:
            break
    engine = "linear" if isinstance(network, PiecewiseLinearNetwork) else "graph"
    certify = partial(_certificate, prop, indices, model.sha256, options, graph=engine == "graph")
    return _result(outcomes, time.monotonic() - started, certify, cancel, engine)


def _search_case(component: OnnxComponent, ctx: SearchContext, workers: int) -> CaseOutcome:
    """Search serially first: most instances are decided before a pool would have started."""
    if not ctx.case.constrains_outputs:
        return search_unconstrained(ctx)
    search = CaseSearch(ctx)
    if workers <= 1:
        return search.run()
    outcome = search.run(until=time.monotonic() + SERIAL_SECONDS)
    if outcome.counterexample is None and search.stack and ctx.remaining() > 0:
        # Imported here: multiprocessing is start-up time that a serial search never needs.
        from verifiers.search.parallel import search_in_parallel

        outcome = search_in_parallel(component, search, workers, ctx.on_step)
    return outcome


def _load(component: OnnxComponent, prop: Property):
    from verifiers.model import load_model

    model = load_model(component.source, inputs=component.inputs, outputs=component.outputs)
    if (prop.n_inputs, prop.n_outputs) != (model.n_inputs, model.n_outputs):
        raise SpecError(
            f"the property declares {prop.n_inputs} inputs and {prop.n_outputs} outputs, the "
            f"model has {model.n_inputs} inputs and {model.n_outputs} outputs"
        )
    return model


def _progress_reporter(
    on_progress: ProgressCallback | None, done: list[CaseOutcome], started: float
) -> Callable[[CaseOutcome], None] | None:
    if on_progress is None:
        return None

    def report(current: CaseOutcome) -> None:
        outcomes = [*done, current]
        on_progress(
            Progress(
                subproblems_done=sum(o.subproblems for o in outcomes),
                subproblems_open=current.open_regions,
                proved_fraction=_proved_fraction(outcomes),
                seconds=time.monotonic() - started,
            )
        )

    return report


def _proved_fraction(outcomes: list[CaseOutcome]) -> float:
    """The proved share of the input volume, the cases weighed by their boxes' volumes
    (from their logs: high-dimensional boxes underflow)."""
    if not outcomes:
        return 1.0
    top = max(o.log_volume for o in outcomes)
    weights = [math.exp(o.log_volume - top) for o in outcomes]
    proved = sum(w * o.proved_share for w, o in zip(weights, outcomes, strict=True))
    return proved / sum(weights)


def _result(
    outcomes: list[CaseOutcome],
    seconds: float,
    certify: Callable[[list[CaseOutcome]], dict],
    cancel: CancelFlag | None,
    engine: str = "linear",
) -> Result:
    smt_calls = sum(o.smt_calls for o in outcomes)
    phase_lps = sum(o.phase_lps for o in outcomes)
    method = f"bab+{engine}" + ("+lp" if phase_lps else "") + ("+smt" if smt_calls else "")
    stats = Stats(
        seconds=seconds,
        method=method,
        subproblems=sum(o.subproblems for o in outcomes),
        proved_fraction=_proved_fraction(outcomes),
    )
    for outcome in outcomes:
        if outcome.counterexample is not None:
            falsified = Stats(seconds, "falsification", stats.subproblems, stats.proved_fraction)
            return Result(Verdict.VIOLATED, falsified, counterexample=outcome.counterexample)
    if all(o.decided for o in outcomes):
        return Result(
            Verdict.HOLDS,
            Stats(seconds, method, stats.subproblems, 1.0),
            certificate=certify(outcomes),
        )
    return Result(Verdict.UNKNOWN, stats, reason=_unknown_reason(outcomes, stats, cancel))


def _unknown_reason(outcomes: list[CaseOutcome], stats: Stats, cancel: CancelFlag | None) -> str:
    reasons = sorted({r for o in outcomes for r in o.unknown_reasons})
    if cancel is not None and cancel.is_set():
        reasons.insert(0, "cancelled")
    elif any(o.open_regions for o in outcomes) or not reasons:
        reasons.insert(0, "timeout")
    return f"{'; '.join(reasons)}; {percent(stats.proved_fraction)} of the input volume proved"


def _certificate(
    prop: Property,
    indices: list[int],
    model_sha256: str,
    options: Options,
    outcomes: list[CaseOutcome],
    graph: bool = False,
) -> dict:
    from verifiers.certify.certificate import certificate

    # A graph-engine certificate has splits of its own (element intervals, Max cases) and
    # its own checker (verifiers/certify/checker/graph_check.py): "engine" says which.
    cert = certificate(
        prop,
        list(zip(indices, outcomes, strict=True)),
        model_sha256,
        options.margin,
        options.record_tree,
    )
    if graph:  # the graph format has its own version (docs/certificate.md)
        cert["engine"] = "graph"
        cert["version"] = GRAPH_CERTIFICATE_VERSION
    return cert
