"""Pre-activation bounds of regions, the checker's own: interval bounds from the box,
intersected with the enclosing region's (valid on a sub-region too) and the region's
phases, then the unstable neurons tightened by linear lower bounds (lagrangian.py's
identity, in float64 with a rigorous rounding bound: rigorous.py). A batch of regions is
bounded together, a row each. Only the leaves' own inequalities are exact (leaves.py,
rows.py); these bounds are intermediate and only need to be valid.
"""

from __future__ import annotations

import numpy as np

from verifiers.certify.checker import rigorous
from verifiers.certify.checker.lagrangian import Bounds, ExactNetwork, Region, snap_pair


def _layer_error(net: ExactNetwork, region: Region, k: int) -> np.ndarray | None:
    lo, hi = region.layer_input(net, k)
    return net.layers[k].error(np.maximum(np.abs(lo), np.abs(hi)))


def interval(net: ExactNetwork, region: Region, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Interval bounds of affine layer k's output from its input's box, for a batch of
    regions, rounded outward (rigorous.interval), widened by the layer's composition error."""
    low, high = rigorous.interval(net.layers[k], *region.layer_input(net, k))
    err = region.errors[k]
    if err is not None:
        low = np.nextafter(low - err, -np.inf)
        high = np.nextafter(high + err, np.inf)
    return low, high


def region_bounds(
    net: ExactNetwork, lower, upper, parent: Bounds | None, phases, every: bool = False
):
    """Pre-activation bounds on one region (the box where the phases hold); see
    batch_bounds. Returns (region, crossed)."""
    parents = None if parent is None else [(lo[None, :], hi[None, :]) for lo, hi in parent]
    batch, crossed = batch_bounds(net, lower[None, :], upper[None, :], parents, [phases], every)
    return batch.one(0), bool(crossed[0])


def batch_bounds(net: ExactNetwork, lower, upper, parents: Bounds | None, phases, every=False):
    """Pre-activation bounds on a batch of regions (a row of `lower`, `upper` each, and a
    list of phases each): interval bounds, intersected with the enclosing regions' (valid
    here too) and the phases, then each unstable neuron of the layers past the first
    tightened by an exact linear bound. `every`: tighten the stable neurons too (tighter
    interval bounds downstream). Returns (batch, crossed): a region whose bounds cross
    holds no input (any bounds are valid on it, so its row is simply carried along)."""
    region = Region(lower, upper)
    crossed = np.zeros(len(lower), dtype=bool)
    for k in range(len(net.alphas)):
        region.errors.append(_layer_error(net, region, k))
        lo, hi = interval(net, region, k)
        lo, hi = _clip(lo, hi, parents[k] if parents else None, phases, k)
        if k > 0:
            lo, hi = _clip(*_tighten(net, region, k, lo, hi, every), None, phases, k)
        region.bounds.append(snap_pair(lo, hi))
        crossed |= np.any(lo > hi, axis=1)
    region.errors.append(_layer_error(net, region, len(net.alphas)))
    return region, crossed


def tighten_again(
    net: ExactNetwork, region: Region, phases, every: bool = False
) -> tuple[Region, bool]:
    """One more pass of linear tightening of one region, each layer with the tighter
    bounds before it."""
    bounds = [(lo[None, :], hi[None, :]) for lo, hi in region.bounds]
    single = Region(region.lower[None, :], region.upper[None, :], bounds)
    again, crossed = tighten_again_batch(net, single, [0], [phases], every)
    return again.one(0), bool(crossed[0])


def tighten_again_batch(
    net: ExactNetwork, region: Region, rows: list[int], phases, every: bool = False
) -> tuple[Region, np.ndarray]:
    """tighten_again on regions `rows` of a batch at once (`phases`: theirs, in order):
    the new batch (a row each) and which of them hold no input."""
    idx = np.array(rows, dtype=np.int64)
    again = Region(region.lower[idx], region.upper[idx])
    crossed = np.zeros(len(rows), dtype=bool)
    for k in range(len(net.alphas)):
        again.errors.append(_layer_error(net, again, k))
        lo, hi = (b[idx] for b in region.bounds[k])
        if k > 0:
            lo, hi = _clip(*_tighten(net, again, k, lo, hi, every), None, phases, k)
        again.bounds.append(snap_pair(lo, hi))
        crossed |= np.any(lo > hi, axis=1)
    again.errors.append(_layer_error(net, again, len(net.alphas)))
    return again, crossed


def _clip(lo, hi, parent, phases, k):
    """Rows of bounds intersected with the enclosing regions' and each row's phases."""
    if parent is not None:
        lo, hi = np.maximum(lo, parent[0]), np.minimum(hi, parent[1])
    lo, hi = lo.copy(), hi.copy()
    for i, region_phases in enumerate(phases):
        for layer, neuron, active in region_phases:
            if layer == k:
                if active:
                    lo[i, neuron] = max(lo[i, neuron], 0.0)
                else:
                    hi[i, neuron] = min(hi[i, neuron], 0.0)
    return lo, hi


def _tighten(net, region, k, lo, hi, every=False):
    """Rows of bounds of layer k tightened, each unstable neuron (every one) of each region
    by linear bounds, all regions' in one pass: in float64 with a rigorous bound on their
    rounding (rigorous.py; the leaves' own bounds are exact)."""
    mask = np.ones(lo.shape, dtype=bool) if every else (lo < 0.0) & (hi > 0.0)
    owner, unstable = np.nonzero(mask)
    if len(unstable) == 0:
        return lo, hi
    n = len(unstable)
    neurons = np.concatenate([unstable, unstable])
    own = np.concatenate([owner, owner])
    signs = np.concatenate([np.ones(n), -np.ones(n)]).astype(np.int64)
    least = rigorous.lower_bounds(net, region, k, neurons, signs, own)
    new_lo, new_hi = least[:n], -least[n:]
    lo, hi = lo.copy(), hi.copy()
    lo[owner, unstable] = np.maximum(lo[owner, unstable], new_lo)
    hi[owner, unstable] = np.minimum(hi[owner, unstable], new_hi)
    return lo, hi
