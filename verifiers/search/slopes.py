"""Which slope optimisation (bounds/alpha.py) a batch of regions gets in branch and bound.

Only the ReLU-splitting search (many inputs) optimises: there the box stays whole and tight
relaxations are all there is. The root gets Adam steps for its objective rows and for every
layer's pre-activation bounds; later batches optimise only the objective rows still open,
warm-started from the parent region's slopes and split multipliers, with a multiplier for
each of their ReLU splits (beta-CROWN); the parts a split is chosen by keep their parent's
intermediate bounds (search/bab.py, split_relus), the regions taken up tighten them. Input
splitting (ACAS Xu) does without: its boxes shrink, which tightens everything, and the
steps would cost more than they save.
"""

from __future__ import annotations

import numpy as np

from verifiers.bounds.alpha import SlopeSearch
from verifiers.model.network import PiecewiseLinearNetwork
from verifiers.search.region import Region

ROOT_SLOPE_STEPS = 20
ROOT_INTERMEDIATE_STEPS = 10
SLOPE_STEPS = 8


def slope_search(
    network: PiecewiseLinearNetwork, regions: list[Region], root: Region, rhs: np.ndarray
) -> SlopeSearch:
    """The search for a batch; `rhs`: what each objective row must clear to be proved."""
    if len(regions) == 1 and regions[0] is root:
        return SlopeSearch(
            ROOT_SLOPE_STEPS,
            intermediate=True,
            intermediate_iterations=ROOT_INTERMEDIATE_STEPS,
            target=rhs,
        )
    start = betas = None
    if all(r.warm is not None for r in regions):
        layers = range(len(regions[0].warm[0]))
        start = [np.stack([r.warm[0][k] for r in regions]) for k in layers]
        betas = [np.stack([r.warm[1][k] for r in regions]) for k in layers]
    signs = split_signs(network, regions) if any(r.phases for r in regions) else None
    return SlopeSearch(SLOPE_STEPS, start=start, signs=signs, start_betas=betas, target=rhs)


def split_signs(network: PiecewiseLinearNetwork, regions: list[Region]) -> list[np.ndarray]:
    """Per ReLU layer (batch, n): -1 where a region splits the ReLU active, +1 inactive."""
    signs = [np.zeros((len(regions), layer.size)) for layer in network.relu_layers]
    for i, region in enumerate(regions):
        for k, j, active in region.phases:
            signs[k][i, j] = -1.0 if active else 1.0
    return signs


def with_slopes(proofs: list[dict], groups: np.ndarray, bounds, i: int, network) -> list[dict]:
    """Row proofs of region i with the optimised lower slopes and split multipliers of
    their rows (certificate format v2; a combination's per weighed row): the checker cannot
    re-derive them. Any slope in [alpha, 1] and multiplier >= 0 gives a valid bound; they
    are kept at full precision (a proof may clear its bound by a hair), 0 and 1 as ints."""
    alphas = [float(layer.alpha) for layer in network.relu_layers]
    out = []
    for g, proof in enumerate(proofs):
        rows = np.flatnonzero(groups == g)
        entry = dict(proof)
        if "row" in proof:
            row = int(rows[proof["row"]])
            entry["slopes"] = _layers(bounds.slopes, i, row, alphas)
            entry["betas"] = _betas(bounds.betas, i, row)
        else:  # a combination: the numbers of each row it weighs in
            weighed = [(int(r), w > 0.0) for r, w in zip(rows, proof["mu"], strict=True)]
            entry["row_slopes"] = [
                _layers(bounds.slopes, i, r, alphas) if used else None for r, used in weighed
            ]
            entry["row_betas"] = [
                _betas(bounds.betas, i, r) if used else None for r, used in weighed
            ]
        out.append(entry)
    return out


def _layers(slopes, i: int, row: int, alphas) -> list[list]:
    return [_short(s[i, row], alpha) for s, alpha in zip(slopes, alphas, strict=True)]


def _betas(betas, i: int, row: int) -> list[list]:
    if betas is None:
        return []
    return [
        [k, int(j), float(b[i, row, j])]
        for k, b in enumerate(betas)
        for j in np.flatnonzero(b[i, row] > 0.0)
    ]


def _short(slopes: np.ndarray, alpha: float) -> list:
    values = np.clip(slopes, min(alpha, 1.0), max(alpha, 1.0))
    return [int(v) if v in (0.0, 1.0) else float(v) for v in values]
