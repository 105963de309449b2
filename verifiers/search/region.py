"""Regions of the input domain and the record of how each was decided."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np

from verifiers.bounds.linear import LinearBounds


class Evidence(StrEnum):
    LINEAR = "linear-bound"  # a CROWN lower bound of some unsafe half-space is above its rhs
    COMBINATION = "linear-combination"  # a convex combination of half-space bounds is > 0
    SMT = "smt-unsat"  # z3 showed the region holds no unsafe input
    PHASE_LP = "lp-phases"  # LPs over the region's ReLU phases refuted every piece
    EMPTY = "empty-split"  # the region's ReLU phases contradict each other: it has no input
    CUTS = "domain-cuts"  # bounds over the box cut by earlier bounds' forms (graph_cuts.py)


LayerBounds = list[tuple[np.ndarray, np.ndarray]]
Phase = tuple[int, int, bool]  # (ReLU layer, neuron, active): pre-activation >= 0 or <= 0
Warm = tuple[list[np.ndarray], list[np.ndarray]]  # (slopes, betas) per ReLU layer


@dataclass(frozen=True, eq=False)
class Region:
    lower: np.ndarray
    upper: np.ndarray
    depth: int = 0
    # Pre-activation bounds proved on an enclosing region: valid here too, and a head start.
    known: LayerBounds | None = None
    # How far the enclosing region's bounds were from a proof (> 0 would have proved it).
    parent_score: float = 0.0
    # ReLU splits: the region is the inputs of the box on which these ReLUs have these
    # phases (they are also written into `known`), and stands for this share of the box.
    phases: tuple[Phase, ...] = ()
    share: float = 1.0
    # Decide the region by LPs over its ReLU phases once this few ReLUs are unstable (None:
    # the search's default); lowered in a subtree where such an attempt gave up.
    lp_limit: int | None = None
    # The enclosing region's optimised lower slopes and split multipliers of the objective
    # rows (per ReLU layer, (m, n) each; bounds/alpha.py): a warm start, never a proof.
    warm: Warm | None = None
    # The splits from the case's box to this region, for the certificate's tree: per split
    # ("input", dim, at, side) with side 0 the lower half, or ("relu", layer, neuron, side)
    # with side 0 the active part.
    path: tuple[tuple, ...] = ()

    def split(
        self, dim: int, known: LayerBounds | None = None, score: float = 0.0
    ) -> tuple[Region, Region]:
        middle = 0.5 * (self.lower[dim] + self.upper[dim])
        left_upper, right_lower = self.upper.copy(), self.lower.copy()
        left_upper[dim] = middle
        right_lower[dim] = middle
        child = replace(self, depth=self.depth + 1, known=known, parent_score=score)
        at = float(middle)
        return (
            replace(child, upper=left_upper, path=(*self.path, ("input", dim, at, 0))),
            replace(child, lower=right_lower, path=(*self.path, ("input", dim, at, 1))),
        )

    def split_relu(
        self,
        layer: int,
        neuron: int,
        known: LayerBounds,
        score: float = 0.0,
        warm: Warm | None = None,
    ) -> tuple[Region, Region]:
        """The parts of this region where a ReLU is active and where it is inactive.

        `layer` counts ReLU layers; their pre-activation bounds are known[layer]."""
        children = []
        for active in (True, False):
            lower, upper = known[layer][0].copy(), known[layer][1].copy()
            if active:
                lower[neuron] = max(lower[neuron], 0.0)
            else:
                upper[neuron] = min(upper[neuron], 0.0)
            bounds = [*known[:layer], (lower, upper), *known[layer + 1 :]]
            children.append(
                replace(
                    self,
                    depth=self.depth + 1,
                    known=bounds,
                    parent_score=score,
                    phases=(*self.phases, (layer, neuron, active)),
                    share=self.share / 2,
                    warm=warm,
                    path=(*self.path, ("relu", int(layer), int(neuron), 0 if active else 1)),
                )
            )
        return children[0], children[1]


@dataclass(frozen=True)
class ParentBounds:
    """One region's slice of a batch's linear bounds."""

    layers: list[tuple[np.ndarray, np.ndarray]]
    objective_lower: np.ndarray
    objective_coeffs: np.ndarray
    relu_coeffs: list[np.ndarray]
    warm: Warm | None = None

    @classmethod
    def of(cls, bounds: LinearBounds, i: int) -> ParentBounds:
        warm = None
        if bounds.slopes is not None and bounds.betas is not None:
            # float32 halves the memory of a warm start, which needs no precision.
            warm = (
                [s[i].astype(np.float32) for s in bounds.slopes],
                [b[i].astype(np.float32) for b in bounds.betas],
            )
        return cls(
            [(lo[i], hi[i]) for lo, hi in bounds.layers],
            bounds.objective_lower[i],
            bounds.objective_coeffs[i],
            [c[i] for c in bounds.relu_coeffs or []],
            warm,
        )

    @property
    def unstable(self) -> int:
        """How many ReLUs these bounds leave unstable."""
        return sum(int(np.sum((lo < 0.0) & (hi > 0.0))) for lo, hi in self.layers[:-1])


def relative_volume(
    lower: np.ndarray, upper: np.ndarray, free: np.ndarray, root_width: np.ndarray
) -> float:
    """A box's share of the root box's volume, over the dimensions free in the root (fixed
    ones have width 0). Relative, so that it cannot underflow: 784 widths of 0.04 do."""
    return float(np.prod(((upper - lower) / root_width)[free]))


def log_volume(lower: np.ndarray, upper: np.ndarray, free: np.ndarray) -> float:
    """The natural log of a box's volume over its free dimensions (0 when none is free);
    widths beyond the float range count as the largest float."""
    with np.errstate(over="ignore"):
        widths = np.minimum((upper - lower)[free], np.finfo(np.float64).max)
    return float(np.sum(np.log(widths)))


@dataclass
class Leaf:
    lower: list[float]
    upper: list[float]
    evidence: Evidence
    detail: int  # the half-space row index proved (linear) or -1
    phases: list[Phase] = field(default_factory=list)
    # The splits from the case's box (Region.path) and, per unsafe conjunction, what refutes
    # it (verifiers/certify/certificate.py writes both into the certificate).
    path: tuple[tuple, ...] = ()
    proofs: list[dict] | None = None

    def to_json(self) -> dict:
        return {
            "lower": self.lower,
            "upper": self.upper,
            "evidence": self.evidence.value,
            "detail": self.detail,
            "phases": [list(phase) for phase in self.phases],
        }
