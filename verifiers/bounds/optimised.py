"""The objective rows' bounds with optimised slopes and split multipliers, re-evaluated soundly.

The optimiser (bounds/alpha.py) only proposes slopes and multipliers; the bound a row gets is
the outward-rounded back-substitution with them (bounds/linear.py), and only where it beats
that row's sound CROWN bound. Rows already above their target are left alone, and only the
others are optimised: in branch and bound most rows of a region are proved already.
"""

from __future__ import annotations

import numpy as np

from verifiers.bounds.alpha import SlopeSearch


def objective_bounds(context, rows: np.ndarray, search: SlopeSearch | None):
    """(value, coeffs, corner, relu_coeffs, slopes, betas) of the rows (batch, m, n_out):
    CROWN's, or per row the better of CROWN's and the optimised one (slopes and betas None
    without a search). `context` is bounds/linear.py's _Context over the batch."""
    last = len(context.network.affine_layers) - 1
    relu_coeffs: list[np.ndarray] = []
    value, coeffs, corner = context.bound(rows, last, relu_coeffs=relu_coeffs)
    if search is None or search.iterations <= 0 or last == 0:
        return value, coeffs, corner, relu_coeffs, None, None
    pick = _open_rows(value, search.target)
    if pick.shape[1] == 0:  # every row of every box is above its target already
        return value, coeffs, corner, relu_coeffs, search.start, search.start_betas
    start = _subset(search.start, pick)
    slopes, betas = context.optimise(
        _subset([rows], pick)[0],
        last,
        search.iterations,
        SlopeSearch(
            search.iterations,
            start=start,
            signs=search.signs,
            start_betas=_subset(search.start_betas, pick),
        ),
    )
    terms = None
    if search.signs is not None:
        terms = [b * sign[:, None, :] for b, sign in zip(betas, search.signs, strict=True)]
    tuned_relu: list[np.ndarray] = []
    tuned, tuned_coeffs, tuned_corner = context.bound(
        _subset([rows], pick)[0], last, slopes, tuned_relu, terms
    )
    better = np.isfinite(tuned) & (tuned > np.take_along_axis(value, pick, axis=1))
    # Merged in place: the CROWN pass's arrays are fresh, the kept slopes and multipliers
    # copies (float64, the warm starts' float32 widened). Copying every (batch, m, n) array
    # once more cost a 784-256x4 search 3-5% of its CPU time (mostly the system's: page
    # faults) and 60-200 MB of peak memory.
    kept_slopes = [
        np.array(np.broadcast_to(s, (*rows.shape[:2], s.shape[-1])), dtype=np.float64)
        for s in (search.start or [r.lower_slope for r in context.relaxations])
    ]
    kept_betas = [np.array(b, dtype=np.float64) for b in search.start_betas or []] or [
        np.zeros(s.shape) for s in kept_slopes
    ]
    return (
        _merge(value, tuned, pick, better),
        _merge(coeffs, tuned_coeffs, pick, better),
        _merge(corner, tuned_corner, pick, better),
        [_merge(c, t, pick, better) for c, t in zip(relu_coeffs, tuned_relu, strict=True)],
        [_merge(k, s, pick, better) for k, s in zip(kept_slopes, slopes, strict=True)],
        [_merge(k, b, pick, better) for k, b in zip(kept_betas, betas, strict=True)],
    )


def _open_rows(value: np.ndarray, target: np.ndarray | None) -> np.ndarray:
    """Per box, the indices (batch, count) of the rows to optimise, those at or below their
    target first; padded with other rows up to the count of the box with the most."""
    if target is None:
        return np.broadcast_to(np.arange(value.shape[1]), value.shape)
    open_ = ~(value > target[None, :])
    count = int(open_.sum(axis=1).max())
    return np.argsort(~open_, axis=1, kind="stable")[:, :count]


def _subset(arrays: list[np.ndarray] | None, pick: np.ndarray) -> list[np.ndarray] | None:
    """The picked rows (axis 1) of each (batch, m, ...) array."""
    if arrays is None:
        return None
    return [np.take_along_axis(a, pick[:, :, None], axis=1) for a in arrays]


def _merge(kept: np.ndarray, tuned: np.ndarray, pick: np.ndarray, better: np.ndarray):
    """`kept` (float64, changed in place) with the picked rows replaced by `tuned` where
    better."""
    merged = kept
    current = np.take_along_axis(merged, pick.reshape(*pick.shape, *[1] * (merged.ndim - 2)), 1)
    mask = better.reshape(*better.shape, *[1] * (merged.ndim - 2))
    chosen = np.where(mask, tuned, current)
    index = np.broadcast_to(pick.reshape(*pick.shape, *[1] * (merged.ndim - 2)), chosen.shape)
    np.put_along_axis(merged, index, chosen, axis=1)
    return merged
