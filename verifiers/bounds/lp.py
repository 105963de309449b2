"""One small dense LP solved by HiGHS (highspy), for the engine's few LP callers.

scipy.optimize.linprog calls the same solver, but importing scipy.optimize costs a quarter
of a second, paid by every `proofwell verify` process that needs a single LP; highspy's
import costs a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LpAnswer:
    x: np.ndarray  # the optimal point
    row_duals: np.ndarray  # one per row, inequalities first, then equalities


def solve(
    cost: np.ndarray,
    a_ub: np.ndarray,
    b_ub: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    a_eq: np.ndarray | None = None,
    b_eq: np.ndarray | None = None,
) -> LpAnswer | None:
    """argmin cost.x subject to a_ub x <= b_ub, a_eq x == b_eq, lower <= x <= upper
    (infinite bounds allowed), with the rows' dual values; None unless HiGHS reports an
    optimum. The answer is only as exact as the solver's tolerances: callers re-check
    whatever must be sound."""
    import highspy  # deep in a search only: keep start-up fast

    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("threads", 1)
    inf = highspy.kHighsInf
    n = len(cost)
    highs.addVars(
        n, np.where(np.isfinite(lower), lower, -inf), np.where(np.isfinite(upper), upper, inf)
    )
    highs.changeColsCost(n, np.arange(n, dtype=np.int32), np.asarray(cost, dtype=np.float64))
    _add_rows(highs, a_ub, np.full(len(b_ub), -inf), b_ub)
    if a_eq is not None:
        _add_rows(highs, a_eq, b_eq, b_eq)
    highs.run()
    if highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    solution = highs.getSolution()
    return LpAnswer(np.array(solution.col_value), np.array(solution.row_dual))


def _add_rows(highs, matrix: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
    nonzero = matrix != 0.0
    starts = np.concatenate([[0], np.cumsum(nonzero.sum(axis=1))[:-1]]).astype(np.int32)
    highs.addRows(
        len(matrix),
        np.asarray(lower, dtype=np.float64),
        np.asarray(upper, dtype=np.float64),
        int(nonzero.sum()),
        starts,
        np.nonzero(nonzero)[1].astype(np.int32),
        matrix[nonzero].astype(np.float64),
    )
