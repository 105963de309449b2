"""A case whose unsafe set constrains no output: every input of its box is a violation.

A DNF term may bound inputs only, e.g. the second disjunct of
``(or (<= Y_0 -100) (<= X_0 0.2))``: on X_0 <= 0.2 every output is unsafe. No proof can
close such a case; a counterexample needs only a float32 input inside the (possibly open)
box that onnxruntime evaluates to a finite output. If the box holds no such input, the
answer is `unknown` with that reason, never `holds`.
"""

from __future__ import annotations

import numpy as np

from verifiers.certify.replay import replay
from verifiers.search.context import CaseOutcome, SearchContext
from verifiers.search.region import log_volume

RANDOM_POINTS = 64
FINITE = 1e307  # uniform sampling needs high - low finite


def search_unconstrained(ctx: SearchContext) -> CaseOutcome:
    lower, upper = ctx.case.lower, ctx.case.upper
    free = upper > lower
    outcome = CaseOutcome(log_volume=log_volume(lower, upper, free))
    with np.errstate(all="ignore"):
        rng = np.random.default_rng(ctx.seed)
        # Sampled within the float range (a box beyond it keeps its nearest finite part).
        finite_lower = np.clip(lower, -FINITE, FINITE)
        finite_upper = np.maximum(np.clip(upper, -FINITE, FINITE), finite_lower)
        points = np.concatenate(
            [
                [0.5 * finite_lower + 0.5 * finite_upper, finite_lower, finite_upper],
                rng.uniform(finite_lower, finite_upper, (RANDOM_POINTS, lower.size)),
            ]
        )
        cex = replay(points, ctx.case, ctx.run, ctx.network.evaluate)
    outcome.subproblems = 1
    if cex is not None:
        outcome.counterexample = cex
    else:
        outcome.unknown_reasons.append(
            "every output is unsafe on an input box, but no float32 input of that box "
            "gives a finite onnxruntime output"
        )
    return outcome
